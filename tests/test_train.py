"""train.py on CPU with the tiny model and a tiny data folder in the release's format: DDP equals one
process with the doubled batch, resume is exact, a crash mid-save leaves the previous checkpoint
loadable, saved adapters reproduce the trained model's logits, non-finite steps are skipped then stop
the run, and --tasks mistakes are clear errors. tiny_data, train_args, read_log: conftest.py."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import checkpoint
import data
import model as M
import moge
import molecule
import train
from likelihood import heldout_nll
from tasks import GRAPH, MOLCAP_QUESTIONS, scored_as


def run(repo, argv, nproc=1, check=True):
    """train.py in a fresh process (torchrun for nproc > 1); -> CompletedProcess."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               os.path.join(repo, "train.py"), *argv]
    else:
        cmd = [sys.executable, os.path.join(repo, "train.py"), *argv]
    p = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def test_ddp_two_ranks_equal_one_rank_with_double_batch(repo, tiny_data, train_args, read_log, tmp_path):
    # no dropout (per-rank masks would differ) and no balance loss (a per-rank statistic, not a token sum)
    common = ("--max-steps", 3, "--lora-dropout", 0, "--aux-coef", 0, "--grad-accum", 2)
    # the 2-rank side also checkpoints activations: the same numbers, and it must work under DDP
    run(repo, train_args(tiny_data, tmp_path / "ddp", "--batch-size", 2, "--grad-ckpt", *common), nproc=2)
    train.main(train_args(tiny_data, tmp_path / "one", "--batch-size", 4, *common))
    a, b = read_log(tmp_path / "ddp"), read_log(tmp_path / "one")
    assert len(a) == len(b) == 3
    for ra, rb in zip(a, b):
        assert ra["tokens"] == rb["tokens"] and ra["task_loss"].keys() == rb["task_loss"].keys()
        for k in ("loss", "ce", "grad_norm", "lr"):
            assert ra[k] == pytest.approx(rb[k], rel=1e-5, abs=1e-7), (ra["step"], k, ra[k], rb[k])
        for t in ra["task_loss"]:
            assert ra["task_loss"][t] == pytest.approx(rb["task_loss"][t], rel=1e-5), (ra["step"], t)
    assert a[-1]["ce"] != a[0]["ce"]  # it did train


def test_resume_is_exact(tiny_data, train_args, read_log, log_keys, tmp_path):
    # dropout on (default 0.05), so the RNG state must come back too; every run rebuilds everything
    train.main(train_args(tiny_data, tmp_path / "full", "--batch-size", 2, "--max-steps", 4))
    train.main(train_args(tiny_data, tmp_path / "cut", "--batch-size", 2, "--max-steps", 4, "--stop-after", 2))
    assert os.path.basename(checkpoint.steps(tmp_path / "cut")[-1]) == "step_000002"
    torch.manual_seed(1234)  # whatever the RNG holds now must not matter
    train.main(train_args(tiny_data, tmp_path / "cut", "--batch-size", 2, "--max-steps", 4, "--resume"))
    full, cut = read_log(tmp_path / "full"), read_log(tmp_path / "cut")
    assert [r["step"] for r in cut] == [1, 2, 3, 4]
    for ra, rb in zip(full, cut):
        assert {k: ra[k] for k in log_keys} == {k: rb[k] for k in log_keys}
        assert ra["task_loss"] == rb["task_loss"]
    fa = load_file(os.path.join(checkpoint.steps(tmp_path / "full")[-1], "adapters.safetensors"))
    fb = load_file(os.path.join(checkpoint.steps(tmp_path / "cut")[-1], "adapters.safetensors"))
    assert fa.keys() == fb.keys() and all(torch.equal(fa[k], fb[k]) for k in fa)


def test_crash_mid_save_keeps_previous_checkpoint(repo, tiny_data, train_args, tmp_path):
    out = tmp_path / "run"
    p = run(repo, train_args(tiny_data, out, "--batch-size", 2, "--max-steps", 4, "--save-every", 2,
                             "--debug-crash-in-save", 4), check=False)
    assert p.returncode == 17, p.stderr[-2000:]  # killed after writing adapters, before the rest
    names = sorted(os.listdir(out / "checkpoints"))
    assert "step_000002" in names and "step_000004" not in names
    assert any(n.startswith(".tmp_step_000004") for n in names)  # the half-written one is a temp folder
    last = checkpoint.steps(out)[-1]
    assert os.path.basename(last) == "step_000002"
    # still loadable: optimizer state with weights_only=True, adapters strictly into a fresh model
    state = torch.load(os.path.join(last, "optimizer.pt"), weights_only=True)
    assert state["scheduler"]["last_epoch"] == 2
    fresh = rebuild(last)
    assert fresh is not None
    # and --resume continues from it
    train.main(train_args(tiny_data, out, "--batch-size", 2, "--max-steps", 4, "--save-every", 2, "--resume"))
    assert os.path.basename(checkpoint.steps(out)[-1]) == "step_000004"
    assert not any(n.startswith(".tmp") for n in os.listdir(out / "checkpoints"))


def rebuild(ckpt):
    """The model eval.py rebuilds from a checkpoint folder (meta.json + adapters.safetensors, strictly)."""
    m, _, _ = checkpoint.load_model(str(ckpt), "cpu", torch.float32, log=lambda *a: None)
    return m


def logits(m, tok, graph_smiles="CC(=O)O"):
    ids, _ = tok.encode_chat("<mol> Describe this molecule.", "An acid.")
    with torch.no_grad():
        emb, mask, _ = molecule.embed_inputs(m, [ids], [molecule.smiles_to_graph(graph_smiles)])
        return m(inputs_embeds=emb, attention_mask=mask)


def test_saved_adapters_reproduce_the_trained_model(tiny_data, train_args, tmp_path):
    out = tmp_path / "run"
    trained = train.main(train_args(tiny_data, out, "--batch-size", 2, "--max-steps", 3, "--lr", 1e-2)).eval()
    _, tok = M.load_model("tiny")
    fresh = rebuild(checkpoint.steps(out)[-1])
    base, _ = M.load_model("tiny")
    molecule.attach_molecule(base)
    torch.testing.assert_close(logits(fresh, tok), logits(trained, tok), rtol=0, atol=0)
    assert not torch.allclose(logits(base, tok), logits(trained, tok))  # training changed something
    meta = json.load(open(os.path.join(checkpoint.steps(out)[-1], "meta.json")))
    assert meta["step"] == 3 and meta["base_model"] == "tiny" and meta["moge"]["recipe"] == "moge"
    assert len(meta["rng"]) == 1 and meta["data_position"]["step"] == 3


def test_nonfinite_steps_are_skipped_then_stop(tiny_data, train_args, read_log, tmp_path, capsys):
    out = tmp_path / "one_bad"
    train.main(train_args(tiny_data, out, "--batch-size", 2, "--max-steps", 4, "--debug-nan-steps", 2))
    log = read_log(out)
    assert [r["skipped"] for r in log] == [False, True, False, False]
    assert os.path.basename(checkpoint.steps(out)[-1]) == "step_000004"

    out = tmp_path / "many_bad"
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        train.main(train_args(tiny_data, out, "--batch-size", 2, "--max-steps", 8, "--save-every", 2,
                              "--debug-nan-steps", "3,4,5", "--max-bad-steps", 3))
    assert e.value.code == 1
    printed = capsys.readouterr().out
    assert "3 non-finite steps in a row" in printed and "step_000002" in printed
    log = read_log(out)
    assert [r["skipped"] for r in log] == [False, False, True, True, True]
    assert os.path.basename(checkpoint.steps(out)[-1]) == "step_000002"  # no save during the streak
    rebuild(checkpoint.steps(out)[-1])  # the last good checkpoint loads


@pytest.mark.parametrize("tasks, message", [
    ("bogus", "unknown task 'bogus'; valid tasks: forward"),
    ("forward,molcap:x", "ratio 'x' is not a number"),
    (",", "no tasks in"),
])
def test_tasks_errors_are_clear(tasks, message, capsys):
    with pytest.raises(SystemExit) as e:
        train.parse_args(["--tasks", tasks])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_stage1_is_molcap_only(capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--stage", "1", "--tasks", "forward"])
    assert "--stage 1 trains the projector on molcap" in capsys.readouterr().err
    args = train.parse_args(["--stage", "1"])
    assert args.task_ratios == {"molcap": 1.0} and args.lr == 2e-3


def test_stage1_trains_the_projector_only(tiny_data, train_args, read_log, tmp_path):
    out = tmp_path / "s1"
    m = train.main(["--model", "tiny", "--data", tiny_data, "--stage", "1", "--out", str(out), "--batch-size", "2",
                    "--max-steps", "2", "--threads", "1"])
    saved = load_file(os.path.join(checkpoint.steps(out)[-1], "adapters.safetensors"))
    assert sorted(saved) == ["mm_projector.bias", "mm_projector.weight"]
    assert {n for n, p in m.named_parameters() if p.requires_grad} == set(saved)
    assert set(read_log(out)[-1]["task_loss"]) == {"molcap"}
    # stage 2 starts from that projector (--init-from); one step at warm-up lr 0 leaves it as it was
    out2 = tmp_path / "s2"
    train.main(train_args(tiny_data, out2, "--batch-size", 2, "--max-steps", 1, "--init-from",
                          checkpoint.steps(out)[-1]))
    s2 = load_file(os.path.join(checkpoint.steps(out2)[-1], "adapters.safetensors"))
    assert len(s2) > len(saved) and all(torch.equal(s2[k], saved[k]) for k in saved)


def test_tasks_help_and_parser_agree(capsys):
    helptext = " ".join(train.get_parser().format_help().split())
    assert "ratio in (0, 1]" in helptext and "repeat" not in helptext
    with pytest.raises(SystemExit):
        train.parse_args(["--tasks", "forward:2.0"])  # the release caps ratios at 1, so do we
    assert "ratio must be in (0, 1]" in capsys.readouterr().err
    assert train.parse_args(["--tasks", "forward:0.5"]).task_ratios == {"forward": 0.5}


def test_aux_coef_help_says_what_the_release_ran():
    helptext = " ".join(train.get_parser().format_help().split())
    assert "--aux-coef 0 is the release as it was run" in helptext and "reentrant" in helptext


@pytest.mark.parametrize("argv, message", [
    (["--top-k", "6"], "--top-k must be in 1..--n-experts (5)"),
    (["--n-experts", "0"], "--n-experts must be >= 1"),
    (["--moe-layers", "12,x"], "--moe-layers: expected layer indices"),
    (["--moe-layers", "third_quarter"], "--moe-layers: expected layer indices"),
    (["--order", "sorted"], "invalid choice"),
    (["--mol-format", "inchi"], "invalid choice"),
])
def test_ablation_flag_errors_are_clear(argv, message, capsys):
    with pytest.raises(SystemExit):
        train.parse_args(argv)
    assert message in capsys.readouterr().err


def test_ablation_switches_reach_the_model(tiny_data, train_args, tmp_path):
    args = train.parse_args(["--moe-layers", "15,12,13,14"])
    assert args.moe_layer_ids == (12, 13, 14, 15) and args.order == "uniform" and args.mol_format == "selfies"
    assert train.parse_args(["--moe-layers", "dense"]).moe_layer_ids == "dense"
    out = tmp_path / "abl"
    m = train.main(train_args(tiny_data, out, "--batch-size", 2, "--max-steps", 1, "--n-experts", 3, "--top-k", 1,
                              "--moe-layers", "0,1", "--order", "length"))
    layers = [layer.mlp for layer in m.model.layers]
    assert all(isinstance(f, moge.MoGEFFN) for f in layers)  # both layers of the tiny model, as asked
    assert layers[0].router.weight.shape[0] == 3 and layers[0].experts.gate_A.shape[0] == 4  # 3 routed + shared
    assert m.moge_config.top_k == 1
    ckpt = checkpoint.steps(out)[-1]
    meta = json.load(open(os.path.join(ckpt, "meta.json")))
    assert meta["moge"]["n_experts"] == 3 and meta["moge"]["top_k"] == 1 and meta["moge"]["moe_layers"] == [0, 1]
    assert meta["args"]["order"] == meta["data_position"]["order"] == "length"
    fresh = rebuild(ckpt)  # eval rebuilds the same ablation from meta.json
    assert all(isinstance(layer.mlp, moge.MoGEFFN) for layer in fresh.model.layers)
    # a resume with another order is refused (the data position belongs to one order)
    with pytest.raises(SystemExit, match="--order 'length', this run has 'uniform'"):
        train.main(train_args(tiny_data, out, "--batch-size", 2, "--max-steps", 2, "--n-experts", 3, "--top-k", 1,
                              "--moe-layers", "0,1", "--resume"))
    with pytest.raises(SystemExit, match="layers 0..1"):
        train.main(train_args(tiny_data, tmp_path / "bad", "--max-steps", 1, "--moe-layers", "5"))


def test_rslora_recipe_and_smiles_format(tiny_data, train_args, tmp_path, monkeypatch):
    seen = []
    load = data.load_tasks
    monkeypatch.setattr(data, "load_tasks", lambda *a, **k: seen.extend(load(*a, **k)) or list(seen))
    out = tmp_path / "rs"
    m = train.main(train_args(tiny_data, out, "--batch-size", 2, "--max-steps", 1, "--recipe", "rslora",
                              "--mol-format", "smiles"))
    lin = m.model.layers[0].self_attn.q_proj
    assert isinstance(lin, moge.GALLinear) and lin.gal is None and lin.scale() == 16.0 / 4 ** 0.5
    assert not any(isinstance(layer.mlp, moge.MoGEFFN) for layer in m.model.layers)
    fwd = [s for s in seen if s.task == "forward"]
    assert fwd and all("][" not in s.prompt + s.answer for s in fwd)  # no SELFIES in prompts or answers
    assert {s.answer for s in fwd} >= {"CCO", "c1ccccc1"}
    meta = json.load(open(os.path.join(checkpoint.steps(out)[-1], "meta.json")))
    assert meta["args"]["mol_format"] == "smiles" and meta["moge"]["recipe"] == "rslora"


def test_stage1_prompt_has_no_selfies(tiny_data, tmp_path, monkeypatch):
    seen = []
    load = data.load_tasks
    monkeypatch.setattr(data, "load_tasks", lambda *a, **k: seen.extend(load(*a, **k)) or list(seen))
    train.main(["--model", "tiny", "--data", tiny_data, "--stage", "1", "--out", str(tmp_path / "s1"),
                "--batch-size", "2", "--max-steps", "1", "--threads", "1"])
    assert len(seen) == 16
    for s in seen:  # "<mol>\n" + question: the graph is the only way the molecule gets in
        assert s.prompt.startswith(GRAPH) and s.prompt[len(GRAPH):] in MOLCAP_QUESTIONS


def test_learning_curve_is_the_heldout_nll_of_the_checkpoints(tiny_data, tiny_tasks, train_args, tmp_path):
    """--curve-every: OUT/heldout.jsonl holds step 0 and every N steps, each point equal to eval.py's held-out
    NLL of the model at that step (the saved checkpoint, loaded afresh), and learning_curve.png is drawn."""
    data_dir = tmp_path / "data"
    shutil.copytree(tiny_data, data_dir)
    os.makedirs(data_dir / "test")
    for name in os.listdir(data_dir / "train"):  # the training records double as a test split here
        recs = json.loads((data_dir / "train" / name).read_text())
        (data_dir / "test" / name).write_text(json.dumps([dict(r, metadata={"split": "test"}) for r in recs]))
    out = tmp_path / "run"
    train.main(train_args(str(data_dir), out, "--max-steps", 2, "--save-every", 1, "--curve-every", 1,
                          "--curve-items", 3, "--batch-size", 2))
    points = [json.loads(ln) for ln in (out / "heldout.jsonl").read_text().splitlines()]
    assert [p["step"] for p in points] == [0, 1, 2] and points[0]["items"] == 9
    assert (out / "learning_curve.png").stat().st_size > 0
    for step in (1, 2):
        model, tok, meta = checkpoint.load_model(str(out / "checkpoints" / f"step_{step:06d}"), "cpu", torch.float32,
                                                 log=lambda *a: None)
        test = data.load_tasks(tiny_tasks, split="test", data=str(data_dir), verbose=False, tokenizer=tok)
        keep = [s for t in tiny_tasks.split(",") for s in [x for x in test if x.task == t][:3]]
        want = heldout_nll(model, tok, keep, scored_as)
        assert points[step]["nll"] == pytest.approx(want, rel=1e-5)
    assert points[0]["nll"] != pytest.approx(points[2]["nll"])


def test_save_every_epoch_and_the_bos_flag(tiny_data, train_args, tmp_path, capsys):
    # 48 samples, batch 16: 3 steps per epoch; checkpoints at each epoch boundary and at the last step
    out = tmp_path / "ep"
    train.main(train_args(tiny_data, out, "--batch-size", 16, "--max-steps", 7, "--save-every", "epoch",
                          "--keep-last", 5))
    assert [os.path.basename(p) for p in checkpoint.steps(out)] == ["step_000003", "step_000006", "step_000007"]
    assert "a checkpoint every epoch (3 steps): epoch 14 is checkpoints/step_000042" in capsys.readouterr().out
    meta = json.load(open(os.path.join(checkpoint.steps(out)[-1], "meta.json")))
    assert meta["args"]["bos"] == 1 and meta["args"]["save_every"] == "epoch"
    with pytest.raises(SystemExit):
        train.parse_args(["--save-every", "often"])
    assert "'epoch'" in train.get_parser().format_help()
    with pytest.raises(ValueError, match="no begin-of-text token"):  # the tiny model's ChatML has none
        train.main(train_args(tiny_data, tmp_path / "b2", "--max-steps", 1, "--bos", 2))
