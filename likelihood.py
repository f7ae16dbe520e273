"""Teacher-forced answer log-probabilities: one forward per batch, no generation.

    lps = answer_logprobs(model, tok, [(user_text, graph_or_None), ...], ["answer", ...])
    nll = -lps[i].mean()          # nats per answer token (the end-of-turn token included)

    nll = heldout_nll(model, tok, test_samples, key=lambda s: s.task)   # {key: nats per answer token}

Used by eval.py and train.py --curve-every (held-out answer NLL), multiple-choice option scoring and GRPO
(grad=True). The sequence is exactly the training one (tokenizer.encode_chat with the answer: loss positions =
the answer and its end-of-turn token; atom tokens spliced by molecule.embed_inputs), so these are the log-probs
the training loss sums.
"""
import contextlib

import torch
import torch.distributed as dist

import data
import molecule
from tokenizer import IGNORE_INDEX


def answer_logprobs(model, tok, items, answers, batch_size=16, grad=False, answer_ids=None, temperature=1.0):
    """items: [(user_text, graph or None)]; answers: [str] -> per item a 1-D fp32 tensor of
    log p(token) for every supervised answer token, in order. Right-padded batches (causal attention
    never sees the padding). With grad=False it runs under no_grad and returns detached tensors.
    answer_ids (GRPO, rl.py): per item the answer as token ids, used as they are instead of encoding
    `answers` (pass None): sampled ids, the stop token included when one was sampled, since decoding and
    re-encoding can change the tokens. temperature: log softmax(logits / temperature), the sampling policy."""
    if answer_ids is not None:
        answers = answer_ids
    if len(items) != len(answers):
        raise ValueError(f"{len(items)} items but {len(answers)} answers")
    out = [None] * len(items)
    ctx = contextlib.nullcontext() if grad else torch.no_grad()
    with ctx:
        for b in range(0, len(items), batch_size):
            idx = list(range(b, min(b + batch_size, len(items))))
            if answer_ids is None:
                enc = [tok.encode_chat(items[i][0], answers[i]) for i in idx]
            else:
                prompts = [tok.encode_chat(items[i][0])[0] for i in idx]
                enc = [(p + list(answer_ids[i]), [IGNORE_INDEX] * len(p) + list(answer_ids[i]))
                       for p, i in zip(prompts, idx)]
            emb, _, labels = molecule.embed_inputs(model, [e[0] for e in enc], [items[i][1] for i in idx],
                                                   labels=[e[1] for e in enc])
            logits = model(inputs_embeds=emb)                         # (B, T, V)
            tgt = labels[:, 1:]                                       # (B, T-1): token t+1 predicted at t
            rows, cols = (tgt != IGNORE_INDEX).nonzero(as_tuple=True)  # (N,) supervised positions, row-major
            lp = torch.log_softmax(logits[rows, cols].float() / temperature, dim=-1)  # (N, V)
            lp = lp.gather(1, tgt[rows, cols, None])[:, 0]                 # (N,)
            counts = (tgt != IGNORE_INDEX).sum(1).tolist()
            for i, piece in zip(idx, lp.split(counts)):
                out[i] = piece
    return out


NLL_BATCH = 4  # sequences per teacher-forced forward: its (B, T, vocab) logits are ~0.3 GB at SmolLM2's 49k vocab


def heldout_nll(model, tok, samples, key, rank=0, world=1, batch_size=NLL_BATCH, per_item=None):
    """{key(sample): nats per answer token} over the test items (answer and end token, as the training loss),
    teacher-forced by answer_logprobs, one forward per batch. Items are sharded over ranks
    (every world-th) and the per-set sums gathered, so every rank returns the same dict. per_item: a dict
    filled with {sample.id: (nats, answer tokens)} of every item (all ranks'), for comparisons paired
    over items (a set's value is the ratio of its items' sums)."""
    mine = sorted(range(len(samples))[rank::world], key=lambda i: -len(samples[i].prompt) - len(samples[i].answer))
    lps = answer_logprobs(model, tok, [(samples[i].prompt, data.featurize(samples[i])) for i in mine],
                         [samples[i].answer for i in mine], batch_size=batch_size)
    items = {samples[i].id: (-float(lp.double().sum()), len(lp)) for i, lp in zip(mine, lps)}
    if len(items) != len(mine):
        raise ValueError("heldout_nll: sample ids are not unique; per-item values would be lost")
    if world > 1:
        parts = [None] * world
        dist.all_gather_object(parts, items)
        items = {k: v for part in parts for k, v in part.items()}
    if per_item is not None:
        per_item.update(items)
    sums = {}
    for s in samples:
        if s.id in items:
            t, (nats, n) = key(s), items[s.id]
            s0, n0 = sums.get(t, (0.0, 0))
            sums[t] = (s0 + nats, n0 + n)
    return {t: s / n for t, (s, n) in sorted(sums.items()) if n}
