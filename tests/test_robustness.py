"""Nothing lost, nothing hangs, clear errors: a run folder belongs to one run (refused when used, locked while
running), --score never overwrites a model eval, scoring is bounded on huge answers, non-finite numbers and
tensors are refused, bad flags and corrupt checkpoint files are one-line errors that name the file."""
import errno
import argparse
import json
import os
import stat
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import save_file

import answers
import checkpoint
import convert
import data
import eval as evaluate
import mcq
import model as M
import readers
import report
import rl
import train
from readers import disk_error


def _train(train_args, tiny_data, out, *extra):
    return train.main(train_args(tiny_data, out, "--max-steps", 2, "--batch-size", 2, *extra))


# ----------------------------------------------------------------------------- a run folder belongs to one run

def test_second_run_into_a_used_folder_is_refused(train_args, tiny_data, tmp_path):
    out = tmp_path / "run"
    _train(train_args, tiny_data, out, "--save-every", 1)
    before = sorted(os.listdir(out / "checkpoints"))
    log = (out / "log.jsonl").read_text()
    with pytest.raises(checkpoint.RunFolderError, match="already holds a run.*--resume.*--overwrite"):
        _train(train_args, tiny_data, out, "--tasks", "molcap")
    assert sorted(os.listdir(out / "checkpoints")) == before and (out / "log.jsonl").read_text() == log
    # --overwrite: the old run's files go first, so its checkpoints cannot shadow or rotate away the new ones
    (out / "notes.txt").write_text("mine")
    _train(train_args, tiny_data, out, "--tasks", "molcap", "--overwrite", "--max-steps", 1)
    assert [os.path.basename(d) for d in checkpoint.steps(out)] == ["step_000001"]
    assert json.loads((out / "checkpoints" / "step_000001" / "meta.json").read_text())["args"]["tasks"] == "molcap"
    assert (out / "notes.txt").read_text() == "mine"  # only run files are deleted


def test_rl_refuses_to_write_into_its_sft_folder(train_args, tiny_data, tmp_path):
    sft = tmp_path / "sft"
    _train(train_args, tiny_data, sft)
    with pytest.raises(checkpoint.RunFolderError, match="holds the checkpoint this run starts from"):
        rl.main(["--ckpt", str(sft), "--out", str(sft), "--tasks", "iupac", "--max-steps", "1", "--threads", "1"])
    assert [os.path.basename(d) for d in checkpoint.steps(sft)] == ["step_000002"]


def test_a_running_run_holds_its_folder(tmp_path, repo):
    """A second process asking for a locked run folder is refused with the holder's pid; the lock ends with
    its process."""
    out = tmp_path / "busy"
    code = "import sys, time, checkpoint; checkpoint.lock(sys.argv[1]); print('locked', flush=True); time.sleep(60)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(checkpoint.RunFolderError, match=f"in use by another run \\(pid {holder.pid}"):
            checkpoint.claim(str(out))
    finally:
        holder.kill()
        holder.wait()
    checkpoint.claim(str(out))  # free again


def test_score_never_overwrites_the_model_eval(tmp_path):
    ev = tmp_path / "eval"
    ev.mkdir()
    rows = [{"task": "weight", "id": str(i), "prompt": "The molecule SELFIES sequence is: [C][C][O]",
             "prediction": "46.07", "reference": "46.07"} for i in range(3)]
    (ev / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (ev / "results.json").write_text('{"model eval": true}')
    evaluate.main(["--score", str(ev / "predictions.jsonl"), "--no-baselines"])
    assert json.loads((ev / "results.json").read_text()) == {"model eval": True}
    assert json.loads((ev / "predictions_scored" / "results.json").read_text())["weight"]["Average MAE"] == 0.0


def test_eval_checks_its_output_folder_before_generating(tmp_path, tiny_checkpoint, eval_data_folder):
    step_dir, _ = tiny_checkpoint(tmp_path / "out", eval_data_folder(tmp_path / "d"))
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    t0 = time.time()
    with pytest.raises(SystemExit, match="cannot write"):
        evaluate.main(["--ckpt", str(step_dir), "--out", str(blocker / "eval"), "--tasks", "weight", "--no-nll"])
    assert time.time() - t0 < 30  # refused at once, before any generation


def test_disk_errors_say_what_and_where():
    assert "disk is full (ENOSPC)" in disk_error(OSError(errno.ENOSPC, "No space left", "/x/y"), "/x")
    assert "/x/y" in disk_error(OSError(errno.ENOSPC, "No space left", "/x/y"), "/x")
    assert "read-only (EROFS)" in disk_error(OSError(errno.EROFS, "Read-only file system"), "/ro")
    assert "/ro" in disk_error(OSError(errno.EROFS, "Read-only file system"), "/ro")


# ----------------------------------------------------------------------------- bounded scoring

def test_a_huge_answer_is_scored_in_seconds():
    huge = "[C]" * (350_000 // 3)  # ~350,000 characters of SELFIES: selfies.decoder alone takes minutes on it
    rows = [{"task": t, "id": "0", "prompt": "The molecule SELFIES sequence is: [C][C][O]", "prediction": huge,
             "reference": ref} for t, ref in (("forward", "[C][C][O]"), ("weight", "46.07"), ("molediting", "[C]"),
                                              ("homolumo", "HOMO -0.25"), ("molcap", "An alcohol."))]
    t0 = time.time()
    res = report.score_rows(rows)
    assert time.time() - t0 < 10
    assert res["forward"]["Validity"] == 0.0 and res["weight"]["Average MAE"] is None
    assert answers.parse_molecule(huge) == (None, "too long")


def test_a_huge_mcq_option_is_never_scored(monkeypatch):
    """option_scores skips an option over answers.MAX_CHARS (-inf, never chosen) without a forward pass."""
    q = {"task": "molcap", "id": "q0", "prompt": "Describe it.", "graph": None, "answer": 0,
         "options": ["short", "x" * 100_000, "also short", "third"]}
    seen = []  # the options that reach the model (answer_logprobs stands in for its forward pass)
    monkeypatch.setattr(mcq.likelihood, "answer_logprobs", lambda m, tok, items, texts, batch_size: (
        seen.extend(texts) or [torch.tensor([-1.0]) for _ in texts]))
    scores = mcq.option_scores(None, None, [q], graphs=False)
    assert len(seen) == 3 and all(len(s) < 100 for s in seen)
    assert scores == [[-1.0, float("-inf"), -1.0, -1.0]]


# ----------------------------------------------------------------------------- non-finite values

def test_non_finite_numbers_are_unparsable(tmp_path):
    assert answers.first_number("1e309") is None and answers.strict_float("1e309") is None
    assert answers.first_number("-inf") is None and answers.strict_float("nan") is None
    rows = [{"task": "weight", "id": "0", "prompt": "The molecule SELFIES sequence is: [C][C][O]",
             "prediction": "1e309", "reference": "46.07"},
            {"task": "weight", "id": "1", "prompt": "The molecule SELFIES sequence is: [C][C][O]",
             "prediction": "40.07", "reference": "46.07"}]
    res = report.score_rows(rows)["weight"]
    assert res["Average MAE"] == pytest.approx(6.0) and res["Validity"] == 0.5
    report.write_results({"weight": {**res, "bad": float("inf")}}, str(tmp_path), {"x": float("nan")})
    text = (tmp_path / "results.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text)["weight"]["bad"] is None


def test_nan_adapters_are_refused_at_load_and_never_saved(tmp_path, tiny_checkpoint, eval_data_folder, train_args,
                                                          tiny_data):
    step_dir, sd = tiny_checkpoint(tmp_path / "out", eval_data_folder(tmp_path / "d"))
    bad = {k: v.clone() for k, v in sd.items()}
    first = sorted(bad)[0]
    bad[first][0] = float("nan")
    save_file(bad, str(step_dir / "adapters.safetensors"))
    with pytest.raises(checkpoint.CorruptCheckpoint, match=f"corrupt.*NaN/Inf.*{first}"):
        checkpoint.load_model(str(step_dir), "cpu", torch.float32, log=lambda *a: None)
    with pytest.raises(checkpoint.CorruptCheckpoint, match="NaN/Inf"):  # --init-from reads it the same way
        _train(train_args, tiny_data, tmp_path / "init", "--init-from", str(step_dir))
    model, _, _ = checkpoint.load_model(str(tiny_checkpoint(tmp_path / "ok", tmp_path / "d")[0]), "cpu",
                                        torch.float32, log=lambda *a: None)
    with torch.no_grad():
        next(iter(checkpoint.moge.trainable_parameters(model).values()))[0] = float("inf")
    with pytest.raises(ValueError, match="not saved.*NaN/Inf"):
        checkpoint.save(str(tmp_path / "never"), 1, model, None, None, {}, keep_last=3)
    assert checkpoint.steps(tmp_path / "never") == []


# ----------------------------------------------------------------------------- corrupt checkpoint files

@pytest.mark.parametrize("damage", ["truncated", "empty", "bad header"])
def test_corrupt_adapters_are_named(tmp_path, tiny_checkpoint, eval_data_folder, damage):
    step_dir, _ = tiny_checkpoint(tmp_path / "out", eval_data_folder(tmp_path / "d"))
    f = step_dir / "adapters.safetensors"
    raw = f.read_bytes()
    f.write_bytes({"truncated": raw[: len(raw) // 2], "empty": b"", "bad header": b"\xff" * 8 + raw[8:]}[damage])
    with pytest.raises(checkpoint.CorruptCheckpoint, match=f"checkpoint {step_dir} is corrupt: {f}"):
        checkpoint.load_model(str(step_dir), "cpu", torch.float32, log=lambda *a: None)


def test_resume_from_a_corrupt_optimizer_names_the_newest_intact_step(train_args, tiny_data, tmp_path):
    out = tmp_path / "run"
    _train(train_args, tiny_data, out, "--save-every", 1)
    newest = checkpoint.steps(out)[-1]
    opt = os.path.join(newest, "optimizer.pt")
    raw = open(opt, "rb").read()
    open(opt, "wb").write(raw[: len(raw) // 3])
    with pytest.raises(checkpoint.CorruptCheckpoint) as e:
        _train(train_args, tiny_data, out, "--resume", "--max-steps", 3)
    msg = str(e.value)
    assert f"{newest} is corrupt: {opt}" in msg and "weights_only=False" not in msg
    assert "newest intact checkpoint is " + checkpoint.steps(out)[-2] in msg


def test_malformed_meta_json_names_the_file(tmp_path, tiny_checkpoint, eval_data_folder):
    step_dir, _ = tiny_checkpoint(tmp_path / "out", eval_data_folder(tmp_path / "d"))
    for text in ("{not json", "[1, 2]", "\xff\xfe"):
        (step_dir / "meta.json").write_bytes(text.encode("latin-1"))
        with pytest.raises(checkpoint.CorruptCheckpoint, match=f"{step_dir / 'meta.json'}"):
            checkpoint.load_model(str(step_dir), "cpu", torch.float32, log=lambda *a: None)


def test_adapters_are_written_readable_like_their_siblings(train_args, tiny_data, tmp_path):
    out = tmp_path / "run"
    _train(train_args, tiny_data, out)
    d = checkpoint.steps(out)[-1]
    modes = {n: stat.S_IMODE(os.stat(os.path.join(d, n)).st_mode) for n in os.listdir(d)}
    assert len(set(modes.values())) == 1, modes


# ----------------------------------------------------------------------------- flags

@pytest.mark.parametrize("argv, msg", [
    (["--max-steps", "0"], "--max-steps must be > 0"),
    (["--max-steps", "-1"], "--max-steps must be > 0"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--warmup-ratio", "5"], "--warmup-ratio is a fraction"),
    (["--tasks", "weight,weight"], "given twice"),
    (["--resume", "--init-from", "x"], "give one of them"),
    (["--stage", "1", "--recipe", "gal"], "--recipe applies to stage 2"),
    (["--device", "cuda"], "CUDA is not available"),
])
def test_train_flags(argv, msg, capsys):
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit):
        train.parse_args(argv)
    assert msg in capsys.readouterr().err


@pytest.mark.parametrize("argv, msg", [
    (["--temperature", "-1"], "--temperature must be >= 0"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be >= 1"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--score", "p.jsonl", "--mcq", "q.jsonl"], "takes no --mcq or --ckpt"),
    (["--score", "p.jsonl", "--ckpt", "out"], "takes no --mcq or --ckpt"),
    (["--top-p", "0"], "--top-p must be in (0, 1]"),
])
def test_eval_flags(argv, msg, capsys):
    with pytest.raises(SystemExit):
        evaluate.parse_args(argv)
    assert msg in capsys.readouterr().err


def test_temperature_zero_is_recorded_as_greedy():
    assert evaluate.parse_args(["--temperature", "0"]).greedy


def test_missing_tokenizer_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="--tokenizer .*nope.json does not exist"):
        report.text_tokenizer(str(tmp_path / "nope.json"), "release")


@pytest.mark.parametrize("parser", [train.get_parser, rl.get_parser, evaluate.get_parser])
def test_every_flag_has_help_with_its_default(parser):
    p = parser()
    assert issubclass(p.formatter_class, argparse.ArgumentDefaultsHelpFormatter)
    missing = [a.option_strings[0] for a in p._actions
               if a.option_strings and a.help is None and a.option_strings[0] != "-h"]
    assert not missing, missing


# ----------------------------------------------------------------------------- bad files name themselves

def test_non_utf8_data_files_are_named(tmp_path):
    (tmp_path / "train").mkdir()
    bad = tmp_path / "train" / "molcap.json"
    bad.write_bytes(b'\xff\xfe[{"input": "[C]"}]')
    with pytest.raises(ValueError, match=f"{bad}: not UTF-8"):
        data.load_tasks("molcap", "train", str(tmp_path), verbose=False)
    tsv = tmp_path / "chebi_test.txt"
    tsv.write_bytes(b"CID\tSMILES\tdescription\n1\tC\t\xff\xfe\n")
    with pytest.raises(ValueError, match=f"{tsv}: not UTF-8"):
        readers.read_chebi20(str(tsv))


def test_malformed_config_json_is_named(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=f"{tmp_path / 'config.json'} is not valid JSON"):
        M.load_model(str(tmp_path))


def test_build_demo_into_a_file_is_an_error(tmp_path, repo):
    f = tmp_path / "a_file"
    f.write_text("x")
    p = subprocess.run([sys.executable, os.path.join(repo, "data.py"), "build-demo", "--out", str(f)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "is a file, not a folder" in p.stderr and "wrote" not in p.stdout
    assert f.read_text() == "x"


def test_convert_never_advises_unpickling(tmp_path):
    """A .bin holding more than tensors is refused without torch's "retry with weights_only=False" advice."""
    f = tmp_path / "adapter_model.bin"
    torch.save({"w": torch.zeros(1), "obj": argparse.Namespace(a=1)}, f)
    with pytest.raises(convert.ConversionError) as e:
        convert.read_tensors(str(f))
    msg = str(e.value)
    assert "argparse.Namespace" in msg and "not only tensors" in msg
    assert "set to `False`" not in msg and "can still be loaded" not in msg and "safe_globals" not in msg


@pytest.mark.parametrize("argv, msg", [
    (["data.py", "stats", "--data", "/nonexistent/folder"], "data.py: error: data folder /nonexistent/folder"),
    (["mcq.py", "build", "--tasks", "nope", "--out", "q.jsonl"], "mcq.py: error: unknown task 'nope'"),
])
def test_data_and_mcq_cli_errors_are_one_line(argv, msg, repo, tmp_path):
    p = subprocess.run([sys.executable, os.path.join(repo, argv[0]), *argv[1:]], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode != 0 and msg in p.stderr and "Traceback" not in p.stderr
