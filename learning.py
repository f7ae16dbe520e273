"""The learning study: the paper's central claims at the scale 2 CPU cores allow, each with intervals.

    python learning.py                       # make learning: the CPU defaults below
    python learning.py --steps 600 --tasks weight,forward,solvent,molcap --nproc 1   # e.g. on one GPU

Runs, each a train.py run and an eval.py run in OUT/<name> (a run whose eval exists is skipped, so a
stopped study resumes where it stopped; --fresh starts over):
    moge          the --tasks mixed in one model, --steps steps, the MoGE recipe (the paper's model)
    gal, lora     the same mix and steps with GAL adapters / plain LoRA and no experts (the paper's
                  adapter ablation: MoGE vs GAL vs LoRA at equal steps)
    single_<t>    each task alone for --steps / len(tasks) steps: the same passes over its data as the
                  mix gives it (the mix draws the tasks uniformly at random, equal-sized training sets)
Every run has the same seed, batch, learning rate, answer format and test items (the first --limit of each
task's test split). eval.py decodes greedily, numbers as the digit expectation (--numeric-expectation).

Comparisons, paired over the same test items, 2,000 bootstrap resamples (seeded), 95% percentile intervals;
a system is "better" only when the interval of the difference excludes 0:
    held-out answer NLL   nats per answer token (the ratio of the items' sums), the training objective on
                          test items: the most sensitive measure at small scale
    headline metric       eval.py's per task (MAE, exact match, ROUGE-L, ...), on the generated answers
and the moge run against the best trivial baseline of each task (eval.py's rule: the baseline chosen on the
training split, the paired interval of the difference above 0, parsing at least as often).
Nothing here is chosen on test items: every setting is fixed before the runs (the defaults below).
Writes OUT/results.md and OUT/results.json.
"""
import argparse
import json
import os
import shutil
import time


import report
import significance as S
from studies import add_arguments, better, item_nll, launch, read_rows, start, write_results

# CPU defaults: four tasks of four kinds (a number, a molecule, a quantum number, a text) with short answers,
# so that the study's 11 runs (3 mixes, 4 single-task runs, their evals) fit about an hour on 2 cores
TASKS = "weight,solvent,homolumo,dqa"
STEPS, LIMIT, LR = 200, 45, 1e-3


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tasks", default=TASKS, help="comma list of >= 2 task keys: the mix, and one single-task run each")
    p.add_argument("--steps", type=int, default=STEPS, help="optimizer steps of each mixed run; a single-task run "
                   "gets steps / number of tasks")
    p.add_argument("--limit", type=int, default=LIMIT, help="test items per task (the first N)")
    p.add_argument("--lr", type=float, default=LR, help="learning rate of every run")
    p.add_argument("--mol-format", default="smiles", choices=("smiles", "selfies"), help="molecules in the prompt "
                   "text: SMILES are ~2x shorter in tokens than SELFIES (the dev tree trains with --if_smiles True)")
    p.add_argument("--recipes", default="moge,gal,lora", help="the mixed runs' adapter recipes; the first is also "
                   "the single-task runs' recipe and the one compared with the baselines")
    add_arguments(p, 'out/learning', 2)
    return p


def plan(args):
    """[(name, train.py args, eval tasks)] in run order."""
    tasks, recipes = args.tasks.split(","), args.recipes.split(",")
    if len(tasks) < 2:
        raise SystemExit("learning.py: error: --tasks needs >= 2 tasks (a mix and its single-task runs)")
    common = ["--lr", str(args.lr), "--mol-format", args.mol_format, "--data", args.data, "--model", args.model]
    runs = [(r, ["--tasks", args.tasks, "--recipe", r, "--max-steps", str(args.steps)] + common, tasks)
            for r in recipes]
    single = max(1, args.steps // len(tasks))
    runs += [(f"single_{t}", ["--tasks", t, "--recipe", recipes[0], "--max-steps", str(single)] + common, [t])
             for t in tasks]
    return runs


def run_all(args):
    times = {}
    for i, (name, train_argv, tasks) in enumerate(plan(args)):
        folder = os.path.join(args.out, name)
        done = os.path.join(folder, "eval", "results.json")
        if os.path.exists(done):
            print(f"[learning] {name}: done, skipped")
            continue
        t0 = time.time()
        if os.path.isdir(folder):  # an unfinished run: train again from scratch (its folder is not a result)
            shutil.rmtree(folder)
        launch("train.py", train_argv + ["--out", folder], args.nproc)
        t1 = time.time()
        eval_argv = ["--ckpt", folder, "--tasks", ",".join(tasks), "--limit", str(args.limit), "--greedy",
                     "--numeric-expectation", "--no-roundtrip"] + ([] if i == 0 else ["--no-untrained-nll"])
        launch("eval.py", eval_argv, args.nproc)
        times[name] = {"train s": round(t1 - t0, 1), "eval s": round(time.time() - t1, 1)}
        with open(os.path.join(folder, "times.json"), "w") as f:
            json.dump(times[name], f)
    return times


# ----------------------------------------------------------------------------- comparisons

def read_run(folder):
    """(results.json, {task: {item id: prediction row}}) of a run's eval."""
    with open(os.path.join(folder, "eval", "results.json")) as f:
        return json.load(f), read_rows(folder)


def compare(task, rows_a, rows_b, seed=0):
    """System a vs b on the items both scored: {"N", "NLL a", "NLL b", "NLL diff", "NLL CI", "metric", "a", "b",
    "diff", "CI"}; diffs > 0 mean a is better."""
    ids = sorted(set(rows_a) & set(rows_b))
    out = {"N": len(ids)}
    na, nb = item_nll(rows_a, ids), item_nll(rows_b, ids)
    if na is not None and nb is not None:
        # weighted by answer tokens (the same reference tokens for both systems), the weighted means are the
        # pooled nats per token, the held-out NLL the study reports
        (va, tok), (vb, _) = na, nb
        d, lo, hi = S.paired_diff(va, vb, seed=seed, lower_is_better=True, weights=tok)
        out.update({"NLL a": float((va * tok).sum() / tok.sum()), "NLL b": float((vb * tok).sum() / tok.sum()),
                    "NLL diff": d, "NLL CI": (lo, hi)})
    ta, tb = (S.item_table(task, [r[i] for i in ids]) for r in (rows_a, rows_b))
    d, ci = S.paired(task, ta, tb, seed=seed)
    out.update({"metric": S.headline(task), "a": S.statistic(task, ta), "b": S.statistic(task, tb), "diff": d,
                "CI": ci})
    return out


def _f(x, nd=3):
    return report._fmt(x) if not isinstance(x, float) else f"{x:.{nd}f}"


def comparison_table(title, pairs, runs):
    """pairs: [(task, name a, name b)] -> markdown lines and the raw numbers."""
    lines = [f"## {title}", "", "| task | N | a | b | NLL a | NLL b | NLL b - a [95% CI] | NLL: better | metric | a "
             "| b | a - b (> 0: a better) [95% CI] | metric: better |", "|" + "---|" * 13]
    raw = []
    for task, a, b in pairs:
        c = compare(task, runs[a][1].get(task, {}), runs[b][1].get(task, {}))
        raw.append({"task": task, "a": a, "b": b, **c})
        nll = (f"{_f(c['NLL a'])} | {_f(c['NLL b'])} | {_f(c['NLL diff'])} [{_f(c['NLL CI'][0])}, "
               f"{_f(c['NLL CI'][1])}] | {better(c['NLL diff'], c['NLL CI'])}") if "NLL diff" in c else "| | | n/a"
        lines.append(f"| {task} | {c['N']} | {a} | {b} | {nll} | {c['metric']} | {_f(c['a'])} | {_f(c['b'])} | "
                     f"{_f(c['diff'])} [{_f(c['CI'][0])}, {_f(c['CI'][1])}] | {better(c['diff'], c['CI'])} |")
    return lines + [""], raw


def baseline_table(name, results, tasks):
    lines = [f"## {name} vs the best trivial baseline (eval.py's verdict)", "",
             "| task | N | metric | ours | best baseline (chosen on training split) | its score | ours - baseline "
             "[95% CI] | beats | Spearman | distinct answers / references |", "|" + "---|" * 10]
    wins = 0
    for t in tasks:
        r = results.get(t, {})
        ci = r.get(S.DIFF_CI) or [None, None]
        wins += r.get(S.VERDICT) == "yes"
        lines.append(f"| {t} | {r.get('N', '')} | {S.headline(t)} | {_f(r.get(S.headline(t)))} | {r.get(S.BEST, '')} | "
                     f"{_f(r.get(S.BEST_SCORE))} | {_f(r.get(S.DIFF))} [{_f(ci[0])}, {_f(ci[1])}] | "
                     f"{r.get(S.VERDICT, 'n/a')} | {_f(r.get(S.SPEARMAN), 2)} | {r.get(S.DISTINCT, '')} / "
                     f"{r.get(S.DISTINCT_REF, '')} |")
    return lines + ["", f"{name} beats the best baseline on {wins} of {len(tasks)} tasks.", ""], wins


def summarise(args, times):
    names = [n for n, _, _ in plan(args)]
    runs = {n: read_run(os.path.join(args.out, n)) for n in names}
    tasks, recipes = args.tasks.split(","), args.recipes.split(",")
    first = recipes[0]
    head = [f"# Learning study ({time.strftime('%Y-%m-%d')})", "",
            f"- tasks {args.tasks}; {args.steps} steps per mixed run, {max(1, args.steps // len(tasks))} per "
            f"single-task run; lr {args.lr}; molecules as {args.mol_format}; {args.nproc} rank(s); data {args.data}; "
            f"base {args.model}; first {args.limit} test items per task",
            "- NLL: held-out answer nats per token (lower is better). Intervals: 2,000 paired bootstrap resamples of "
            "the test items, 95% percentile; 'better' names the system whose interval of the difference excludes 0.",
            "- untrained (step-0) NLL per task: " + ", ".join(
                f"{t} {_f(runs[first][0].get(t, {}).get(report.NLL_UNTRAINED))}" for t in tasks), ""]
    multi, raw_m = comparison_table(f"Multi-task ({first}, all tasks) vs single-task ({first}), equal passes",
                                    [(t, first, f"single_{t}") for t in tasks], runs)
    ablation, raw_a = comparison_table(f"Adapters at equal steps: {first} vs {', '.join(recipes[1:])}",
                                       [(t, first, r) for r in recipes[1:] for t in tasks], runs)
    base, wins = baseline_table(first, runs[first][0], tasks)
    timing = ["## Wall times (s)", "", "| run | train | eval |", "|---|---|---|"] + [
        f"| {n} | {t['train s']} | {t['eval s']} |" for n, t in _times(args, names, times).items()] + [""]
    md = "\n".join(head + multi + ablation + base + timing)
    write_results(args.out, md, {"args": vars(args), "multi vs single": raw_m, "adapters": raw_a,
                                 "baseline wins": wins, "times": _times(args, names, times)})


def _times(args, names, times):
    out = {}
    for n in names:
        path = os.path.join(args.out, n, "times.json")
        if n in times:
            out[n] = times[n]
        elif os.path.exists(path):
            with open(path) as f:
                out[n] = json.load(f)
    return out


def main(argv=None):
    args = get_parser().parse_args(argv)
    start(args)
    t0 = time.time()
    times = run_all(args)
    summarise(args, times)
    print(f"[learning] {time.time() - t0:.0f} s this invocation; results in {args.out}/results.md")


if __name__ == "__main__":
    main()
