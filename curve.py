"""A run's curves: the held-out answer loss per task while training runs, and the plots of a run folder.

    curve = HeldoutCurve(tok, tasks, data_src, out, per_task=4, seed=42, mol_format="smiles", text_only=False)
    curve(model, step, rank, world)   # every rank (items are sharded); the one with an out appends OUT/heldout.jsonl
    plot(OUT/heldout.jsonl, OUT/learning_curve.png)
    plot_losses(OUT/log.jsonl, OUT/loss.png)      # train.py's per-task training loss
    plot_rewards(OUT/log.jsonl, OUT/reward.png)   # rl.py's reward, verified score, KL or entropy

Plots need matplotlib (requirements-dev.txt); without it they are skipped (each returns False).

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
    def __init__(self, tok, tasks, data_src, out, per_task=4, seed=42, mol_format="selfies", resume_step=None,
                 text_only=False):
        # text_only: a --graph none run's prompts (no <mol>, no graph), as it trains and eval.py scores it
        test = data.load_tasks(",".join(tasks), split="test", data=data_src, seed=seed, tokenizer=tok,
                               verbose=False, mol_format=mol_format, text_only=text_only)
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


def _pyplot():
    """matplotlib.pyplot on the Agg backend, or None where matplotlib (a dev requirement) is not installed."""
    try:
        import matplotlib  # optional: plots are a report, a run works without them
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _records(path):
    """The JSON objects of a .jsonl log (train.py / rl.py log.jsonl, heldout.jsonl); [] if it is missing."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(ln) for ln in f if ln.strip()]


def _save(plt, fig, ax, png_path, dpi=100):
    """The legend, the layout, the PNG; the figure closed (pyplot keeps every open figure alive)."""
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(png_path, dpi=dpi)
    plt.close(fig)
    return True


def plot(jsonl_path, png_path):
    """Held-out NLL per task (and the mean over tasks) against steps; False if matplotlib or points are missing."""
    plt, recs = _pyplot(), _records(jsonl_path)
    if plt is None or not recs:
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
    return _save(plt, fig, ax, png_path, dpi=110)


def plot_losses(log_path, png_path):
    """Loss per task (and the total) against steps, if matplotlib is installed."""
    plt, recs = _pyplot(), _records(log_path)
    if plt is None or not recs:
        return False
    fig, ax = plt.subplots(figsize=(9, 5))
    ax.plot([r["step"] for r in recs], [r["ce"] for r in recs], color="black", lw=2, label="all tasks")
    for i, t in enumerate(sorted({t for r in recs for t in r["task_loss"]})):
        pts = [(r["step"], r["task_loss"][t]) for r in recs if t in r["task_loss"]]
        ax.plot(*zip(*pts), lw=1, alpha=0.8, label=t, color=plt.cm.tab20(i % 20))
    ax.set_xlabel("step")
    ax.set_ylabel("answer-token cross-entropy")
    ax.set_yscale("log")
    return _save(plt, fig, ax, png_path)


def plot_rewards(log_path, png_path):
    """Mean reward, verified score and per-task reward against steps (and the KL, when measured)."""
    plt, recs = _pyplot(), _records(log_path)
    if plt is None or not recs:
        return False
    steps = [r["step"] for r in recs]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 7), sharex=True, height_ratios=(3, 1))
    ax.plot(steps, [r["reward"] for r in recs], color="black", lw=2, label="reward (all tasks)")
    ax.plot(steps, [r["verified"] for r in recs], color="black", lw=1, ls="--", label="verified score")
    for i, t in enumerate(sorted({t for r in recs for t in r["task_reward"]})):
        pts = [(r["step"], r["task_reward"][t]) for r in recs if t in r["task_reward"]]
        ax.plot(*zip(*pts), lw=1, alpha=0.8, label=t, color=plt.cm.tab20(i % 20))
    ax.set_ylabel("mean reward per answer")
    if recs[0]["kl"] is not None:
        ax2.plot(steps, [r["kl"] for r in recs], color="tab:red")
        ax2.set_ylabel("KL to start")
    else:
        ax2.plot(steps, [r["entropy"] for r in recs], color="tab:blue")
        ax2.set_ylabel("entropy (nats/token)")
    ax2.set_xlabel("step")
    return _save(plt, fig, ax, png_path)
