"""traces.py: its per-item values on hand-computed rows (MAE over parsed answers, verify.py's score on every item,
rationale flags, Spearman and its interval), the paired reading, and the whole study end to end on the tiny model
(four arms trained and evaluated; an rft round whose samples are all rejected leaves that arm out, said so)."""
import json
import os

import pytest
import selfies
from rdkit import Chem
from rdkit.Chem import Descriptors, rdMolDescriptors

import traces
from tasks import TASKS

QUESTIONS = {"weight": "What is the molecular weight of this molecule?", "tpsa": "What is the TPSA of this molecule?"}


def _rows(preds, refs, mols):
    return {str(i): {"task": "weight", "id": str(i), "prompt": f"What is the molecular weight? {m}",
                     "prediction": p, "reference": r} for i, (p, r, m) in enumerate(zip(preds, refs, mols))}


def test_item_values_hand_computed():
    refs = ["46.07", "78.11", "60.05", "30.07"]
    rows = _rows(["46.07", "<think> molecular weight: 6 x C 12.011 + 6 x H 1.008 = 78.114 </think> 78.11",
                  "no idea", "40.07"], refs, ["CCO", "c1ccccc1", "CC(=O)O", "CC"])
    table, ver, traced, nums = traces.item_values("weight", rows, sorted(rows))
    assert table["w"].tolist() == [1.0, 1.0, 0.0, 1.0]                    # "no idea" does not parse
    assert traces.S.statistic("weight", table) == pytest.approx(10 / 3)   # MAE over the three parsed: 0, 0, 10
    assert ver.tolist() == [1.0, 1.0, 0.0, 0.0]                           # 40.07 is 10 off: out of tolerance
    assert traced.tolist() == [0.0, 1.0, 0.0, 0.0]
    rho, ci = traces.spearman_ci(nums)
    assert rho == pytest.approx(1.0)  # 46.07 < 78.11 and 40.07 vs 30.07: the three parsed pairs in the same order
    assert traces.spearman_ci([(1.0, 1.0), (None, 2.0)])[1] != traces.spearman_ci([(1.0, 1.0), (None, 2.0)])[1]  # nan
    assert traces._better((0.1, 0.3), "rft", "direct") == "rft"
    assert traces._better((-0.3, -0.1), "rft", "direct") == "direct"
    assert traces._better((-0.1, 0.3), "rft", "direct") == "neither"


def _label(task, smi):
    mol = Chem.MolFromSmiles(smi)
    return f"{Descriptors.MolWt(mol):.2f}" if task == "weight" else f"{rdMolDescriptors.CalcTPSA(mol):.2f}"


def test_the_study_on_the_tiny_model(tmp_path, smiles):
    for split, mols in (("train", smiles), ("test", ["CCCO", "c1ccccc1O", "CCCCC"])):
        os.makedirs(tmp_path / "data" / split)
        for task in ("weight", "tpsa"):
            recs = [{"instruction": QUESTIONS[task], "input": selfies.encoder(s), "output": _label(task, s),
                     "metadata": {"split": split}} for s in mols]
            (tmp_path / "data" / split / f"{TASKS[task].released['train']['train']}.json").write_text(json.dumps(recs))
    out = tmp_path / "traces"
    raw = traces.main(["--model", "tiny", "--data", str(tmp_path / "data"), "--tasks", "weight,tpsa", "--steps", "4",
                       "--rft-steps", "2", "--samples", "2", "--prompts", "3", "--arith", "0.5", "--limit", "2",
                       "--nproc", "1", "--out", str(out),
                       "--train-args", "--lora-r 4 --max-len 512 --threads 1 --batch-size 2",
                       "--eval-args", "--no-baselines --threads 1", "--rft-args", "--threads 1 --batch-size 3"])
    logs = {a: [json.loads(ln) for ln in open(out / a / "log.jsonl")] for a in ("direct", "rationale", "arith")}
    assert all(len(v) == 4 for v in logs.values())
    assert {t for r in logs["arith"] for t in r["task_loss"]} == {"weight", "tpsa", "arith"}
    assert (out / "rationale" / "checkpoints" / "step_000002").is_dir()  # where the rft arm branches off
    assert (out / "rft_data" / "manifest.json").exists()
    md = (out / "results.md").read_text()
    for t in ("weight", "tpsa"):
        assert set(raw[t]) >= {"direct", "rationale", "arith"} and raw[t]["direct"]["N"] == 2
        assert "rationale vs direct" in raw[t]
    if not (out / "rft" / "eval" / "results.json").exists():  # a random tiny model's samples are rejected
        assert "| weight | rft | 0 | no answers" in md
    assert "## RFT round" in md and "## Wall times (s)" in md
