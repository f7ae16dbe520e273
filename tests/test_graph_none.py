"""A --graph none checkpoint (molecules as text only) is scored as it trained by train.py --curve-every (curve.py)
and eval.py --mcq: prompts without "<mol>\\n" and no graph, the same values as a direct teacher-forced pass."""
import json
import os

import pytest
import torch

import checkpoint
import data
import eval as E
import likelihood
import train
from tasks import GRAPH, scored_as


@pytest.fixture(scope="module")
def text_run(eval_data_folder, train_args, tmp_path_factory):
    root = tmp_path_factory.mktemp("graphnone")
    data_dir = str(eval_data_folder(root / "data"))
    out = root / "run"
    train.main(train_args(data_dir, out, "--tasks", "weight,retrosynthesis", "--batch-size", 2, "--max-steps", 2,
                          "--graph", "none", "--curve-every", 1, "--curve-items", 2, "--save-every", 1))
    return data_dir, out


def test_curve_scores_text_only_prompts(text_run):
    data_dir, out = text_run
    points = [json.loads(ln) for ln in (out / "heldout.jsonl").read_text().splitlines()]
    assert [p["step"] for p in points] == [0, 1, 2]
    model, tok, _ = checkpoint.load_model(str(out / "checkpoints" / "step_000002"), "cpu", torch.float32,
                                          log=lambda *a: None)
    test = data.load_tasks("weight,retrosynthesis", split="test", data=data_dir, verbose=False, tokenizer=tok,
                           text_only=True)
    keep = [s for t in ("weight", "retrosynthesis") for s in [x for x in test if x.task == t][:2]]
    assert keep and all(GRAPH not in s.prompt for s in keep)
    assert points[2]["nll"] == pytest.approx(likelihood.heldout_nll(model, tok, keep, scored_as), rel=1e-5)


def test_mcq_scores_text_only_prompts(text_run, tmp_path):
    _, out = text_run
    step_dir = str(out / "checkpoints" / "step_000002")
    text = "What is the molecular weight of this molecule? The molecule SELFIES sequence is: [C][C][O]"
    qs = [{"task": "weight", "id": "w:1", "prompt": GRAPH + text, "options": ["46.07", "12.0", "99.1", "7.5"],
           "answer": 0, "graph": "CCO", "format": "choice4"}]
    path = tmp_path / "mcq.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in qs))
    E.main(["--mcq", str(path), "--ckpt", step_dir, "--out", str(tmp_path / "ev"), "--threads", "1"])
    got = json.loads((tmp_path / "ev" / "mcq_results.json").read_text())["_scores"][0]["scores"]
    model, tok, _ = checkpoint.load_model(step_dir, "cpu", torch.float32, log=lambda *a: None)
    lps = likelihood.answer_logprobs(model, tok, [(text, None)] * 4, qs[0]["options"])
    assert got == pytest.approx([float(lp.mean()) for lp in lps], rel=1e-5)
    dropped_only = likelihood.answer_logprobs(model, tok, [("\n" + text, None)] * 4, qs[0]["options"])
    assert got != pytest.approx([float(lp.mean()) for lp in dropped_only], rel=1e-5)  # the "\n" goes too
    assert os.path.exists(tmp_path / "ev" / "mcq_results.json")
