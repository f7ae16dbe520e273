"""The learning curve: held-out answer loss per task while training runs.

    curve = HeldoutCurve(tok, tasks, data_src, out, per_task=4, seed=42, mol_format="smiles")  # out None off rank 0
    curve(model, step, rank, world)   # every rank (items are sharded); the one with an out appends OUT/heldout.jsonl
    plot(OUT/heldout.jsonl, OUT/learning_curve.png)

The loss is likelihood.heldout_nll (teacher-forced, nats per answer token, the same sequences as the training
loss) over the first `per_task` test items of each scored set, with dropout off. It is a report only: no
choice of the run (steps, learning rate, when to stop) is made from it.
"""
import json
import os

import torch

import data
import likelihood
from tasks import scored_as


class HeldoutCurve:
    def __init__(self, tok, tasks, data_src, out, per_task=4, seed=42, mol_format="selfies", resume_step=None):
        test = data.load_tasks(",".join(tasks), split="test", data=data_src, seed=seed, tokenizer=tok,
                               verbose=False, mol_format=mol_format)
        seen, self.samples = {}, []
        for s in test:
            seen[scored_as(s)] = seen.get(scored_as(s), 0) + 1
            if seen[scored_as(s)] <= per_task:
                self.samples.append(s)
        self.tok, self.path = tok, os.path.join(out, "heldout.jsonl") if out else None  # None: not rank 0
        if self.path is None:
            return
        if resume_step is None and os.path.exists(self.path):
            os.remove(self.path)
        elif resume_step is not None and os.path.exists(self.path):  # forget points after the checkpoint
            with open(self.path) as f:
                keep = [ln for ln in f if json.loads(ln)["step"] <= resume_step]
            with open(self.path, "w") as f:
                f.writelines(keep)

    def __call__(self, model, step, rank=0, world=1):
        """Held-out NLL of `model` (the unwrapped module) at `step`; collective when world > 1."""
        was_training = model.training
        model.eval()
        with torch.no_grad():
            nll = likelihood.heldout_nll(model, self.tok, self.samples, scored_as, rank, world)
        model.train(was_training)
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": step, "items": len(self.samples), "nll": nll}) + "\n")
        return nll


def plot(jsonl_path, png_path):
    """Held-out NLL per task (and the mean over tasks) against steps; False if matplotlib or points are missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    if not os.path.exists(jsonl_path):
        return False
    with open(jsonl_path) as f:
        recs = [json.loads(ln) for ln in f if ln.strip()]
    if not recs:
        return False
    tasks = sorted({t for r in recs for t in r["nll"]})
    fig, ax = plt.subplots(figsize=(9, 5))
    for i, t in enumerate(tasks):
        pts = [(r["step"], r["nll"][t]) for r in recs if t in r["nll"]]
        ax.plot(*zip(*pts), marker="o", ms=3, lw=1, alpha=0.8, label=t, color=plt.cm.tab20(i % 20))
    mean = [(r["step"], sum(r["nll"].values()) / len(r["nll"])) for r in recs if r["nll"]]
    ax.plot(*zip(*mean), color="black", lw=2, marker="o", label="mean over tasks")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("held-out answer NLL (nats/token)")
    ax.set_title(f"held-out answer loss, {recs[-1]['items']} test items")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return True
