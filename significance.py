"""Is a score better than a trivial guess? Paired bootstrap intervals, the best-baseline verdict, rank
correlation and answer diversity, for every report eval.py writes.

The rule, stated in every results.md:
- per task, its headline metric (HEADLINE) for our answers and for the best trivial baseline, on the
  same N test items, scored by the same scorer;
- the best baseline is chosen on the training split, never on test items: baselines.py's predictors are
  fit on 80% of the training records and scored on the other 20% (at most DEV_MAX, seeded), and the
  one with the best headline there is "the best baseline" (ties: baselines.NAMES order);
- N_BOOT paired bootstrap resamples of the test items (seeded): both systems are scored on the same
  resampled items (Koehn 2004, "Statistical significance tests for machine translation evaluation"),
  the difference signed so that > 0 means ours is better;
- "beats best baseline" is yes only when the 95% percentile interval of that difference lies above 0
  and, for metrics averaged over parsed answers only (MAE, R^2), our answers parse at least as often as
  the baseline's (a model may not win by answering the easy items only).

Beside it, so that a collapsed model shows at a glance: Spearman's rank correlation of our numbers with
the references (within each HOMO / LUMO / gap bucket for homolumo, whose buckets alone would correlate),
and the number of distinct answers (numbers; valid molecules by stereo-free InChI; normalised texts)
beside the number of distinct references.

Per-item values come from metrics.py's own functions applied to one item at a time, so a statistic over
all items equals the reported metric exactly (tested); the headline of a resample is computed from them
with numpy, so 2,000 resamples cost milliseconds.
"""
import collections

import numpy as np
from rouge_score.rouge_scorer import RougeScorer

import answers
import baselines
import metrics

# the one metric per answer kind that the summary table, the interval and the verdict use
HEADLINE = {"molecule": "Exact Match (InChI, all items)", "molediting": "Sim>=0.4,QED>=0.6", "homolumo": "Average",
            "number": "Average MAE", "yield": "R2 Score", "text": "ROUGE-L"}
LOWER_IS_BETTER = {"Average MAE", "Average"}
PARSED_ONLY = baselines.NUMERIC_KINDS  # the numeric kinds: their headline averages over parsed answers only
N_BOOT, DEV_FRACTION, DEV_MAX = 2000, 0.2, 200

# result keys (results.json, baselines.json, results.md)
CI = "95% CI"
BEST = "Best baseline (chosen on training split)"
BEST_SCORE = "Best baseline score"
DIFF = "Ours - best baseline (> 0: ours better)"
DIFF_CI = "Ours - best baseline 95% CI"
VERDICT = "Beats best baseline"
SPEARMAN = "Spearman (ours vs reference)"
DISTINCT = "Distinct answers"
DISTINCT_REF = "Distinct references"
RULE = (f"Best baseline chosen per task on the training split (baselines fit on {1 - DEV_FRACTION:.0%} of it, scored "
        f"on the other {DEV_FRACTION:.0%}, at most {DEV_MAX} items), never on test items. Intervals: {N_BOOT} paired "
        "bootstrap resamples of the test items (seeded), 95% percentile. Beats = yes only when the interval of "
        "(ours - baseline, > 0 = better) excludes 0 and, for MAE / R^2, ours parses at least as often.")


def headline(task):
    return HEADLINE[metrics.answer_kind(task)]


# ----------------------------------------------------------------------------- per-item values

def _cut(text, release_compat):
    return answers.cut_answer(str(text or ""), release_compat)


def item_table(task, rows, release_compat=False, eos_text=answers.RELEASE_EOS):
    """Per-item values of the task's headline: {"w": weight (1 = the item counts), "v": value, and for
    yield "r" / "p"}, numpy arrays in row order. The headline = sum(w * v) / sum(w) (yield: R^2 over w)."""
    kind, n = metrics.answer_kind(task), len(rows)
    w, v = np.ones(n), np.zeros(n)
    r_arr, p_arr = np.zeros(n), np.zeros(n)
    rouge = None
    for i, row in enumerate(rows):
        pred, ref = str(row.get("prediction") or ""), str(row.get("reference") or "")
        prompt = str(row.get("prompt") or "")
        if kind == "molecule":
            v[i] = metrics.molecule_metrics([pred], [ref], release_compat)["Exact Match (InChI, all items)"]
        elif kind == "molediting":
            m = metrics.molediting_metrics([pred], [ref], [prompt], release_compat)
            w[i], v[i] = m["QED items"], m["Sim>=0.4,QED>=0.6"]
        elif kind in ("number", "homolumo"):
            m = (metrics.number_metrics([pred], [ref], release_compat)["Average MAE"] if kind == "number"
                 else metrics.homolumo_metrics([pred], [ref], [prompt], release_compat)["Average"])
            w[i], v[i] = (0.0, 0.0) if m is None else (1.0, m)
        elif kind == "yield":  # yield_metrics' parsing
            r, p = answers.strict_float(ref), answers.strict_float(_cut(pred, release_compat))
            w[i] = r is not None and p is not None
            r_arr[i], p_arr[i] = (r, p) if w[i] else (0.0, 0.0)
        else:  # text_metrics' ROUGE-L, one item at a time
            if rouge is None:
                rouge = RougeScorer(["rougeL"])
            hyp = metrics.rouge_prediction(_cut(pred, release_compat), release_compat, eos_text)
            v[i] = rouge.score(_cut(ref, release_compat), hyp)["rougeL"].fmeasure
    table = {"w": w, "v": v}
    if kind == "yield":
        table.update(r=r_arr, p=p_arr)
    return table


def statistic(task, table, idx=None):
    """The headline over the items idx ((N,) or (B, N) indices; default all): (B,) or a float; nan where
    undefined (no counted item; R^2 with < 2 points)."""
    n = len(table["w"])
    single = idx is None
    idx = np.arange(n)[None] if idx is None else np.atleast_2d(idx)
    w = table["w"][idx]
    with np.errstate(invalid="ignore", divide="ignore"):
        if metrics.answer_kind(task) == "yield":
            y, yh, cnt = table["r"][idx], table["p"][idx], w.sum(1)
            ybar = (w * y).sum(1) / cnt
            ss_res, ss_tot = (w * (y - yh) ** 2).sum(1), (w * (y - ybar[:, None]) ** 2).sum(1)
            out = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0),
                           np.where(ss_res == 0, 1.0, 0.0))  # sklearn's force_finite, as metrics.yield_metrics
            out = np.where(cnt >= 2, out, np.nan)
        else:
            out = (w * table["v"][idx]).sum(1) / w.sum(1)
    return float(out[0]) if single else out


def _resamples(n, n_boot, seed):
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _percentiles(s):
    """The 95% percentile interval of bootstrap values s, resamples where the statistic is undefined left out."""
    lo, hi = np.nanpercentile(s, [2.5, 97.5]) if np.isfinite(s).any() else (np.nan, np.nan)
    return (float(lo), float(hi))


def interval(task, table, n_boot=N_BOOT, seed=0):
    """95% percentile bootstrap interval of the headline; (nan, nan) for no items."""
    n = len(table["w"])
    if n == 0:
        return (float("nan"), float("nan"))
    return _percentiles(statistic(task, table, _resamples(n, n_boot, seed)))


def paired(task, ours, base, n_boot=N_BOOT, seed=0):
    """Ours vs a baseline on the same items: (difference, (lo, hi)), signed so that > 0 means ours is better."""
    n = len(ours["w"])
    if n != len(base["w"]):
        raise ValueError(f"{task}: paired comparison over {n} vs {len(base['w'])} items")
    sign = -1.0 if headline(task) in LOWER_IS_BETTER else 1.0
    point = sign * (statistic(task, ours) - statistic(task, base))
    if n == 0:
        return point, (float("nan"), float("nan"))
    idx = _resamples(n, n_boot, seed)
    return float(point), _percentiles(sign * (statistic(task, ours, idx) - statistic(task, base, idx)))


def paired_diff(a, b, n_boot=N_BOOT, seed=0, lower_is_better=False, weights=None):
    """Two systems' per-item values on the same items -> (mean difference, lo, hi), signed so that > 0 means
    a is better: mean(a) - mean(b), or mean(b) - mean(a) when lower_is_better; (lo, hi) its 95% percentile
    interval over n_boot paired resamples of the items (_resamples(n, n_boot, seed)). weights (per item, the
    same for both systems): weighted means sum(w v) / sum(w), e.g. per-item nats per token weighted by answer
    tokens = the pooled nats per token. No items: (nan, nan, nan)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    w = np.ones(len(a)) if weights is None else np.asarray(weights, dtype=float)
    if not len(a) == len(b) == len(w):
        raise ValueError(f"paired values need the same items: {len(a)}, {len(b)} values, {len(w)} weights")
    if len(a) == 0:
        return float("nan"), float("nan"), float("nan")
    sign = -1.0 if lower_is_better else 1.0
    idx = np.vstack([np.arange(len(a)), _resamples(len(a), n_boot, seed)])   # row 0: the items themselves
    d = sign * ((w[idx] * (a[idx] - b[idx])).sum(1) / w[idx].sum(1))         # (1 + n_boot,)
    lo, hi = _percentiles(d[1:])
    return float(d[0]) + 0.0, lo + 0.0, hi + 0.0  # + 0.0: no "-0.0" when the sign flips a zero


def verdict(task, ours, base, diff_ci):
    """"yes" only when the paired interval excludes 0 on the better side (and ours parses as often)."""
    lo = diff_ci[0]
    if not np.isfinite(lo) or lo <= 0:
        return "no"
    if metrics.answer_kind(task) in PARSED_ONLY and ours["w"].mean() < base["w"].mean():
        return "no (ours parses fewer answers)"
    return "yes"


# ----------------------------------------------------------------------------- collapse at a glance

def _ranks(x):
    """Ranks 0..n-1 with ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    _, inv = np.unique(x, return_inverse=True)
    return (np.bincount(inv, ranks) / np.bincount(inv))[inv]


def spearman(x, y):
    """Spearman's rho (Pearson of average ranks); None with < 3 pairs or a constant side."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3:
        return None
    rx, ry = _ranks(x), _ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = np.sqrt((rx ** 2).sum() * (ry ** 2).sum())
    return float((rx * ry).sum() / den) if den > 0 else None


def read_number(kind, text, release_compat=False):
    """A numeric answer as metrics.py reads it: the first number for weight / tpsa / logp, a strict float for
    homolumo and yield; None if there is none."""
    if kind == "number":
        return answers.first_number(_cut(text, release_compat), release_compat)
    return answers.strict_float(_cut(text, release_compat).strip())


def task_spearman(task, rows, release_compat=False):
    """Numeric tasks: rho over the items where answer and reference both parse; homolumo: the mean of the
    per-bucket rhos weighted by their item counts. None elsewhere or when undefined."""
    kind = metrics.answer_kind(task)
    if kind not in PARSED_ONLY:
        return None
    groups = collections.defaultdict(list)
    for r in rows:
        p = read_number(kind, r.get("prediction"), release_compat)
        t = read_number(kind, r.get("reference"), release_compat)
        if p is not None and t is not None:
            groups[baselines._bucket(str(r.get("prompt") or "")) if kind == "homolumo" else None].append((p, t))
    rhos = [(spearman(*zip(*g)), len(g)) for g in groups.values() if len(g) >= 3]
    rhos = [(rho, k) for rho, k in rhos if rho is not None]
    return float(sum(rho * k for rho, k in rhos) / sum(k for _, k in rhos)) if rhos else None


def _answer_key(kind, text, release_compat):
    """What two answers must share to count as one: a number, a stereo-free InChI, a normalised text."""
    if kind in PARSED_ONLY:
        return read_number(kind, text, release_compat)
    if kind in ("molecule", "molediting"):
        mol, _ = answers.mol_from_text(_cut(text, release_compat).strip(), release_compat)
        return answers.inchi(mol) if mol is not None else None
    return " ".join(_cut(text, release_compat).split()).lower() or None


def distinct(task, texts, release_compat=False):
    """Distinct answers among texts: numbers, valid molecules, or normalised texts (unreadable ones not counted)."""
    kind = metrics.answer_kind(task)
    return len({k for k in (_answer_key(kind, t, release_compat) for t in texts) if k is not None})


# ----------------------------------------------------------------------------- the report

def _by_task(rows):
    out = collections.defaultdict(list)
    for r in rows:
        out[r["task"]].append(r)
    return out


def choose_baselines(train_items, seed=0, release_compat=False):
    """{task: {"best": name, "dev N": n, "dev": {baseline: headline}}}: baselines fit on 80% of each task's
    training items and scored on the other 20% (at most DEV_MAX). Training data only."""
    pool, dev = [], []
    for task, items in _by_task(train_items).items():
        perm = np.random.default_rng([seed, len(items)]).permutation(len(items))
        k = min(DEV_MAX, max(1, int(round(DEV_FRACTION * len(items))))) if len(items) >= 2 else 0
        dev += [items[i] for i in perm[:k]]
        pool += [items[i] for i in perm[k:]]
    out = {}
    for task, by_name in _baseline_tables(pool, dev, release_compat).items():
        scores = {name: statistic(task, tab) for name, tab in by_name.items()}
        finite = {k: s for k, s in scores.items() if np.isfinite(s)}
        if not finite:
            continue
        lower = headline(task) in LOWER_IS_BETTER
        best = (min if lower else max)(finite, key=finite.__getitem__)  # ties: the first in baselines.NAMES
        out[task] = {"best": best, "dev N": len(next(iter(by_name.values()))["w"]), "dev": scores}
    return out


def _baseline_tables(train, test, release_compat, rows=None, eos_text=answers.RELEASE_EOS):
    """{task: {baseline: item table}} of baselines.py's answers to `test`, fit on `train` (rows: those answers,
    baselines.baseline_rows(train, test), when the caller has them)."""
    tables = collections.defaultdict(dict)
    for name, rows in (rows if rows is not None else baselines.baseline_rows(train, test)).items():
        for task, rs in _by_task(rows).items():
            tables[task][name] = item_table(task, rs, release_compat, eos_text)
    return {t: {n: tables[t][n] for n in baselines.NAMES if n in tables[t]} for t in tables}


def report(rows, train_items=None, test_items=None, release_compat=False, seed=0, base_rows=None,
           eos_text=answers.RELEASE_EOS):
    """-> ({task: {key: value}} to merge into results, {task: {baseline: {key: value}}} to merge into
    baselines.json, the selection {task: ...} or None). test_items: rows with "smiles" (as eval.py's
    baselines take them), default rows; without train_items no baseline comparison. base_rows: the
    baselines' answers to test_items (baselines.baseline_rows), if already made."""
    stats, base_stats, selection = {}, collections.defaultdict(dict), None
    base_tabs = {}
    if train_items:
        selection = choose_baselines(train_items, seed, release_compat)
        base_tabs = _baseline_tables(train_items, test_items or rows, release_compat, base_rows, eos_text)
    for task, rs in _by_task(rows).items():
        tab = item_table(task, rs, release_compat, eos_text)
        lo, hi = interval(task, tab, seed=seed)
        s = {CI: [lo, hi], DISTINCT: distinct(task, [r.get("prediction") for r in rs], release_compat),
             DISTINCT_REF: distinct(task, [r.get("reference") for r in rs], release_compat)}
        rho = task_spearman(task, rs, release_compat)
        if metrics.answer_kind(task) in PARSED_ONLY:
            s[SPEARMAN] = rho
        for name, btab in base_tabs.get(task, {}).items():
            base_stats[task][name] = {CI: list(interval(task, btab, seed=seed))}
        chosen = (selection or {}).get(task) or (selection or {}).get(baselines.base_task(task)) or {}
        best = chosen.get("best")  # yield_BH / yield_SM: chosen on the one yield training pool
        if best in base_tabs.get(task, {}):
            btab = base_tabs[task][best]
            d, d_ci = paired(task, tab, btab, seed=seed)
            s.update({BEST: best, BEST_SCORE: statistic(task, btab), DIFF: d, DIFF_CI: list(d_ci),
                      VERDICT: verdict(task, tab, btab, d_ci)})
        stats[task] = s
    return stats, dict(base_stats), selection
