"""How data.Loader turns a run's samples into batches: one pass over a pool of samples cut into DDP-sharded
global batches (cut), and the sequential schedule of train.py --schedule sequential (Sequential): the tasks one
after another, each phase single-task, in one run.

    mine = cut(pool, rng, batch_size, rank, world, order="uniform", group=64, lengths=L, drop_last=True)
    seq = Sequential(tasks_of_samples, ["forward", "molcap"], global_batch=16); seq.set_total(1000, align=1)
    phase, k, j = seq.locate(epoch, step)   # batch j of pass k over the task of `phase`

Joint training (the release: one random permutation over all tasks) needs only cut, over all samples.
"""
import bisect
import collections

import numpy as np


def cut(pool, rng, batch_size, rank, world, *, order, group, lengths, drop_last) -> list[list[int]]:
    """This rank's batches (sample indices) of one pass over pool (an array of sample indices): a permutation
    drawn from rng, cut into global batches of batch_size x world; rank r takes every world-th sample of each,
    so all ranks take the same number of steps. The last incomplete global batch is dropped (drop_last) or
    filled from the pass's start. order "length": chunks of `group` global batches sorted by lengths[i] before
    the cut, then the batches shuffled (the same rng)."""
    perm = pool[rng.permutation(len(pool))]
    G = batch_size * world
    if len(perm) % G and not drop_last:
        perm = np.resize(perm, -(-len(perm) // G) * G)  # repeats from the start
    n_full = len(perm) // G * G
    perm = perm[:n_full]
    if order == "length":
        chunk = G * group
        parts = [perm[i:i + chunk] for i in range(0, n_full, chunk)]
        perm = np.concatenate([p[np.argsort(-lengths[p], kind="stable")] for p in parts])
    batches = perm.reshape(-1, G)
    if order == "length":
        batches = batches[rng.permutation(len(batches))]
    return [b[rank::world].tolist() for b in batches]


class Sequential:
    """The tasks one after another: phase t holds task_order[t]'s samples only (tasks without samples are
    left out). A pass over a task yields pass_batches[t] batches (floor of its samples / global_batch, or the
    ceiling without drop_last). set_total shares a cycle's batches over the phases in proportion to
    pass_batches, so every task gets as many passes over its data as joint training over all of them gives
    it; the default cycle is one pass over each task. Past the cycle's end the next cycle starts, each task's
    pass count running on (locate)."""

    def __init__(self, tasks: list[str], task_order, global_batch: int, drop_last: bool = True):
        present = list(dict.fromkeys(tasks))
        order = list(task_order) if task_order is not None else present
        if set(present) - set(order):
            raise ValueError(f"tasks {sorted(set(present) - set(order))} have samples but are not in the task "
                             f"order {order}")
        by_task = collections.defaultdict(list)
        for i, t in enumerate(tasks):
            by_task[t].append(i)
        self.tasks = [t for t in order if t in by_task]
        self.pools = [np.array(by_task[t]) for t in self.tasks]  # sample indices, per phase
        self.pass_batches = [len(p) // global_batch if drop_last else -(-len(p) // global_batch) for p in self.pools]
        for t, p, b in zip(self.tasks, self.pools, self.pass_batches):
            if b == 0:
                raise ValueError(f"task {t}: {len(p)} samples cannot fill one global batch of {global_batch} "
                                 "(the sequential schedule batches one task at a time)")
        self.set_total(sum(self.pass_batches))

    def set_total(self, total_batches: int, align: int = 1):
        """The batches of one cycle (train.py: optimizer steps x grad-accum), each phase a multiple of align
        (an optimizer step never mixes two tasks): the cycle's total_batches / align steps shared in proportion
        to pass_batches, largest remainders first (ties: task order). ValueError if a task would get no step."""
        if total_batches < 1 or total_batches % align:
            raise ValueError(f"total_batches {total_batches} must be a positive multiple of align {align}")
        steps, w = total_batches // align, self.pass_batches
        share = [steps * b // sum(w) for b in w]                              # floors of the exact shares
        rest = sorted(range(len(w)), key=lambda j: -(steps * w[j] % sum(w)))  # stable sort: ties in task order
        for j in rest[: steps - sum(share)]:
            share[j] += 1
        if 0 in share:
            raise ValueError(f"the sequential schedule of {len(w)} tasks cannot give task "
                             f"{self.tasks[share.index(0)]} a step out of {steps}: run more steps")
        self.total, self.align = total_batches, align
        self.phase_len = [s * align for s in share]
        self.phase_end = np.cumsum(self.phase_len).tolist()

    def phases(self) -> list[tuple[str, int, int]]:
        """[(task, first batch, end batch)] of a cycle."""
        return [(t, e - n, e) for t, n, e in zip(self.tasks, self.phase_len, self.phase_end)]

    def locate(self, epoch: int, step: int) -> tuple[int, int, int]:
        """Batch `step` of cycle `epoch` -> (phase, pass over its task, batch within that pass)."""
        ph = bisect.bisect_right(self.phase_end, step)
        k, j = divmod(epoch * self.phase_len[ph] + step - (self.phase_end[ph] - self.phase_len[ph]),
                      self.pass_batches[ph])
        return ph, k, j

    def config(self) -> dict:
        """What a saved position must share with the run that resumes it."""
        return {"tasks": list(self.tasks), "total_batches": self.total, "align": self.align}
