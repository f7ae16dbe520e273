"""numeric.py at a crowded bound: yields pile up below 10 % (the demo: 18 of 46 test labels), where one option
at most fits within a tolerance of 0. The answer's rank and the zone fills are balanced over the questions
asked (not the training labels, whose share below 10 may differ: 20 % on the demo); every question whose
answer lies above the zone gets a distractor inside it when the zone is crowded, so "the smallest" and "the
shortest" option are right exactly as often as the answer lies in the zone, and no more."""
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

import mcq
import numeric
import shortcuts
import verify

ZONE = numeric.GAP_TOL * verify.YIELD_TOL   # [0, 10): the one-digit yields


def yields(values):
    return [SimpleNamespace(task="yield", id=f"yield:{i}", prompt="<mol>\nPredict the yield of this reaction (in "
                            f"percent). The reaction is [C][C][O].[C]>>[C][C][C][O] {i}", answer=f"{y:.2f}",
                            smiles=None) for i, y in enumerate(values)]


def capped_exponential(mean, n, seed):
    return np.minimum(np.random.default_rng(seed).exponential(mean, size=n), 100.0)


def ranked(q):
    """(the answer's rank by value, the answer's length rank: 0 when it alone is the shortest, the values)."""
    values = [float(o) for o in q["options"]]
    lengths = [len(o) for o in q["options"]]
    a = q["answer"]
    return sorted(values).index(values[a]), lengths[a] < min(lengths[:a] + lengths[a + 1:]), values


def test_fill_rates_and_ranks_for_hand_cases():
    pop = numeric.Population([1.0] * 10 + [50.0] * 80 + [95.0] * 10)     # 10 % in each zone
    assert numeric.fill_rates(pop, 0.0, 100.0, ZONE, 3) == pytest.approx((3 * 0.1 / 0.9, 3 * 0.1 / 0.9))
    crowded = numeric.Population([1.0] * 40 + [50.0] * 60)                # 40 % below 10: every question filled
    assert numeric.fill_rates(crowded, 0.0, 100.0, ZONE, 3) == (1.0, 0.0)
    assert numeric.ranks_for(50.0, 0.0, 100.0, 10.02, 3, (True, False)) == [1, 2, 3]
    assert numeric.ranks_for(50.0, 0.0, 100.0, 10.02, 3, (True, True)) == [1, 2]
    assert numeric.ranks_for(5.0, 0.0, 100.0, 10.02, 3, (True, True)) == [0]    # forced: the only room there is
    assert numeric.ranks_for(15.0, 0.0, 40.0, 10.02, 3, (True, False)) == [1]


def test_crowded_floor_every_question_has_a_zone_option_and_the_shortcuts_stay_at_its_share():
    train = {"yield": [float(y) for y in capped_exponential(40.0, 1000, 2)]}   # 23 % below 10
    test = capped_exponential(25.0, 400, 1)                                   # 35 % below 10, as on the demo
    qs, skipped = mcq.build(yields(test), seed=0, formats=("numeric",), population=train)
    assert len(qs) == 400 and not skipped and mcq.check(qs) == []
    in_zone = sum(float(q["options"][q["answer"]]) < ZONE for q in qs)
    rows = [ranked(q) for q in qs]
    for q, (_, _, values) in zip(qs, rows):
        right = values[q["answer"]]
        if right >= ZONE + numeric.GAP_TOL * verify.YIELD_TOL:                # room for an option below it
            assert sum(v < ZONE for v in values) == 1, q["options"]
    smallest = sum(r == 0 for r, _, _ in rows)
    shortest = sum(s for _, s, _ in rows)
    assert smallest == in_zone and abs(shortest - in_zone) <= 2, (smallest, shortest, in_zone)
    largest = Counter(r for r, _, _ in rows)[3]
    assert largest / len(qs) < 0.25 + 0.1, largest
    rep = shortcuts.report(qs)["yield (numeric)"]
    assert all(rep[k] <= rep["chance"] + 0.15 for k in rep if k not in ("chance", "N")), rep
    assert rep["value"] == pytest.approx(in_zone / len(qs)) and rep["length"] <= in_zone / len(qs) + 0.01, rep


def test_sparse_floor_the_zone_option_is_right_one_time_in_four():
    test = np.random.default_rng(0).beta(0.8, 1.2, size=400) * 100            # 17 % below 10: fill rate 0.6
    qs, skipped = mcq.build(yields(test), seed=0, formats=("numeric",))
    assert len(qs) == 400 and not skipped and mcq.check(qs) == []
    with_zone = [q for q in qs if any(float(o) < ZONE for o in q["options"])]
    right = sum(float(q["options"][q["answer"]]) < ZONE for q in with_zone)
    assert 0.18 < right / len(with_zone) < 0.32, (right, len(with_zone))
    ranks = Counter(ranked(q)[0] for q in qs)
    assert all(0.18 < ranks[r] / len(qs) < 0.32 for r in range(4)), ranks
    rep = shortcuts.report(qs)["yield (numeric)"]
    assert rep["value"] <= 0.32 and rep["length"] <= 0.32, rep
