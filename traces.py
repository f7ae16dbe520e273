"""The reasoning-trace study: direct answers vs rdkit rationales vs rationales + one round of rejection-sampling
fine-tuning (vs rationales + the arithmetic mix), at equal optimizer steps, paired over the same test items.

    python traces.py                 # make traces: the CPU defaults below (about 40 minutes on 2 cores)
    python traces.py --steps 2000 --nproc 1 --samples 8 --prompts 0   # e.g. on one GPU, every training prompt

Arms (each a train.py run and an eval.py run in OUT/<name>; an arm whose eval exists is skipped, so a stopped
study resumes; --fresh starts over):
    direct      --tasks, --steps steps, bare answers ("78.11")
    rationale   the same with --reasoning ("<think> molecular weight: 6 x C 12.011 + ... = 78.114 </think> 78.11"),
                --steps steps, a checkpoint kept at step --steps - --rft-steps
    rft         rft.py on that checkpoint (--samples answers at T=1 per training prompt, the first --prompts
                prompts per task, kept where verify.py accepts the answer and its rationale checks), then
                train.py from that checkpoint on the kept answers for --rft-steps steps: --steps steps in all
    arith       --reasoning on --tasks plus arith:--arith (arith.py's word problems), --steps steps (--arith 0: off)
Equal steps are equal sequences, not equal tokens: a rationale answer is 10-30x a bare one, and the rft arm also
pays for its sampling (both timed in results.md). Every arm has the same seed, batch, learning rate, recipe,
molecules as SMILES, and test items (the first --limit per task), decoded greedily with one answer budget.

Per task and arm: the headline metric (MAE, lower is better; averaged over the answers that parse), the
verified rate (verify.py, every item: an unparsable answer or an inconsistent rationale scores 0), Spearman with
the reference, distinct answers, answers carrying a rationale, each with a 95% bootstrap interval (2,000
resamples, seeded); and each arm against direct (and rft against rationale) paired over the same items, "better"
only when the interval of the difference excludes 0. Nothing is chosen on test items: the defaults are fixed
before the runs. Writes OUT/results.md and OUT/results.json.
"""
import argparse
import json
import os
import shlex
import shutil
import time

import numpy as np

import significance as S
import verify
from reasoning import has_rationale
from studies import add_arguments, better, launch, read_rows, start, write_results

# CPU defaults: the three tasks whose rationales are sums; 100 steps of 2 x 2 sequences; one RFT round on the
# last 30 of them from 4 samples of 16 prompts per task; the arithmetic mix at 0.2 of the chemistry samples
TASKS, STEPS, RFT_STEPS, SAMPLES, PROMPTS, ARITH, LIMIT, LR = "weight,tpsa,logp", 100, 30, 4, 16, 0.2, 45, 1e-3
BUDGET = 320  # answer tokens: the longest demo rationale (logp, 279 tokens with the default tokenizer) fits


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tasks", default=TASKS, help="comma list of task keys with rationales (reasoning.py)")
    p.add_argument("--steps", type=int, default=STEPS, help="optimizer steps of every arm")
    p.add_argument("--rft-steps", type=int, default=RFT_STEPS, help="the rft arm's steps on its kept answers, "
                   "after --steps minus these of the rationale run")
    p.add_argument("--samples", type=int, default=SAMPLES, help="rft.py --samples: answers per training prompt")
    p.add_argument("--prompts", type=int, default=PROMPTS, help="rft.py --max-prompts per task (0: all)")
    p.add_argument("--arith", type=float, default=ARITH, help="the arith arm's arith:R ratio (0: no arith arm)")
    p.add_argument("--limit", type=int, default=LIMIT, help="test items per task (the first N)")
    p.add_argument("--lr", type=float, default=LR, help="learning rate of every run (and of the RFT continuation)")
    p.add_argument("--train-args", default="", help="more train.py arguments for every run, e.g. '--lora-r 8'")
    p.add_argument("--eval-args", default="", help="more eval.py arguments for every arm")
    p.add_argument("--rft-args", default="", help="more rft.py arguments, e.g. '--batch-size 16'")
    add_arguments(p, 'out/traces', 2)
    return p


def arms(args) -> list[str]:
    return ["direct", "rationale", "rft"] + (["arith"] if args.arith > 0 else [])


# ----------------------------------------------------------------------------- the runs

def _step_dir(folder, step):
    return os.path.join(folder, "checkpoints", f"step_{step:06d}")


def run_all(args):
    if not 0 < args.rft_steps < args.steps:
        raise SystemExit("traces.py: error: --rft-steps must be in (0, --steps)")
    common = ["--lr", str(args.lr), "--mol-format", "smiles", "--model", args.model, "--keep-last", "100",
              *shlex.split(args.train_args)]
    branch = args.steps - args.rft_steps
    times = {}
    for name in arms(args):
        folder = os.path.join(args.out, name)
        if os.path.exists(os.path.join(folder, "eval", "results.json")):
            print(f"[traces] {name}: done, skipped")
            continue
        if os.path.isdir(folder):  # an unfinished arm: run it again from scratch
            shutil.rmtree(folder)
        t0, t = time.time(), {}
        if name == "rft":
            start = _step_dir(os.path.join(args.out, "rationale"), branch)
            rft_data = os.path.join(args.out, "rft_data")
            launch("rft.py", ["--ckpt", start, "--tasks", args.tasks, "--data", args.data, "--out", rft_data,
                              "--overwrite", "--samples", str(args.samples), "--max-new-tokens", str(BUDGET)]
                   + (["--max-prompts", str(args.prompts)] if args.prompts else []) + shlex.split(args.rft_args), 1)
            t["sampling s"] = round(time.time() - t0, 1)
            counts = json.load(open(os.path.join(rft_data, "manifest.json")))["counts"]
            written = [task for task, c in counts.items() if c["written"]]
            if not written:
                print("[traces] rft: no sampled answer was accepted; the arm has no data to train on")
                times[name] = t
                os.makedirs(folder, exist_ok=True)
                json.dump(t, open(os.path.join(folder, "times.json"), "w"))
                continue
            train_argv = ["--tasks", ",".join(written), "--data",
                          rft_data, "--init-from", start, "--max-steps", str(args.rft_steps)]
        else:
            tasks = args.tasks + (f",arith:{args.arith:g}" if name == "arith" else "")
            train_argv = ["--tasks", tasks, "--data", args.data, "--max-steps", str(args.steps)]
            train_argv += (["--reasoning"] if name != "direct" else [])
            train_argv += (["--save-every", str(branch)] if name == "rationale" else [])
        t1 = time.time()
        launch("train.py", train_argv + common + ["--out", folder], args.nproc)
        t["train s"] = round(time.time() - t1, 1)
        t2 = time.time()
        launch("eval.py", ["--ckpt", folder, "--data", args.data, "--tasks", args.tasks, "--limit", str(args.limit),
                           "--greedy", "--max-new-tokens", str(BUDGET), "--no-untrained-nll",
                           *shlex.split(args.eval_args)], args.nproc)
        t["eval s"] = round(time.time() - t2, 1)
        times[name] = t
        json.dump(t, open(os.path.join(folder, "times.json"), "w"))
    return times


# ----------------------------------------------------------------------------- per-item values and tables

def item_values(task, rows, ids):
    """The items' (headline table, verified scores, rationale flags, (prediction, reference) numbers or None)."""
    rs = [rows[i] for i in ids]
    table = S.item_table(task, rs)
    ver = np.array([verify.verify(task, r.get("prompt"), r.get("prediction"), r.get("reference")).score for r in rs],
                   dtype=float)
    traced = np.array([has_rationale(r.get("prediction") or "") for r in rs], dtype=float)
    kind = "number"
    nums = [(S.read_number(kind, r.get("prediction")), S.read_number(kind, r.get("reference"))) for r in rs]
    return table, ver, traced, nums


def spearman_ci(nums, seed=0):
    """Spearman over the items where both numbers parse, and its 95% bootstrap interval over the items."""
    pairs = np.array([(p, t) for p, t in nums if p is not None and t is not None], dtype=float).reshape(-1, 2)
    rho = S.spearman(pairs[:, 0], pairs[:, 1]) if len(pairs) else None
    if len(pairs) < 3:
        return rho, (float("nan"), float("nan"))
    boots = [S.spearman(*pairs[i].T) for i in S._resamples(len(pairs), S.N_BOOT, seed)]
    return rho, S._percentiles(np.array([np.nan if b is None else b for b in boots], dtype=float))


def _ci(x, seed):
    if not len(x):
        return float("nan"), (float("nan"), float("nan"))
    idx = S._resamples(len(x), S.N_BOOT, seed)
    return float(np.mean(x)), S._percentiles(x[idx].mean(1))


def _better(ci, a, b):
    """The arm whose paired interval of the difference (> 0: a better) excludes 0, else "neither"."""
    return {"a": a, "b": b}.get(better(None, ci), better(None, ci))


def _v(x, ci=None, nd=3):
    if x is None or x != x:
        return "n/a"
    s = f"{x:.{nd}f}"
    return s if ci is None else f"{s} [{ci[0]:.{nd}f}, {ci[1]:.{nd}f}]"


def summarise(args, times):
    tasks, names = args.tasks.split(","), arms(args)
    rows = {n: read_rows(os.path.join(args.out, n)) if os.path.exists(os.path.join(args.out, n, "eval",
                                                                                    "predictions.jsonl")) else {}
            for n in names}
    per_arm = ["## Each arm", "", "| task | arm | N | MAE [95% CI] | parsed | verified [95% CI] | Spearman [95% CI] "
               "| distinct answers | with a rationale |", "|" + "---|" * 9]
    pairs = ["## Paired differences (> 0: the first arm is better)", "", "| task | arms | N | MAE diff [95% CI] | "
             "MAE: better | verified diff [95% CI] | verified: better |", "|" + "---|" * 7]
    raw = {}
    for t in tasks:
        scored = [n for n in names if rows[n].get(t)]
        ids = sorted(set.intersection(*(set(rows[n][t]) for n in scored))) if scored else []
        vals = {n: item_values(t, rows[n][t], ids) for n in scored}
        for n in names:
            if n not in vals:
                per_arm.append(f"| {t} | {n} | 0 | no answers (see the arm's folder) | | | | | |")
                continue
            table, ver, traced, nums = vals[n]
            mae, mae_ci = S.statistic(t, table), S.interval(t, table, seed=args.seed)
            v, v_ci = _ci(ver, args.seed)
            rho, rho_ci = spearman_ci(nums, args.seed)
            distinct = S.distinct(t, [rows[n][t][i].get("prediction") for i in ids])
            raw.setdefault(t, {})[n] = {"N": len(ids), "MAE": mae, "MAE CI": mae_ci, "parsed": float(table["w"].sum()),
                                        "verified": v, "verified CI": v_ci, "Spearman": rho, "Spearman CI": rho_ci,
                                        "distinct": distinct, "with rationale": int(traced.sum())}
            per_arm.append(f"| {t} | {n} | {len(ids)} | {_v(mae, mae_ci)} | {int(table['w'].sum())} | {_v(v, v_ci)} | "
                           f"{_v(rho, rho_ci, 2)} | {distinct} | {int(traced.sum())} |")
        for a, b in [(n, "direct") for n in names[1:]] + [("rft", "rationale")]:
            if a not in vals or b not in vals:
                continue
            d, ci = S.paired(t, vals[a][0], vals[b][0], seed=args.seed)
            dv, lo, hi = S.paired_diff(vals[a][1], vals[b][1], seed=args.seed)
            raw[t][f"{a} vs {b}"] = {"MAE diff": d, "MAE CI": ci, "verified diff": dv, "verified CI": (lo, hi)}
            pairs.append(f"| {t} | {a} vs {b} | {len(ids)} | {_v(d, ci)} | {_better(ci, a, b)} | {_v(dv, (lo, hi))} | "
                         f"{_better((lo, hi), a, b)} |")
    head = [f"# Reasoning-trace study ({time.strftime('%Y-%m-%d')})", "",
            f"- tasks {args.tasks}; {args.steps} steps per arm (rft: {args.steps - args.rft_steps} of the rationale "
            f"run + {args.rft_steps} on its accepted samples: {args.samples} per prompt, "
            f"{args.prompts or 'all'} prompts per task); arith:{args.arith:g}; lr {args.lr}; SMILES; {args.nproc} "
            f"rank(s); data {args.data}; base {args.model}; first {args.limit} test items per task; greedy, "
            f"{BUDGET}-token budget",
            "- intervals: 2,000 bootstrap resamples of the test items (seeded), 95% percentile; MAE over the answers "
            "that parse (column 'parsed'); verified: verify.py's score over every item", ""]
    timing = ["## Wall times (s)", "", "| arm | sampling | train | eval |", "|---|---|---|---|"]
    for n in names:
        path = os.path.join(args.out, n, "times.json")
        t = times.get(n) or (json.load(open(path)) if os.path.exists(path) else {})
        timing.append(f"| {n} | {t.get('sampling s', '')} | {t.get('train s', '')} | {t.get('eval s', '')} |")
    manifest = os.path.join(args.out, "rft_data", "manifest.json")
    accepted = []
    if os.path.exists(manifest):
        m = json.load(open(manifest))
        accepted = ["## RFT round", "", "| task | prompts | samples | accepted | prompts with an accepted answer | "
                    "distinct accepted | written | with a rationale |", "|" + "---|" * 8] + [
            f"| {t} | {c['prompts']} | {c['samples']} | {c['accepted']} | {c['prompts_accepted']} | {c['distinct']} | "
            f"{c['written']} | {c['with_rationale']} |" for t, c in m["counts"].items()] + [""]
    md = "\n".join(head + per_arm + [""] + pairs + [""] + accepted + timing + [""])
    write_results(args.out, md, {"args": vars(args), "tasks": raw})
    return raw


def main(argv=None):
    args = get_parser().parse_args(argv)
    start(args)
    t0 = time.time()
    times = run_all(args)
    out = summarise(args, times)
    print(f"[traces] {time.time() - t0:.0f} s this invocation; results in {args.out}/results.md")
    return out


if __name__ == "__main__":
    main()
