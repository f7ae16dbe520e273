"""significance.paired_diff on hand-computed cases and a naive loop; transfer.py's comparison and table on
hand-made prediction rows (the values against metrics.py and hand sums); the equal-passes rule read from a
checkpoint; and the whole `make molcap-homolumo` path on the tiny model with a handful of steps."""
import json
import os

import numpy as np
import pytest
import selfies

import metrics
import significance as S
import train
import transfer


# ----------------------------------------------------------------------------- paired_diff

def test_paired_diff_hand_cases():
    a, b = [1.0, 2.0, 3.0, 6.0], [0.0, 0.0, 0.0, 0.0]
    d, lo, hi = S.paired_diff(a, b, n_boot=500, seed=1)
    assert d == 3.0
    idx = S._resamples(4, 500, 1)  # a naive loop over the same resamples
    naive = [np.mean([a[i] - b[i] for i in row]) for row in idx]
    assert (lo, hi) == pytest.approx(tuple(np.percentile(naive, [2.5, 97.5])))
    d2, lo2, hi2 = S.paired_diff(a, b, n_boot=500, seed=1, lower_is_better=True)  # > 0: a better = a lower
    assert (d2, lo2, hi2) == pytest.approx((-3.0, -hi, -lo))
    assert S.paired_diff([5.0, 7.0, 1.0], [4.0, 6.0, 0.0]) == pytest.approx((1.0, 1.0, 1.0))  # a constant gap
    # weighted: (1 x (1 - 0) + 3 x (3 - 1)) / (1 + 3) = 7 / 4, the pooled difference
    assert S.paired_diff([1.0, 3.0], [0.0, 1.0], weights=[1, 3])[0] == pytest.approx(1.75)
    assert all(x != x for x in S.paired_diff([], []))
    with pytest.raises(ValueError, match="same items"):
        S.paired_diff([1.0], [1.0, 2.0])


# ----------------------------------------------------------------------------- the comparison

HL = "<mol>\nPlease provide the HOMO energy value for this molecule. The compound SELFIES sequence is: [C]"


def _rows(task, preds, refs, nats=None, prompt=""):
    out = {}
    for i, (p, r) in enumerate(zip(preds, refs)):
        out[f"{task}:{i}"] = {"task": task, "id": f"{task}:{i}", "prompt": prompt, "prediction": p, "reference": r}
        if nats is not None:
            out[f"{task}:{i}"]["answer nats"], out[f"{task}:{i}"]["answer tokens"] = nats[i]
    return out


def test_compare_against_hand_sums_and_metrics():
    refs = ["-0.25", "-0.30", "-0.21"]
    joint = _rows("homolumo", ["-0.25", "-0.31", "-0.20"], refs, [(2.0, 4), (3.0, 2), (1.0, 2)], HL)
    alone = _rows("homolumo", ["-0.20", "-0.35", "-0.21"], refs, [(4.0, 4), (3.0, 2), (2.0, 2)], HL)
    c = transfer.compare("homolumo", joint, alone, seed=0)
    assert c["N"] == 3
    nll = c["NLL"]
    assert nll["joint"] == pytest.approx(6.0 / 8) and nll["alone"] == pytest.approx(9.0 / 8)  # pooled nats/token
    assert nll["diff"] == pytest.approx(9.0 / 8 - 6.0 / 8)  # > 0: joint lower, better
    assert nll["joint CI"][0] <= nll["joint"] <= nll["joint CI"][1]
    m = c["metric"]
    want = {k: metrics.score_task("homolumo", list(r.values()))[S.headline("homolumo")] for k, r in
            (("joint", joint), ("alone", alone))}
    assert m["name"] == S.headline("homolumo") and (m["joint"], m["alone"]) == pytest.approx((want["joint"],
                                                                                             want["alone"]))
    assert m["diff"] == pytest.approx(want["alone"] - want["joint"])  # MAE: lower is better
    no_nll = transfer.compare("homolumo", _rows("homolumo", ["-0.2"], ["-0.2"]), _rows("homolumo", ["-0.2"], ["-0.2"]))
    assert no_nll["NLL"] is None  # an eval without per-item NLL: the metric only
    assert transfer.better((0.1, 0.2)) == "joint" and transfer.better((-0.2, -0.1)) == "alone"
    assert transfer.better((-0.1, 0.1)) == "neither" and transfer.better((float("nan"),) * 2) == "n/a"


def test_table_puts_each_system_in_its_column():
    cap = _rows("molcap", ["a small alcohol", "an acid"], ["a small alcohol", "an acid too"], [(1.0, 2), (2.0, 2)])
    comps = {"molcap": transfer.compare("molcap", cap, cap),
             "homolumo": transfer.compare("homolumo", _rows("homolumo", ["-0.2"], ["-0.2"], None, HL),
                                          _rows("homolumo", ["-0.3"], ["-0.2"], None, HL))}
    lines = transfer.table(["molcap", "homolumo"], comps)
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]
    assert [c[:3] for c in cells] == [["molcap", "2", "answer NLL (nats/token, lower better)"],
                                      ["molcap", "2", S.headline("molcap")],
                                      ["homolumo", "1", "answer NLL (nats/token, lower better)"],
                                      ["homolumo", "1", S.headline("homolumo")]]
    assert cells[0][3].startswith("0.7500 [") and cells[0][4] == "-"     # molcap alone | homolumo alone
    assert cells[0][5].startswith("0.7500") and cells[0][6].startswith("0.0000") and cells[0][7] == "neither"
    assert cells[2][3:] == ["n/a"] * 5                                    # no per-item NLL written
    assert cells[3][3] == "-" and cells[3][4].startswith("0.1000")         # homolumo alone: MAE 0.1
    assert all(len(c) == len(lines[0].strip("|").split("|")) for c in cells)


def test_joint_epochs_from_the_checkpoint(tmp_path):
    step = tmp_path / "checkpoints" / "step_000040"
    os.makedirs(step)
    (step / "meta.json").write_text(json.dumps({"total_steps": 40, "args": {"grad_accum": 1}, "data_position": {
        "num_samples": 81, "batch_size": 2, "world_size": 1}}))
    assert transfer.joint_epochs(str(tmp_path)) == 1.0  # 40 steps of 40 per epoch (the partial batch dropped)
    # the alone runs' --epochs sets their length, also over the demo profile's 16 steps
    assert train.parse_args(["--epochs", "0.5"]).max_steps is None and train.parse_args([]).max_steps == 16


def test_the_target_on_the_tiny_model(tmp_path, smiles):
    sf = selfies.encoder
    for split, n in (("train", 8), ("test", 3)):
        os.makedirs(tmp_path / "data" / split)
        cap = [{"instruction": "", "input": sf(s), "output": f"Molecule {i} has {len(s)} characters.",
                "metadata": {"split": split}} for i, s in enumerate(smiles[:n])]
        hl = [{"instruction": "Please provide the HOMO energy value for this molecule.", "input": sf(s),
               "output": -0.2 - 0.01 * i, "metadata": {"split": split}} for i, s in enumerate(smiles[:n])]
        (tmp_path / "data" / split / "molcap.json").write_text(json.dumps(cap))
        (tmp_path / "data" / split / "property_prediction.json").write_text(json.dumps(hl))
    out = tmp_path / "mh"
    comps = transfer.main(["--model", "tiny", "--data", str(tmp_path / "data"), "--steps", "4", "--ratio", "1",
                           "--limit", "2", "--out", str(out),
                           "--train-args", "--lora-r 4 --max-len 512 --threads 1 --batch-size 2",
                           "--eval-args", "--greedy --no-roundtrip --no-baselines --max-new-tokens 4 --threads 1"])
    logs = {r: [json.loads(ln) for ln in open(out / r / "log.jsonl")] for r in ("joint", "alone_molcap",
                                                                               "alone_homolumo")}
    assert [len(v) for v in logs.values()] == [4, 2, 2]  # 16 samples, batch 2: 0.5 epochs each
    assert {t for r in logs["alone_molcap"] for t in r["task_loss"]} == {"molcap"}
    assert set(comps) == {"molcap", "homolumo"} and all(c["N"] == 2 and c["NLL"] for c in comps.values())
    assert "| molcap | 2 |" in (out / "results.md").read_text()
