"""Joint vs single-task training at equal passes over each task's data: does training tasks together help each?
The seed's claim that molecule captioning and a quantum property (homolumo) gain from joint training is the
default (`make molcap-homolumo`).

    python transfer.py                                   # molcap + homolumo, CPU-sized (the defaults below)
    python transfer.py --tasks molcap,homolumo --ratio 1 --steps 5000 --nproc 1   # e.g. on one GPU

Runs (each a train.py run, then an eval.py run of the tasks it trained, in OUT/<name>; a run whose eval exists
is skipped, so a stopped comparison resumes; --fresh starts over):
    joint        all --tasks mixed (the release's uniform order), --steps optimizer steps
    alone_<t>    task t alone for the same passes over its data: --epochs = the joint run's epochs (its steps /
                 its steps per epoch, read from its checkpoint), so train.py gives it ceil(epochs x its own
                 steps per epoch) steps, whatever the tasks' sizes (so the joint run takes about the sum of the
                 alone runs' steps: equal data, not equal compute)
Every run has the same seed, batch, learning rate and data subset (--ratio: the same seeded subset of each task
in every run) and is scored on the same test items (the first --limit of each task).

Per task, side by side: the held-out answer NLL (nats per answer token, pooled over the items as eval.py
reports it) and the task's headline metric (significance.HEADLINE), each system with its 95% bootstrap interval,
and joint minus alone paired over the same items (significance.paired_diff / paired, 2,000 resamples, seeded),
> 0 when joint is better; "better" names a system only when that interval excludes 0. A system not trained on a
task is not scored on it. Writes OUT/results.md and OUT/results.json.
"""
import argparse
import json
import os
import shlex
import shutil


import report
import significance as S
from studies import add_arguments, item_nll, launch, read_rows, start, write_results

# CPU defaults: 40 training records of each task (demo: 1,000 each), one pass over them in the joint run
# (40 steps of 2 sequences), 20 steps for each task alone; 45 test items per task (the demo's whole test split)
TASKS, RATIO, STEPS, LIMIT = "molcap,homolumo", 0.04, 40, 45


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tasks", default=TASKS, help="comma list of >= 2 task keys: the joint run, one alone-run each")
    p.add_argument("--steps", type=int, default=STEPS, help="optimizer steps of the joint run; each task alone gets "
                   "the same passes over its data")
    p.add_argument("--ratio", type=float, default=RATIO, help="the seeded subset of each task's training data "
                   "(train.py --tasks t:ratio), the same in every run")
    p.add_argument("--limit", type=int, default=LIMIT, help="test items per task (the first N)")
    p.add_argument("--train-args", default="", help="more train.py arguments for every run, e.g. '--lr 1e-3'")
    p.add_argument("--eval-args", default="--greedy --no-roundtrip", help="eval.py arguments for every run")
    add_arguments(p, 'out/molcap-homolumo', 1)
    return p


# ----------------------------------------------------------------------------- the runs

def joint_epochs(run_dir) -> float:
    """The joint run's passes over its data: its steps / its steps per epoch (train.py: len(loader) // grad
    accumulation), read from its last checkpoint's meta.json."""
    ckpts = sorted(os.listdir(os.path.join(run_dir, "checkpoints")))
    with open(os.path.join(run_dir, "checkpoints", ckpts[-1], "meta.json")) as f:
        meta = json.load(f)
    pos, a = meta["data_position"], meta["args"]
    per_epoch = max(1, pos["num_samples"] // (pos["batch_size"] * pos["world_size"]) // a["grad_accum"])
    return meta["total_steps"] / per_epoch


def run_all(args):
    tasks = args.tasks.split(",")
    common = ["--data", args.data, "--model", args.model, *shlex.split(args.train_args)]
    spec = lambda ts: ",".join(f"{t}:{args.ratio:g}" for t in ts)  # noqa: E731
    runs = [("joint", tasks, ["--tasks", spec(tasks), "--max-steps", str(args.steps)])]
    runs += [(f"alone_{t}", [t], None) for t in tasks]
    for name, ts, train_argv in runs:
        folder = os.path.join(args.out, name)
        if os.path.exists(os.path.join(folder, "eval", "results.json")):
            print(f"[transfer] {name}: done, skipped")
            continue
        if os.path.isdir(folder):  # an unfinished run: train again from scratch (its folder is not a result)
            shutil.rmtree(folder)
        if train_argv is None:  # the joint run's passes, over this task alone
            train_argv = ["--tasks", spec(ts), "--epochs", repr(joint_epochs(os.path.join(args.out, "joint")))]
        launch("train.py", train_argv + common + ["--out", folder], args.nproc)
        launch("eval.py", ["--ckpt", folder, "--tasks", ",".join(ts), "--limit", str(args.limit),
                           *shlex.split(args.eval_args)], args.nproc)


# ----------------------------------------------------------------------------- the comparison

def _interval(v, w, seed):  # one system's pooled value and its 95% bootstrap interval
    idx = S._resamples(len(v), S.N_BOOT, seed)
    return float((w * v).sum() / w.sum()), S._percentiles((w[idx] * v[idx]).sum(1) / w[idx].sum(1))


def compare(task, joint, alone, seed=0):
    """One task, the joint run's rows vs the task-alone run's ({id: row}), on the items both scored ->
    {"N", "NLL": {...}, "metric": {...}}, each {"joint", "joint CI", "alone", "alone CI", "diff", "CI"},
    diff = joint better by (> 0: joint better); "NLL" is None without per-item answer NLL."""
    ids = sorted(set(joint) & set(alone))
    out = {"N": len(ids), "NLL": None}
    nj, na = item_nll(joint, ids), item_nll(alone, ids)
    if nj is not None and na is not None:
        d, lo, hi = S.paired_diff(nj[0], na[0], seed=seed, lower_is_better=True, weights=nj[1])
        (vj, cj), (va, ca) = _interval(*nj, seed), _interval(*na, seed)
        out["NLL"] = {"joint": vj, "joint CI": cj, "alone": va, "alone CI": ca, "diff": d, "CI": (lo, hi)}
    tj, ta = (S.item_table(task, [r[i] for i in ids]) for r in (joint, alone))
    d, ci = S.paired(task, tj, ta, seed=seed)
    out["metric"] = {"name": S.headline(task), "joint": S.statistic(task, tj), "alone": S.statistic(task, ta),
                     "joint CI": S.interval(task, tj, seed=seed), "alone CI": S.interval(task, ta, seed=seed),
                     "diff": d, "CI": ci}
    return out


def better(ci):
    if ci[0] != ci[0]:
        return "n/a"
    return "joint" if ci[0] > 0 else "alone" if ci[1] < 0 else "neither"


def _v(x, ci=None):
    return report._fmt(x) + ("" if ci is None else " " + report._fmt(list(ci)))


def table(tasks, comparisons) -> list[str]:
    """Markdown: per task a row for the answer NLL and one for the headline metric; a column per system
    (value [95% CI]; '-' where the system did not train on the task), then joint - alone [CI] and the reading."""
    head = ["| task | N | measure | " + " | ".join(f"{t} alone" for t in tasks) + " | joint | joint better by "
            "(paired) [95% CI] | better |", "|" + "---|" * (len(tasks) + 6)]
    lines = []
    for t in tasks:
        c = comparisons[t]
        for label, m in (("answer NLL (nats/token, lower better)", c["NLL"]),
                         (f"{c['metric']['name']}", c["metric"])):
            if m is None:
                lines.append(f"| {t} | {c['N']} | {label} | " + " | ".join(["n/a"] * (len(tasks) + 3)) + " |")
                continue
            cells = [_v(m["alone"], m["alone CI"]) if u == t else "-" for u in tasks]
            lines.append(f"| {t} | {c['N']} | {label} | " + " | ".join(cells) + f" | {_v(m['joint'], m['joint CI'])} "
                         f"| {_v(m['diff'], m['CI'])} | {better(m['CI'])} |")
    return head + lines


def summarise(args):
    tasks = args.tasks.split(",")
    joint = read_rows(os.path.join(args.out, "joint"))
    comps = {t: compare(t, joint.get(t, {}), read_rows(os.path.join(args.out, f"alone_{t}")).get(t, {}), args.seed)
             for t in tasks}
    md = "\n".join([f"# Joint vs alone at equal passes: {args.tasks}", "",
                    f"- joint: {args.steps} steps on {args.tasks} ({args.ratio:g} of each task's training data), "
                    f"{joint_epochs(os.path.join(args.out, 'joint')):.3g} epochs; each task alone the same epochs; "
                    f"first {args.limit} test items per task; base {args.model}, data {args.data}",
                    "- intervals: 2,000 bootstrap resamples of the test items, 95% percentile; differences paired "
                    "over the same items, > 0 when joint is better; 'better' only when that interval excludes 0", "",
                    *table(tasks, comps), ""])
    write_results(args.out, md, {"args": vars(args), "comparisons": comps})
    return comps


def main(argv=None):
    args = get_parser().parse_args(argv)
    if len(args.tasks.split(",")) < 2:
        raise SystemExit("transfer.py: error: --tasks needs >= 2 tasks (a joint run and one alone-run each)")
    start(args)
    run_all(args)
    return summarise(args)


if __name__ == "__main__":
    main()
