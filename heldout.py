"""Held-out answer loss and answer budgets for eval.py.

    nll = heldout_nll(model, tok, test_samples, key=lambda s: s.task)   # {key: nats per answer token}
    fresh = untrained_model(meta, device, dtype)   # train.py's step-0 model of a checkpoint
    budgets = answer_budgets(tok, train_samples, cap=512)   # {task: max new tokens}

The NLL is teacher-forced (likelihood.answer_logprobs, one forward per batch, no generation) over the same
sequences the training loss sums: the cheapest honest signal that training helped, also on CPU after a
handful of steps. Comparing the checkpoint with its step-0 model (same base, graph tower and adapter
config, adapters and projector freshly initialised from the run's seed) isolates what training changed.
"""
BUDGET_MARGIN = 16  # new tokens allowed beyond the task's longest training answer (end token included)


def untrained_model(meta, device, dtype):
    """train.py's step-0 model of a checkpoint: the same base model, graph tower and adapter config, with the
    projector and adapters freshly initialised from the run's seed, as train.py does (seed, then build). The
    caller's RNG state is left alone."""
    import torch
    import model as M
    import moge
    import molecule
    margs = meta["args"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(margs.get("seed", 42))
        model, _ = M.load_model(margs["model"], device=device, dtype=dtype)
        molecule.attach_molecule(model, gin_path=margs.get("gin"))
        if meta["moge"] is not None:
            moge.attach_adapters(model, moge.MoGEConfig(**meta["moge"]))
    return model.to(device).eval()


NLL_BATCH = 4  # sequences per teacher-forced forward: its (B, T, vocab) logits are ~0.3 GB at SmolLM2's 49k vocab


def heldout_nll(model, tok, samples, key, rank=0, world=1, batch_size=NLL_BATCH):
    """{key(sample): nats per answer token} over the test items (answer and end token, as the training loss),
    teacher-forced by likelihood.answer_logprobs, one forward per batch. Items are sharded over ranks
    (every world-th) and the per-set sums gathered, so every rank returns the same dict."""
    import torch.distributed as dist
    import data
    import likelihood
    mine = sorted(range(len(samples))[rank::world], key=lambda i: -len(samples[i].prompt) - len(samples[i].answer))
    lps = likelihood.answer_logprobs(model, tok, [(samples[i].prompt, data.featurize(samples[i])) for i in mine],
                                     [samples[i].answer for i in mine], batch_size=batch_size)
    sums = {}
    for i, lp in zip(mine, lps):
        s, n = sums.get(key(samples[i]), (0.0, 0))
        sums[key(samples[i])] = (s - float(lp.double().sum()), n + len(lp))
    if world > 1:
        parts = [None] * world
        dist.all_gather_object(parts, sums)
        sums = {}
        for part in parts:
            for t, (s, n) in part.items():
                s0, n0 = sums.get(t, (0.0, 0))
                sums[t] = (s0 + s, n0 + n)
    return {t: s / n for t, (s, n) in sorted(sums.items()) if n}


def answer_budgets(tok, train_samples, cap, margin=BUDGET_MARGIN):
    """{task key: max new tokens} = the longest training answer of the task in tokens (end token included)
    + margin, at most cap. A task without training answers gets the cap."""
    longest = {}
    for s in train_samples:
        longest[s.task] = max(longest.get(s.task, 0), len(tok.encode(s.answer)) + 1)
    return {t: min(cap, n + margin) for t, n in longest.items()}
