"""What the CPU studies share (learning.py, transfer.py, traces.py): running a script as one process or under
torchrun, a study folder that resumes, the results writer, eval.py's predictions read per task and item, the
per-item held-out answer NLL, and the reading of a paired interval."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np

import report

HERE = os.path.dirname(os.path.abspath(__file__))


def add_arguments(p, out, nproc):
    """The flags every study has: where it runs (--nproc, --data, --model), its folder, resuming, the bootstrap seed."""
    p.add_argument("--nproc", type=int, default=nproc, help="ranks per run (torchrun --nproc_per_node)")
    p.add_argument("--data", default="demo", help="demo or a data folder")
    p.add_argument("--model", default="default", help="base model (train.py --model)")
    p.add_argument("--out", default=out, help="the study's folder")
    p.add_argument("--fresh", action="store_true", help="delete OUT first instead of resuming")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")


def launch(script, argv, nproc):
    """Run a repository script (train.py, eval.py, rft.py) to the end, under torchrun when nproc > 1."""
    cmd = ([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", script] if nproc > 1
           else [sys.executable, script]) + argv
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=HERE, check=True)


def start(args):
    """A study's folder (args.out): deleted first with args.fresh, else kept for resuming; created."""
    if args.fresh and os.path.isdir(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out, exist_ok=True)


def write_results(out, md, obj):
    """OUT/results.md (printed too) and OUT/results.json (report.json_safe: no NaN, tuples as lists)."""
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(report.json_safe(obj), f, indent=1)
    print(md)


def read_rows(folder):
    """{task: {item id: eval.py prediction row}} of a run."""
    rows = {}
    for r in report.read_predictions(os.path.join(folder, "eval", "predictions.jsonl")):
        rows.setdefault(r["task"], {})[r["id"]] = r
    return rows


def item_nll(rows, ids):
    """(per-item nats per token, answer tokens) or None where eval.py wrote no per-item answer NLL."""
    if not ids or not all("answer nats" in rows[i] for i in ids):
        return None
    return (np.array([rows[i]["answer nats"] / rows[i]["answer tokens"] for i in ids]),
            np.array([float(rows[i]["answer tokens"]) for i in ids]))


def better(diff, ci):
    """"a" when the interval of a - b (> 0: a better) excludes 0 above, "b" below, else "neither"; "n/a" for no
    items (a nan interval)."""
    if ci[0] != ci[0]:  # nan: no items
        return "n/a"
    return "a" if ci[0] > 0 else "b" if ci[1] < 0 else "neither"
