"""learning.py's paired comparison on hand-computed rows: the pooled held-out NLL per system, its paired
difference and interval, and the headline metric's, with the sign convention (> 0: system a is better)."""
import pytest

import learning


def rows(nats, tokens, preds, refs):
    return {str(i): {"task": "weight", "id": str(i), "prompt": "p", "prediction": p, "reference": r,
                     "answer nats": x, "answer tokens": n}
            for i, (x, n, p, r) in enumerate(zip(nats, tokens, preds, refs))}


def test_compare_hand_computed():
    refs = ["100.0", "200.0", "300.0"]
    a = rows([1.0, 4.0, 2.0], [1, 2, 1], refs, refs)                            # exact answers, NLL 7/4
    b = rows([2.0, 8.0, 3.0], [1, 2, 1], ["110.0", "190.0", "310.0"], refs)     # MAE 10, NLL 13/4
    c = learning.compare("weight", a, b)
    assert c["N"] == 3
    assert c["NLL a"] == pytest.approx(7 / 4) and c["NLL b"] == pytest.approx(13 / 4)
    assert c["NLL diff"] == pytest.approx(6 / 4)
    lo, hi = c["NLL CI"]
    assert 0 < lo <= 6 / 4 <= hi          # every item favours a: no resample can cross 0
    assert learning.better(c["NLL diff"], c["NLL CI"]) == "a"
    assert c["a"] == pytest.approx(0.0) and c["b"] == pytest.approx(10.0)
    assert c["diff"] == pytest.approx(10.0) and learning.better(c["diff"], c["CI"]) == "a"
    same = learning.compare("weight", a, a)                                     # a system vs itself: neither
    assert same["NLL diff"] == 0 and learning.better(same["NLL diff"], same["NLL CI"]) == "neither"
