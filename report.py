"""What eval.py writes: results.json, predictions.jsonl, baselines.json, verified.json and results.md (a
summary table with intervals and the baseline verdict first, then one table per task with the baselines and
the paper's numbers beside ours)."""
import json
import os

import answers
import metrics
import significance
import verify

NLL = "Answer NLL (nats/token)"
NLL_UNTRAINED = "Answer NLL, untrained adapters (nats/token)"


def _fmt(v):
    if v is None:
        return "n/a"
    if isinstance(v, (list, tuple)):  # an interval
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, float):
        if v != v:
            return "n/a"
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.1f}"
    return str(v)


def summary_table(results):
    """One row per task: N, held-out answer NLL untrained -> trained, the task's headline metric for the model
    with its 95% interval, the best baseline (chosen on the training split) and ours minus it with its paired
    interval, the verdict, and what shows a collapsed model: Spearman (numbers) and distinct answers."""
    S = significance
    lines = ["| task | N | NLL untrained | NLL trained | metric | ours [95% CI] | best baseline (train split) | "
             "baseline | ours - baseline [95% CI] | beats baseline | Spearman | distinct answers (refs) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for task, res in results.items():
        if task.startswith("_"):
            continue
        key = S.headline(task)
        diff = f"{_fmt(res[S.DIFF])} {_fmt(res[S.DIFF_CI])}" if S.DIFF in res else ""
        rho = _fmt(res.get(S.SPEARMAN)) if S.SPEARMAN in res else ""
        lines.append(f"| {task} | {res.get('N', '')} | {_fmt(res.get(NLL_UNTRAINED))} | {_fmt(res.get(NLL))} | {key} | "
                     f"{_fmt(res.get(key))} {_fmt(res.get(S.CI)) if S.CI in res else ''} | {res.get(S.BEST, '')} | "
                     f"{_fmt(res[S.BEST_SCORE]) if S.BEST_SCORE in res else ''} | {diff} | {res.get(S.VERDICT, '')} | "
                     f"{rho} | {res.get(S.DISTINCT, '')} ({res.get(S.DISTINCT_REF, '')}) |")
    return "\n".join(lines)


def add_significance(results, rows, release_compat=False, train_items=None, items=None, base_scores=None,
                     base_rows=None, eos_text=answers.RELEASE_EOS):
    """Intervals, the best-baseline verdict, Spearman and distinct answers (significance.py) merged into
    results[task] and base_scores[task][baseline]; the selection on the training split under
    base_scores["_selection"]. Without train_items: intervals and collapse columns only."""
    stats, base_stats, selection = significance.report(rows, train_items, items, release_compat,
                                                       base_rows=base_rows, eos_text=eos_text)
    for task, s in stats.items():
        results.setdefault(task, {}).update(s)
    if base_scores is not None:
        for task, by_name in base_stats.items():
            for name, s in by_name.items():
                base_scores.get(task, {}).get(name, {}).update(s)
        if selection:
            base_scores["_selection"] = {"rule": significance.RULE, **selection}


def markdown(results, header="", base_scores=None, compat=None):
    """base_scores: {task: {baseline: metrics}} shown beside ours; compat: the same rows scored with
    --release-compat, shown beside the paper's numbers (and molediting, whose success rates the release
    defines over valid answers): the like-for-like comparison."""
    base_scores = base_scores or {}
    lines = [header] if header else []
    lines += ["## Summary", "", "Baselines: trivial predictors from the training split on the same items "
              "(baselines.py). NLL: held-out answer loss, nats/token (lower is better). " + significance.RULE, "",
              summary_table(results), ""]
    base_scores = {k: v for k, v in base_scores.items() if not k.startswith("_")}  # "_selection" is no task
    for task, res in results.items():
        if task.startswith("_"):
            continue
        paper, base, rel = metrics.PAPER.get(task, {}), base_scores.get(task, {}), (compat or {}).get(task)
        shown = lambda k: rel is not None and (k in paper or task == "molediting") and k in rel  # noqa: E731
        lines += [f"### {task}", "", "| metric | ours | "
                  + ("ours, release's scoring (--release-compat) | " if rel is not None else "")
                  + "".join(f"{n} | " for n in base) + "paper (Omni-Mol) |",
                  "|---|---|" + ("---|" if rel is not None else "") + "---|" * len(base) + "---|"]
        for k, v in res.items():
            if k != "notes":
                cells = (f"{_fmt(rel[k]) if shown(k) else ''} | " if rel is not None else "")
                cells += "".join(f"{_fmt(b[k]) if k in b else ''} | " for b in base.values())
                lines.append(f"| {k} | {_fmt(v)} | {cells}{paper.get(k, '')} |")
        lines += [""] + [f"- {n}" for n in res.get("notes", [])] + [""]
    return "\n".join(lines)


def write_results(results, out_dir, meta, rows=None, base_scores=None, compat=None, verified=None):
    os.makedirs(out_dir, exist_ok=True)
    results = {"_meta": meta, **results}
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    if rows is not None:
        with open(os.path.join(out_dir, "predictions.jsonl"), "w") as f:
            for r in rows:  # "roundtrip": retrosynthesis only, the model's forward prediction from its answer
                keys = ("task", "id", "prompt", "prediction", "reference") + (
                    ("roundtrip",) if "roundtrip" in r else ())
                f.write(json.dumps({k: r.get(k) for k in keys}) + "\n")
    if base_scores is not None:
        with open(os.path.join(out_dir, "baselines.json"), "w") as f:
            json.dump(base_scores, f, indent=1)
    head = "\n".join(f"- {k}: {v}" for k, v in meta.items()) + "\n"
    md = markdown(results, "# Omni-Mol eval\n\n" + head, base_scores, compat)
    if verified is not None:  # answers checked by chemistry (verify.py), beside the release's metrics above
        with open(os.path.join(out_dir, "verified.json"), "w") as f:
            json.dump(verified, f, indent=1)
        md += "\n### Verified answers (verify.py)\n\n```\n" + verify.table(verified) + "\n```\n"
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(md)
    return md
