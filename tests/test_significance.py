"""significance.py against independent references: per-item statistics equal metrics.py's reported
values, bootstrap intervals equal a naive loop over metrics.score_task on the same resamples, the verdict
on cases whose answer is known (a constant predictor never beats the baseline it equals, a perfect one
always does), Spearman and distinct answers on hand-computed cases."""
import numpy as np
import pytest
import selfies

import metrics
import significance as S

sf = selfies.encoder
MW = "<mol>\nWhat is the molecular weight of this molecule? The molecule SELFIES sequence is: {}"
HL = "<mol>\nPlease provide the {} value for this molecule. The compound SELFIES sequence is: [C]"


def row(task, pred, ref, prompt=""):
    return {"task": task, "prediction": pred, "reference": ref, "prompt": prompt}


QED_UP = "Can you make this molecule more drug-like, i.e. raise its QED value? "


def cases():
    """One small set of rows per answer kind, with unparsable and invalid answers mixed in."""
    return {
        "weight": [row("weight", p, r, MW.format(sf("CCO"))) for p, r in
                   [("46.1", "46.07"), ("about 50 g/mol", "60.1"), ("none", "70"), ("-3", "12.5"), ("80", "80")]],
        "homolumo": [row("homolumo", p, r, HL.format(q)) for p, r, q in
                     [("-0.25", "-0.24", "HOMO energy"), ("0.01", "0.02", "LUMO energy"), ("x", "0.3", "HOMO-LUMO gap"),
                      ("0.31", "0.29", "HOMO-LUMO gap")]],
        "yield_BH": [row("yield_BH", p, r) for p, r in
                     [("10", "12"), ("50", "40"), ("bad", "30"), ("70", "90"), ("5", "1")]],
        "forward": [row("forward", p, r) for p, r in
                    [(sf("CCO"), sf("OCC")), (sf("CC"), sf("CCC")), ("[C][Branch1", sf("C")), ("CCN", "NCC"),
                     ("", sf("O"))]],
        "molediting": [row("molediting", p, r, QED_UP + sf(s))
                       for p, r, s in [(sf("CC(=O)Nc1ccc(O)cc1"), sf("CC(=O)Nc1ccc(OC)cc1"), "CC(=O)Nc1ccccc1"),
                                       (sf("CCCCCCCCCC"), sf("CCCCCCCCCO"), "CCCCCCCCC"),
                                       ("zz", sf("c1ccccc1O"), "c1ccccc1")]],
        "molcap": [row("molcap", p, r) for p, r in
                   [("The molecule is an alcohol.", "The molecule is a primary alcohol."),
                    ("", "It is an acid."), ("A ketone", "A ketone<|im_end|>")]],
    }


@pytest.mark.parametrize("release_compat", [False, True])
def test_statistic_over_all_items_is_the_reported_metric(release_compat):
    for task, rows in cases().items():
        want = metrics.score_task(task, rows, release_compat)[S.headline(task)]
        got = S.statistic(task, S.item_table(task, rows, release_compat))
        assert got == pytest.approx(want, abs=1e-12), task


def test_bootstrap_equals_a_naive_loop_over_metrics():
    rng_rows = cases()
    for task, rows in rng_rows.items():
        tab = S.item_table(task, rows)
        idx = S._resamples(len(rows), 40, seed=3)
        fast = S.statistic(task, tab, idx)
        for b in range(40):
            slow = metrics.score_task(task, [rows[i] for i in idx[b]])[S.headline(task)]
            if slow is None:  # no parsed pair in this resample
                assert np.isnan(fast[b])
            else:
                assert fast[b] == pytest.approx(slow, abs=1e-12), (task, b)


def _numbers(n=45, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.normal(300, 60, n)
    return truth, [row("weight", "", f"{t:.2f}") for t in truth]


def test_constant_predictor_never_beats_the_median_it_equals():
    truth, rows = _numbers()
    median = f"{np.median(truth):.2f}"
    ours = S.item_table("weight", [dict(r, prediction=median) for r in rows])
    base = S.item_table("weight", [dict(r, prediction=median) for r in rows])
    d, ci = S.paired("weight", ours, base)
    assert d == 0 and ci == (0.0, 0.0) and S.verdict("weight", ours, base, ci) == "no"


def test_perfect_predictor_beats_the_median():
    truth, rows = _numbers()
    ours = S.item_table("weight", [dict(r, prediction=r["reference"]) for r in rows])
    base = S.item_table("weight", [dict(r, prediction=f"{np.median(truth):.2f}") for r in rows])
    d, (lo, hi) = S.paired("weight", ours, base)
    assert d > 0 and 0 < lo <= d <= hi and S.verdict("weight", ours, base, (lo, hi)) == "yes"
    # and a perfect molecule predictor against copy-the-input (exact match 0)
    ref = [sf(s) for s in ["CCO", "CCN", "CCC", "c1ccccc1", "CC(=O)O"] * 9]
    good = S.item_table("forward", [row("forward", r, r) for r in ref])
    bad = S.item_table("forward", [row("forward", sf("O"), r) for r in ref])
    d, ci = S.paired("forward", good, bad)
    assert d == 1.0 and S.verdict("forward", good, bad, ci) == "yes"


def test_a_model_that_skips_the_hard_items_is_not_a_winner():
    truth, rows = _numbers()
    ours = [dict(r, prediction=r["reference"] if i % 2 else "no idea") for i, r in enumerate(rows)]
    ours, base = S.item_table("weight", ours), S.item_table("weight", [dict(r, prediction="300") for r in rows])
    d, ci = S.paired("weight", ours, base)
    assert ci[0] > 0 and S.verdict("weight", ours, base, ci).startswith("no")


def test_interval_holds_the_point_and_is_seeded():
    truth, rows = _numbers()
    tab = S.item_table("weight", [dict(r, prediction="300") for r in rows])
    lo, hi = S.interval("weight", tab)
    assert lo < S.statistic("weight", tab) < hi and S.interval("weight", tab) == (lo, hi)


def test_spearman_hand_cases():
    assert S.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(1 - 6 * 2 / (4 * 15))   # 0.8
    assert S.spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(1.5 / np.sqrt(1.5 * 2))        # ties: average ranks
    assert S.spearman([5, 5, 5], [1, 2, 3]) is None and S.spearman([1, 2], [1, 2]) is None


def test_homolumo_spearman_is_within_buckets():
    # answers that only know the bucket: pooled they would correlate strongly, within buckets not at all
    rows = []
    for q, centre in (("HOMO energy", -0.25), ("LUMO energy", 0.0), ("HOMO-LUMO gap", 0.25)):
        for k, ref in enumerate((0.01, -0.02, 0.03, -0.01)):
            pred = f"{centre + (0.001 if k in (1, 2) else 0):.4f}"
            rows.append(row("homolumo", pred, f"{centre + ref:.4f}", HL.format(q)))
    rho = S.task_spearman("homolumo", rows)
    pooled = S.spearman([float(r["prediction"]) for r in rows], [float(r["reference"]) for r in rows])
    assert pooled > 0.8 and rho == pytest.approx(0.0, abs=1e-12)


def test_distinct_answers():
    assert S.distinct("weight", ["377.34", "377.34 g/mol", "277.34", "?"]) == 2
    assert S.distinct("forward", [sf("CCO"), "OCC", sf("OCC"), "not a molecule", sf("CCN")]) == 2
    assert S.distinct("molcap", ["A b.", " a   B. ", "c"]) == 2


def test_best_baseline_is_chosen_on_the_training_split():
    rng = np.random.default_rng(1)
    # skewed answers: the median beats the mean on MAE
    train = [{"task": "weight", "prompt": MW.format(sf("C" * (1 + i % 7))), "reference": f"{v:.2f}", "smiles": None}
             for i, v in enumerate(np.concatenate([rng.normal(100, 5, 180), rng.normal(900, 5, 40)]))]
    sel = S.choose_baselines(train)
    assert sel["weight"]["best"] == "median" and sel["weight"]["dev N"] == 44
    assert sel["weight"]["dev"]["median"] < sel["weight"]["dev"]["mean"]
    test = [dict(train[0], prediction="100")]
    stats, base, _ = S.report(test, train, test)
    assert stats["weight"][S.BEST] == "median" and S.CI in base["weight"]["median"]
