"""The balance line of results.md: per task (ours - best baseline) / |best baseline|, its mean, worst task and
spread, on a hand-built results dict with hand-computed values."""
import json
import math

import pytest

import report
import significance as S


def _res(diff, best):
    return {S.DIFF: diff, S.DIFF_CI: [diff, diff], S.BEST_SCORE: best, S.BEST: "majority"}


RESULTS = {
    "forward": _res(0.2, 0.4),       # +0.5
    "homolumo": _res(-0.001, 0.01),  # -0.1 (an MAE: significance signs the difference, > 0 better)
    "molcap": _res(0.05, -0.25),     # +0.2 (|best| scales a negative baseline score)
    "reagent": _res(0.1, 0.0),       # left out: no relative scale
    "retrosynthesis": {"N": 3},      # no verdict: not counted
}


def test_balance_hand_computed():
    bal = report.balance(RESULTS)
    assert bal["per task"] == pytest.approx({"forward": 0.5, "homolumo": -0.1, "molcap": 0.2})
    assert bal["mean"] == pytest.approx(0.2) and bal["tasks"] == 3
    assert bal["worst task"] == "homolumo" and bal["min"] == pytest.approx(-0.1)
    assert bal["best task"] == "forward" and bal["spread (max - min)"] == pytest.approx(0.6)
    assert bal["std"] == pytest.approx(math.sqrt((0.09 + 0.09 + 0.0) / 3))
    assert bal["left out"] == ["reagent"]
    assert report.balance({"retrosynthesis": {"N": 1}}) is None
    assert "n/a" in report.balance_line(None)


def test_balance_in_results_files(tmp_path):
    md = report.write_results(dict(RESULTS), str(tmp_path), {"checkpoint": "x"})
    line = next(ln for ln in md.splitlines() if ln.startswith("Balance"))
    assert "mean +0.2000" in line and "worst homolumo -0.1000" in line and "spread (max - min) 0.6000" in line
    assert "left out (best baseline 0 or n/a): reagent" in line
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["_balance"]["worst task"] == "homolumo" and saved["_balance"]["mean"] == pytest.approx(0.2)
    assert "_balance" not in report.summary_table(saved)  # no task row for it
