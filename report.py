"""Scoring rows of answers and writing the report: what eval.py writes (results.json, predictions.jsonl,
baselines.json, verified.json and results.md: a summary table with intervals and the baseline verdict first,
then one table per task with the baselines and the paper's numbers beside ours), and the whole of
`eval.py --score FILE` (score_main: a predictions file scored without a model).

    results = score_rows(rows, scoring="release" | "molt5")   # {task: {metric: value}}
    score_main(args)                                          # FILE -> FILE_scored/results.{json,md}, ...
"""
import json
import math
import os

from tokenizers import Tokenizer

import answers
import baselines
import data
import metrics
import molt5
import reasoning
import significance
import verify
from readers import disk_error, read_jsonl
from tasks import TASKS

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


def balance(results):
    """How evenly ours beats the trivial baselines across tasks: each task's ours - best baseline (significance.py,
    signed so > 0 is better) over |best baseline score|, the relative improvement; its mean, worst task (min),
    best task (max), spread (max - min) and population std. A task without a baseline verdict, or whose best
    baseline scores 0 or n/a (no relative scale), is left out and named under "left out". None: no task has one."""
    S, rel, left = significance, {}, []
    for task, res in results.items():
        if task.startswith("_") or S.DIFF not in res:
            continue
        d, b = res.get(S.DIFF), res.get(S.BEST_SCORE)
        ok = all(isinstance(v, (int, float)) and math.isfinite(v) for v in (d, b)) and b != 0
        if ok:
            rel[task] = d / abs(b)
        else:
            left.append(task)
    if not rel:
        return None
    vals = list(rel.values())
    mean = sum(vals) / len(vals)
    worst, best = min(rel, key=rel.get), max(rel, key=rel.get)
    return {"per task": rel, "mean": mean, "min": rel[worst], "worst task": worst, "max": rel[best],
            "best task": best, "spread (max - min)": rel[best] - rel[worst],
            "std": math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals)), "tasks": len(vals), "left out": left}


def balance_line(bal):
    """One line for results.md under the summary table."""
    if not bal:
        return "Balance: n/a (no task has a best-baseline comparison)."
    return (f"Balance over {bal['tasks']} tasks, (ours - best baseline) / |best baseline| per task: mean "
            f"{bal['mean']:+.4f}, worst {bal['worst task']} {bal['min']:+.4f}, best {bal['best task']} "
            f"{bal['max']:+.4f}, spread (max - min) {bal['spread (max - min)']:.4f}, std {bal['std']:.4f}"
            + (f"; left out (best baseline 0 or n/a): {', '.join(bal['left out'])}" if bal["left out"] else "") + ".")


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
              summary_table(results), "", balance_line(balance(results)), ""]
    base_scores = {k: v for k, v in base_scores.items() if not k.startswith("_")}  # "_selection" is no task
    for task, res in results.items():
        if task.startswith("_"):
            continue
        paper, base, rel = metrics.PAPER.get(task, {}), base_scores.get(task, {}), (compat or {}).get(task)
        shown = lambda k: rel is not None and (k in paper or task == "molediting") and k in rel  # noqa: E731
        lines += [f"### {task} (scoring: {res.get('Scoring', 'release')})", "", "| metric | ours | "
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


def json_safe(obj):
    """NaN / Inf -> None, recursively: results.json stays standard JSON (json.dump would write `Infinity`)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_results(results, out_dir, meta, rows=None, base_scores=None, compat=None, verified=None):
    os.makedirs(out_dir, exist_ok=True)
    results = {"_meta": meta, "_balance": balance(results), **results}
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(json_safe(results), f, indent=1, allow_nan=False)
    if rows is not None:
        with open(os.path.join(out_dir, "predictions.jsonl"), "w") as f:
            for r in rows:  # "roundtrip": retrosynthesis only, the model's forward prediction from its answer;
                # the answer NLL's per-item sums when eval computed them (nats over "answer tokens")
                keys = ("task", "id", "prompt", "prediction", "reference") + tuple(
                    k for k in ("roundtrip", "answer nats", "answer tokens", "answer nats untrained") if k in r)
                f.write(json.dumps({k: r.get(k) for k in keys}) + "\n")
    if base_scores is not None:
        with open(os.path.join(out_dir, "baselines.json"), "w") as f:
            json.dump(json_safe(base_scores), f, indent=1, allow_nan=False)
    head = "\n".join(f"- {k}: {v}" for k, v in meta.items()) + "\n"
    md = markdown(results, "# Omni-Mol eval\n\n" + head, base_scores, compat)
    if verified is not None:  # answers checked by chemistry (verify.py), beside the release's metrics above
        with open(os.path.join(out_dir, "verified.json"), "w") as f:
            json.dump(verified, f, indent=1)
        md += "\n### Verified answers (verify.py)\n\n```\n" + verify.table(verified) + "\n```\n"
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(md)
    return md


# ----------------------------------------------------------------------------- scoring rows (eval.py, and --score FILE)

def read_predictions(path):
    """predictions.jsonl -> rows; a malformed line is an error naming file and line."""
    return read_jsonl(path, ("task", "prediction", "reference"), "task, id, prompt, prediction, reference")


def llm_tokens(hf_tokenizer):
    """The release's text tokens: the LLM's byte-level BPE pieces (e.g. 'Ġmolecule')."""
    return lambda text: hf_tokenizer.encode(text, add_special_tokens=False).tokens


def score_rows(rows, release_compat=False, tokenize=None, tokenizer_name="nltk wordpunct",
               eos_text=answers.RELEASE_EOS, scoring="release"):
    """{task: metrics} of rows; scoring "molt5": MolT5's definitions where it has them (molt5.py), each task's
    result saying under "Scoring" which definitions made it."""
    by_task = {}
    for r in rows:
        by_task.setdefault(r["task"], []).append(r)
    out = {}
    for task, rs in by_task.items():
        res = molt5.score_task(task, rs, tokenize, tokenizer_name) if scoring == "molt5" else None
        if res is None:
            res = metrics.score_task(task, rs, release_compat, tokenize, tokenizer_name, eos_text)
            if scoring == "molt5":
                res["notes"] = res.get("notes", []) + [molt5.NO_DEFINITION]
        out[task] = res
    return out


def compat_scores(rows, release_compat, tokenize=None, tokenizer_name="nltk wordpunct", eos_text=answers.RELEASE_EOS):
    """The tasks with a paper number, and molediting, scored as the release scores (None when that is
    the main scoring already)."""
    if release_compat:
        return None
    keep = [r for r in rows if r["task"] in metrics.PAPER or r["task"] == "molediting"]
    return score_rows(keep, True, tokenize, tokenizer_name, eos_text) if keep else None


def training_items(data_src, task_names, seed=42, log=print, mol_format="selfies", reasoning=False):
    """The training split of the scored sets' tasks -> (samples, baselines.py items {"task", "prompt",
    "reference", "smiles"}); yield's items say "yield" (yield_BH and yield_SM both draw on them). A task
    without training files is left out with a message (no budget from it, no baselines for it).
    reasoning: the samples' answers with their rationales (the answer budgets of a --reasoning run); the
    items' references stay the bare answers."""
    samples = []
    for key in sorted({baselines.base_task(t) for t in task_names} & set(TASKS)):
        try:
            samples += data.load_tasks(key, split="train", data=data_src, seed=seed, verbose=False,
                                       mol_format=mol_format, reasoning=reasoning)
        except FileNotFoundError as e:
            log(f"no baselines or answer budget for {key}: {e}")
    return samples, [{"task": s.eval_set, "prompt": s.prompt, "smiles": s.smiles,
                      "reference": answers.cut_answer(s.answer) if reasoning else s.answer} for s in samples]


def text_tokenizer(path, scoring):
    """--tokenizer -> (tokenize, its name): the LLM's BPE pieces (release scoring) or WordPiece (molt5)."""
    if not path:
        return None, "nltk wordpunct (no tokenizer given)"
    if not os.path.exists(path):
        raise FileNotFoundError(f"--tokenizer {path} does not exist")
    if scoring == "molt5":
        tokenize = molt5.wordpiece_tokenizer(path)
        return tokenize, f"WordPiece tokenizer {tokenize.name}"
    path = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
    try:
        return llm_tokens(Tokenizer.from_file(path)), f"LLM tokenizer {path}"
    except Exception as e:  # tokenizers raises its own Exception type for a file it cannot read
        raise ValueError(f"--tokenizer {path}: not a tokenizer.json ({e})") from None


def significance_for(results, rows, release_compat, train=None, items=None, base_scores=None, base_rows=None,
                     eos_text=answers.RELEASE_EOS):
    """add_significance over the tasks scored with the release's definitions: its per-item values and headline
    metrics are theirs (significance.py), so molt5-scored tasks get none."""
    plain = {task for task, res in results.items() if res.get("Scoring") != "molt5"}
    keep = lambda rs: [r for r in rs if r["task"] in plain]  # noqa: E731
    add_significance(results, keep(rows), release_compat, train, None if items is None else keep(items), base_scores,
                     None if base_rows is None else {n: keep(rs) for n, rs in base_rows.items()}, eos_text)


def check_writable(out_dir):
    """Fail before minutes of work, not after: out_dir must be a folder this process can write."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        probe = os.path.join(out_dir, f".write_test_{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise SystemExit(f"eval.py: error: {disk_error(e, out_dir)}") from None


def score_dir(path):
    """Where --score writes by default: FILE_scored/ beside the predictions file, never the folder of the model
    eval that wrote the file (its results.json and results.md hold columns --score cannot recompute)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return os.path.join(os.path.dirname(os.path.abspath(path)), f"{stem}_scored")


def score_main(args):
    rows = read_predictions(args.score)
    tokenize, tok_name = text_tokenizer(args.tokenizer, args.scoring)
    results = reasoning.add_counts(score_rows(rows, args.release_compat, tokenize, tok_name, scoring=args.scoring),
                                   rows)
    out_dir = args.out or score_dir(args.score)
    check_writable(out_dir)
    meta = {"scored": os.path.abspath(args.score), "items": len(rows), "release_compat": args.release_compat,
            "scoring": args.scoring, "text tokens": tok_name}
    base_scores = None
    if args.data and not args.no_baselines:
        tasks = {r["task"] for r in rows}
        _, train = training_items(args.data, tasks)
        # the graph-source SMILES of the test items (experiment's prompts name molecules only as $k$), by id
        smiles = {}
        for key in sorted({baselines.base_task(t) for t in tasks} & set(TASKS)):
            try:
                test = data.load_tasks(key, split="test", data=args.data, verbose=False)
                smiles.update({s.id: s.smiles for s in test})
            except FileNotFoundError:
                pass  # the prompts' own SELFIES still give fingerprints
        items = [{**r, "smiles": smiles.get(r.get("id"))} for r in rows]
        base_rows = baselines.baseline_rows(train, items)  # made once: scored here and in add_significance
        base_scores = baselines.score(train, items, lambda rs: score_rows(rs, args.release_compat, tokenize, tok_name,
                                                                          scoring=args.scoring), rows=base_rows)
        meta["baselines from"] = f"training split of {args.data}"
        significance_for(results, rows, args.release_compat, train, items, base_scores, base_rows)
    else:
        significance_for(results, rows, args.release_compat)
    verified = verify.verify_rows(rows)
    verify.add_to_results(results, verified)
    compat = compat_scores(rows, args.release_compat, tokenize, tok_name) if args.scoring == "release" else None
    print(write_results(results, out_dir, meta, base_scores=base_scores, compat=compat, verified=verified))
    print(f"wrote {out_dir}/results.json, {'baselines.json, ' if base_scores is not None else ''}results.md and "
          "verified.json")
    return results
