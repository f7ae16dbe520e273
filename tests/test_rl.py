"""rl.py on CPU with the tiny model: a toy verifiable reward rises, advantages are zero-mean per group,
the clipped objective and the KL term match hand formulas (KL exactly 0 at step 0), the sampling pass's
log-probs equal the teacher-forced ones, resume is exact and eval.py loads an RL checkpoint.

The toy rewards here are test stand-ins for verify.verify (same call and verdict shape); rl.py itself
uses verify.py. smiles, read_log, repo: conftest.py."""
import collections
import json
import math
import os
import subprocess
import sys

import pytest
import selfies
import torch
from rdkit import Chem
from rdkit.Chem import Descriptors
from safetensors.torch import load_file

import checkpoint
import data
import eval as E
import likelihood
import moge
import molecule
import rl
import train
import verify

Verdict = collections.namedtuple("Verdict", "score reason")
LETTERS = set("abcdefghijklmnopqrstuvwxyz")


def letters_reward(task, prompt, prediction, reference):
    """Toy verifiable reward: the fraction of the answer's characters that are lowercase letters."""
    if not prediction:
        return Verdict(0.0, "unparsable")
    frac = sum(c in LETTERS for c in prediction) / len(prediction)
    return Verdict(frac, "ok" if frac == 1.0 else "out of tolerance")


@pytest.fixture(scope="module")
def sft(tmp_path_factory, smiles):
    """A tiny data folder (weight: train and test records) and a 2-step train.py checkpoint on it."""
    root = tmp_path_factory.mktemp("rl")
    recs = [{"instruction": "What is the molecular weight of this molecule?", "input": selfies.encoder(s),
             "output": f"{Descriptors.MolWt(Chem.MolFromSmiles(s)):.2f}", "metadata": {"split": split}}
            for split in ("train", "test") for s in smiles]
    os.makedirs(root / "data" / "train")
    os.makedirs(root / "data" / "test")
    for split in ("train", "test"):
        (root / "data" / split / "Molecular_Weight.json").write_text(
            json.dumps([r for r in recs if r["metadata"]["split"] == split]))
    train.main(["--model", "tiny", "--data", str(root / "data"), "--tasks", "weight", "--out", str(root / "sft"),
                "--lora-r", "4", "--max-steps", "2", "--batch-size", "2", "--max-len", "512", "--threads", "1"])
    return root, checkpoint.steps(root / "sft")[-1]


def rl_args(sft, out, *extra):
    root, ckpt = sft
    return ["--ckpt", ckpt, "--tasks", "weight", "--out", str(out), "--threads", "1", "--prompts", "2",
            "--group-size", "4", "--max-new-tokens", "6", *map(str, extra)]


# ----------------------------------------------------------------------------- pieces against hand formulas

def test_advantages_zero_mean_per_group():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.2, 0.9, 0.4, 0.0])
    for std in (True, False):
        a = rl.group_advantages(r, 4, std=std).view(3, 4)
        assert a.sum(1).abs().max() < 1e-6
        assert torch.equal(a[1], torch.zeros(4))  # all equal: no signal
    a = rl.group_advantages(r, 4).view(3, 4)
    g = [0.2, 0.9, 0.4, 0.0]  # by hand: (r - mean) / (sample std + 1e-4)
    m = sum(g) / 4
    s = math.sqrt(sum((x - m) ** 2 for x in g) / 3)
    assert a[2].tolist() == pytest.approx([(x - m) / (s + 1e-4) for x in g], rel=1e-5)
    assert a[0].tolist() == pytest.approx([x / (math.sqrt(1 / 3) + 1e-4) for x in (0.5, -0.5, -0.5, 0.5)], rel=1e-5)


def test_clipped_objective_and_kl_by_hand():
    logp = torch.tensor([-1.0, -1.0, -2.0, -0.5], requires_grad=True)
    old = torch.tensor([-1.0, -1.5, -1.0, -0.5])
    adv = torch.tensor([1.0, 1.0, -1.0, -2.0])
    ref = torch.tensor([-1.0, -0.8, -2.5, -0.1])
    loss, kl, clipped = rl.grpo_token_loss(logp, old, adv, ref, 0.2, 0.3, beta=0.1)
    want_kl, want = [], []
    for lp, o, a, rf in zip(logp.tolist(), old.tolist(), adv.tolist(), ref.tolist()):
        rho = math.exp(lp - o)
        k = math.exp(rf - lp) - (rf - lp) - 1
        want_kl.append(k)
        want.append(-min(rho * a, min(max(rho, 0.8), 1.3) * a) + 0.1 * k)
    assert kl.tolist() == pytest.approx(want_kl, abs=1e-6) and kl[0] == 0
    assert loss.tolist() == pytest.approx(want, abs=1e-6)
    # token 1: rho = e^0.5 > 1.3 with A > 0 -> clipped, no policy gradient (only the KL's)
    # token 2: rho = e^-1 < 0.8 with A < 0 -> clipped as well
    assert clipped.tolist() == [False, True, True, False]
    loss.sum().backward()
    d = ref[1].item() - logp[1].item()
    assert logp.grad[1].item() == pytest.approx(0.1 * (1 - math.exp(d)), abs=1e-6)


def test_shaping_options():
    v = Verdict(0.0, "out of tolerance")
    assert rl.shaped_reward("weight", v, "46.07", "46.07") == 0.0  # no shaping: the verifier's score
    s = rl.PARTIAL_SCALE["weight"]
    assert rl.shaped_reward("weight", v, "50.0", "46.07", partial_credit=True) == pytest.approx(1 / (1 + 3.93 / s))
    assert rl.shaped_reward("weight", v, "about 46.07", "46.07", partial_credit=True) == 1.0
    assert rl.shaped_reward("weight", Verdict(0.0, "unparsable"), "no idea", "46.07", True, 0.1) == 0.0
    assert rl.shaped_reward("weight", v, "999", "46.07", False, 0.1) == 0.1
    assert rl.shaped_reward("forward", Verdict(1.0, "ok"), "CCO", "CCO", True, 0.1) == 1.0
    assert rl.shaped_reward("weight", Verdict(float("nan"), "ok"), "x", "1") == 0.0


def test_real_verifier_plugs_in():
    assert set(rl.NO_FORMAT) <= set(verify.REASONS)
    assert rl.default_reward() is verify.verify
    prompt = "What is the molecular weight of this molecule? The molecule SELFIES sequence is: <mol>[C][C][O]"
    for answer, want in (("46.07", 1.0), ("50.07", 1 / (1 + 4 / rl.PARTIAL_SCALE["weight"])), ("no idea", 0.0)):
        v = verify.verify("weight", prompt, answer, "46.07")
        assert rl.shaped_reward("weight", v, answer, "46.07", partial_credit=True) == pytest.approx(want, abs=1e-3)


def test_swapped_parameters_come_back(sft):
    model, _, _ = checkpoint.load_model(sft[1], "cpu", torch.float32, log=lambda *a: None)
    params = moge.trainable_parameters(model)
    live = {n: p.detach().clone() for n, p in params.items()}
    zeros = {n: torch.zeros_like(p) for n, p in params.items()}
    with rl.swapped(params, zeros):
        assert all(torch.equal(p, zeros[n]) for n, p in params.items())
    assert all(torch.equal(p, live[n]) for n, p in params.items())
    assert all(p.requires_grad for p in params.values())


def test_sampling_logprobs_equal_teacher_forced(sft):
    """The old-policy log-probs from the KV-cache sampling pass (model.generate) equal the teacher-forced
    log-probs of the same token ids (likelihood.answer_logprobs with answer_ids), at temperature T."""
    model, tok, meta = checkpoint.load_model(sft[1], "cpu", torch.float32, log=lambda *a: None)
    samples = data.load_tasks("weight", split="train", data=meta["args"]["data"], verbose=False)[:3]
    items = [(s.prompt, data.featurize(s)) for s in samples for _ in range(2)]
    ids = [tok.encode_chat(u)[0] for u, _ in items]
    with torch.no_grad():
        emb, mask, _ = molecule.embed_inputs(model, ids, [g for _, g in items], padding_side="left")
        out, lps = model.generate(inputs_embeds=emb, attention_mask=mask, max_new_tokens=7, temperature=0.7,
                                  eos_token_ids=tok.eos_token_ids, generator=torch.Generator().manual_seed(0),
                                  pad_token_id=tok.pad_token_id, return_logprobs=True)
    answers = [[t for t in row if t >= 0] for row in out.tolist()]
    with torch.no_grad():  # the static-cache decode path (CUDA graphs on a GPU) returns the same
        out2, lps2 = model.generate(inputs_embeds=emb, attention_mask=mask, max_new_tokens=7, temperature=0.7,
                                    eos_token_ids=tok.eos_token_ids, generator=torch.Generator().manual_seed(0),
                                    pad_token_id=tok.pad_token_id, return_logprobs=True, static_cache=True)
    assert torch.equal(out, out2)
    torch.testing.assert_close(lps, lps2, atol=1e-5, rtol=1e-5)
    tf = likelihood.answer_logprobs(model, tok, items, None, answer_ids=answers, temperature=0.7)
    for a, lp, row in zip(answers, tf, lps):
        assert len(lp) == len(a)
        torch.testing.assert_close(lp, row[:len(a)], atol=1e-5, rtol=1e-5)
        assert torch.all(row[len(a):] == 0)
    # answer_ids of an encoded text answer (+ the end-of-turn token) give that text's log-probs
    text = likelihood.answer_logprobs(model, tok, items[:1], ["46.07"])[0]
    ids = likelihood.answer_logprobs(model, tok, items[:1], None, answer_ids=[tok.encode("46.07") + [tok.eot_id]])[0]
    assert torch.equal(text, ids)
    # without return_logprobs the answers are the same tokens, cut before the stop token
    with torch.no_grad():
        plain = model.generate(inputs_embeds=emb, attention_mask=mask, max_new_tokens=7, temperature=0.7,
                               eos_token_ids=tok.eos_token_ids, generator=torch.Generator().manual_seed(0),
                               pad_token_id=tok.pad_token_id)
    assert plain == [a[:-1] if a and a[-1] in tok.eos_token_ids else a for a in answers]


# ----------------------------------------------------------------------------- the loop

# T = 0.2: the tiny model's HF-style init (tied 0.02-std embeddings) bounds its logits to about +-1.3, so at
# T = 1 no adapter can make its policy much less uniform; at T = 0.2 the toy reward is learnable in 20 steps
# with this init (measured 0.06 -> 0.65) and with the tiny model's learnable init (0.08 -> 1.0)
TOY = ("--lr", 1e-2, "--temperature", 0.2)


def test_toy_reward_rises(sft, tmp_path, read_log):
    out = tmp_path / "rise"
    rl.main(rl_args(sft, out, "--max-steps", 20, "--group-size", 8, *TOY), reward_fn=letters_reward)
    log = read_log(out)
    first, last = [r["reward"] for r in log[:5]], [r["reward"] for r in log[-5:]]
    assert sum(last) / 5 > sum(first) / 5 + 0.2, (first, last)
    assert all(r["kl"] is None and not r["skipped"] for r in log)
    assert log[0]["logp_gap"] < 1e-4  # sampling-pass and teacher-forced log-probs agree (rho = 1 at the start)
    assert set(log[0]["task_reward"]) == {"weight"} and sum(log[0]["reasons"].values()) == log[0]["answers"] == 16
    assert os.path.exists(out / "reward.png") or "matplotlib" not in sys.modules


def test_kl_is_zero_at_step_0_then_grows(sft, tmp_path, read_log):
    out = tmp_path / "kl"
    rl.main(rl_args(sft, out, "--max-steps", 3, "--kl-coef", 0.1, *TOY), reward_fn=letters_reward)
    log = read_log(out)
    assert log[0]["kl"] == 0.0  # the policy is the reference: exactly, not approximately
    assert log[1]["kl"] > 0 and log[2]["kl"] > 0


KEYS = ("reward", "verified", "reasons", "kl", "entropy", "answer_len", "loss", "grad_norm", "clip_frac", "example")


def test_resume_is_exact(sft, tmp_path, read_log):
    common = ("--max-steps", 4, "--kl-coef", 0.05, "--save-every", 2, *TOY)
    rl.main(rl_args(sft, tmp_path / "full", *common), reward_fn=letters_reward)
    rl.main(rl_args(sft, tmp_path / "cut", *common, "--stop-after", 2), reward_fn=letters_reward)
    torch.manual_seed(1234)  # whatever the global RNG holds must not matter
    with pytest.raises(SystemExit, match="group-size"):  # a different run is refused
        rl.main(rl_args(sft, tmp_path / "cut", *common, "--resume", "--group-size", 2), reward_fn=letters_reward)
    rl.main(rl_args(sft, tmp_path / "cut", *common, "--resume"), reward_fn=letters_reward)
    full, cut = read_log(tmp_path / "full"), read_log(tmp_path / "cut")
    assert [r["step"] for r in cut] == [1, 2, 3, 4]
    for a, b in zip(full, cut):
        assert {k: a[k] for k in KEYS} == {k: b[k] for k in KEYS}
    fa = load_file(os.path.join(checkpoint.steps(tmp_path / "full")[-1], "adapters.safetensors"))
    fb = load_file(os.path.join(checkpoint.steps(tmp_path / "cut")[-1], "adapters.safetensors"))
    assert fa.keys() == fb.keys() and all(torch.equal(fa[k], fb[k]) for k in fa)


def test_rl_checkpoint_loads_in_eval(sft, tmp_path, capsys):
    out = tmp_path / "ev"
    trained = rl.main(rl_args(sft, out, "--max-steps", 2, *TOY), reward_fn=letters_reward)
    ckpt = checkpoint.steps(out)[-1]
    model, _, meta = checkpoint.load_model(ckpt, "cpu", torch.float32, log=lambda *a: None)
    got, want = moge.adapter_state_dict(model), moge.adapter_state_dict(trained)
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    start = moge.adapter_state_dict(checkpoint.load_model(sft[1], "cpu", torch.float32, log=lambda *a: None)[0])
    assert any(not torch.equal(got[k], start[k]) for k in got)  # RL changed the adapters
    assert meta["step"] == 2 and meta["rl"]["sft_checkpoint"] == os.path.abspath(sft[1])
    res = E.main(["--ckpt", str(out), "--tasks", "weight", "--limit", "2", "--max-new-tokens", "4", "--greedy"])
    assert "weight" in res and f"loaded {ckpt}" in capsys.readouterr().out.replace("/adapters.safetensors", "")


def test_steps_without_signal_run(sft, tmp_path, read_log):
    """All answers score 0: every advantage is 0, no sequence is trained, the step still logs and saves."""
    out = tmp_path / "flat"
    rl.main(rl_args(sft, out, "--max-steps", 2, *TOY), reward_fn=lambda *a: Verdict(0.0, "unparsable"))
    log = read_log(out)
    assert [r["groups_with_signal"] for r in log] == [0.0, 0.0] and log[0]["reasons"] == {"unparsable": 8}
    assert log[0]["grad_norm"] == 0.0 and not any(r["skipped"] for r in log)


def test_micro_batches_take_the_same_step(sft, tmp_path, read_log):
    """Gradient accumulation over micro-batches of 3 sequences == one pass over all 8 (balance loss off: it is a
    per-forward statistic): the same loss and gradient norm, and step 2 samples from the same updated policy.
    (Adapters are not compared elementwise: Adam turns float-noise gradients of ~0 into +-lr steps.)"""
    common = ("--max-steps", 2, "--aux-coef", 0, "--kl-coef", 0.05, *TOY)
    rl.main(rl_args(sft, tmp_path / "one", *common, "--micro-batch", 0), reward_fn=letters_reward)
    rl.main(rl_args(sft, tmp_path / "three", *common, "--micro-batch", 3), reward_fn=letters_reward)
    for a, b in zip(read_log(tmp_path / "one"), read_log(tmp_path / "three")):
        assert a["reward"] == b["reward"] and a["example"] == b["example"]
        for k in ("loss", "grad_norm", "kl"):
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-7), k


def test_text_tasks_are_refused(capsys):
    with pytest.raises(SystemExit):
        rl.parse_args(["--ckpt", "x", "--tasks", "weight,molcap"])
    assert "molcap: free-text answers have no verifier" in capsys.readouterr().err


def test_nonfinite_steps_are_skipped_then_stop(sft, tmp_path, read_log):
    out = tmp_path / "nan"
    rl.main(rl_args(sft, out, "--max-steps", 3, "--debug-nan-steps", 2, *TOY), reward_fn=letters_reward)
    assert [r["skipped"] for r in read_log(out)] == [False, True, False]
    with pytest.raises(SystemExit) as e:
        rl.main(rl_args(sft, tmp_path / "nan2", "--max-steps", 5, "--debug-nan-steps", "2,3", "--max-bad-steps", 2,
                        *TOY), reward_fn=letters_reward)
    assert e.value.code == 1 and len(read_log(tmp_path / "nan2")) == 3


# rl.main in a torchrun child with this file's toy reward (the child finds the repository and this file
# by PYTHONPATH)
TOY_SCRIPT = '''
import os, sys
import moge, rl, test_rl
from safetensors.torch import save_file
model = rl.main(sys.argv[1:], reward_fn=test_rl.letters_reward)
save_file({n: t.contiguous() for n, t in moge.adapter_state_dict(model).items()},
          os.path.join(sys.argv[sys.argv.index("--out") + 1], f"rank{os.environ.get('RANK', 0)}.safetensors"))
'''


def test_torchrun_two_ranks_stay_in_sync(repo, sft, read_log, tmp_path):
    """Two ranks sample different answers to different prompts; the summed gradients keep their adapters
    identical, and the log counts both ranks' answers."""
    script = tmp_path / "toy_rl.py"
    script.write_text(TOY_SCRIPT)
    out = tmp_path / "ddp"
    path = os.pathsep.join([repo, os.path.join(repo, "tests")] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(script), *rl_args(sft, out, "--max-steps", 2, "--kl-coef", 0.05, *TOY)],
                       cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    a, b = load_file(out / "rank0.safetensors"), load_file(out / "rank1.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    saved = load_file(os.path.join(checkpoint.steps(out)[-1], "adapters.safetensors"))
    assert all(torch.equal(a[k], saved[k]) for k in a)
    log = read_log(out)
    assert [r["answers"] for r in log] == [16, 16] and log[0]["kl"] == 0.0  # 2 ranks x 2 prompts x 4 answers
