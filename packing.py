"""Sequence packing for training (`train.py --pack`): the samples of one micro-batch laid end to end in
rows of at most `max_len` tokens, with no attention across samples and positions restarting per sample.

    emb, mask, labels = molecule.embed_inputs(model, ids, graphs, labels=labels)   # (B, L, D) right padded
    p = pack(emb, mask, labels, max_len)             # the same B samples in R <= B rows of T tokens
    logits = model(inputs_embeds=p.embeds, doc_ids=p.doc_ids)                      # (R, T, V)
    # p.targets (R, T): the next-token target of each packed position (IGNORE_INDEX where none);
    # p.owner (R, T): the sample (0..B-1) a packed position belongs to, -1 for row padding

Packing happens after the graph splice (molecule.embed_inputs), so atoms travel with their sample.
Targets are shifted per sample BEFORE packing, so a sample's last token never predicts the next
sample's first token; the model's doc_ids mask keeps attention within each sample and restarts the
RoPE positions at 0 (model.doc_mask, model.doc_positions). The micro-batch holds the same samples as
without packing, so the answer-token cross-entropy of a step is the same (tests/test_pack.py holds
them equal, with gradients); only the padding the model computes on changes: padded rows waste
(L - len) x B positions, packed rows only the tail of each row. The MoGE balance loss counts every
token the router sees, padding included (as the release), so it moves with the padding.
"""
from typing import NamedTuple

import torch

from tokenizer import IGNORE_INDEX

ROW_MULTIPLE = 128  # rows are padded to a multiple of this: FlexAttention's block size, fewer distinct shapes


def plan_rows(lengths: list[int], max_len: int) -> list[list[int]]:
    """First-fit decreasing bin packing: -> rows, each a list of sample indices (in placement order).
    Deterministic (ties keep the batch order). A sample longer than max_len gets a row of its own."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    rows, room = [], []
    for i in order:
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(max_len - lengths[i])
    return rows


class Packed(NamedTuple):
    embeds: torch.Tensor   # (R, T, D)
    doc_ids: torch.Tensor  # (R, T) long: sample slot within the row, -1 for row padding
    targets: torch.Tensor  # (R, T) long: next-token target, IGNORE_INDEX where there is none
    owner: torch.Tensor    # (R, T) long: index of the sample in the batch, -1 for row padding
    rows: list             # the plan: sample indices per row


def pack(embeds: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor | None, max_len: int) -> Packed:
    """Right-padded (B, L, D) embeddings, (B, L) mask and (B, L) labels -> Packed rows. One host sync
    (the sample lengths) and one gather."""
    B, L, D = embeds.shape
    lengths = mask.sum(1).tolist()
    rows = plan_rows(lengths, max_len)
    T = (max(sum(lengths[i] for i in row) for row in rows) + ROW_MULTIPLE - 1) // ROW_MULTIPLE * ROW_MULTIPLE
    src, doc, own = [], [], []            # per packed position: flat source index, doc slot, sample
    pad_src = B * L                       # an appended zero row
    for row in rows:
        s, d, o = [], [], []
        for j, b in enumerate(row):
            s += range(b * L, b * L + lengths[b])
            d += [j] * lengths[b]
            o += [b] * lengths[b]
        n_pad = T - len(s)
        src.append(s + [pad_src] * n_pad), doc.append(d + [-1] * n_pad), own.append(o + [-1] * n_pad)
    dev = embeds.device
    src, doc, own = torch.tensor([src, doc, own], dtype=torch.long).to(dev)   # (3, R, T): one copy
    flat = torch.cat([embeds.reshape(B * L, D), embeds.new_zeros(1, D)])
    packed = flat[src]                                                        # (R, T, D)
    if labels is None:
        targets = torch.full_like(src, IGNORE_INDEX)
    else:
        nxt = torch.cat([labels[:, 1:], labels.new_full((B, 1), IGNORE_INDEX)], 1)  # per-sample shift
        targets = torch.cat([nxt.reshape(-1), nxt.new_full((1,), IGNORE_INDEX)])[src]
    return Packed(packed, doc, targets, own, rows)

