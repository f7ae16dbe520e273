"""Routing metadata for the grouped-LoRA kernels, built on the device with static shapes.

The T*k (token, slot) pairs are sorted by expert (stable), and each expert's list is padded to a
multiple of BM with the sentinel n = T*k, so every BM-row block of `slots` belongs to one expert
(the vLLM `moe_align_block_size` layout). Everything is a fixed-size torch op: no `.item()`, no
host sync, so it works under CUDA graphs and torch.compile.
"""
from typing import NamedTuple

import torch


class Routing(NamedTuple):
    slots: torch.Tensor          # (n_blocks*BM,) int32: slot ids sorted by expert, padded with n
    block_expert: torch.Tensor   # (n_blocks,) int32: expert of each block, E for trailing blocks
    expert_blocks: torch.Tensor  # (E, 2) int32: [first, last+1) block of each expert


def n_blocks(n: int, E: int, BM: int) -> int:
    # sum_e cdiv(c_e, BM) <= cdiv(n + E*(BM-1), BM): a static bound
    return (n + E * (BM - 1) + BM - 1) // BM


def build_routing(ids: torch.Tensor, E: int, BM: int) -> Routing:
    dev = ids.device
    flat = ids.reshape(-1).long()
    n = flat.numel()
    onehot = (torch.arange(E, device=dev)[:, None] == flat[None, :]).int()    # (E, n); F.one_hot would sync
    csum = onehot.view(-1).cumsum(0, dtype=torch.int32).view(E, n)          # one flat scan (fast on GPU)
    before = torch.cat([csum.new_zeros(1), csum[:-1, -1]]) if n else csum.new_zeros(E)
    counts = (csum[:, -1] - before).long() if n else csum.new_zeros(E).long()
    rank = csum.gather(0, flat[None, :]).squeeze(0) - 1 - before[flat]      # stable rank within the expert
    padded = (counts + BM - 1) // BM * BM
    pend = padded.cumsum(0)
    pstart = pend - padded
    nb = n_blocks(n, E, BM)
    slots = torch.full((nb * BM,), n, dtype=torch.int32, device=dev)
    slots[pstart[flat] + rank] = torch.arange(n, dtype=torch.int32, device=dev)  # unique destinations
    block_expert = torch.searchsorted(pend, torch.arange(nb, device=dev) * BM, right=True).int()
    expert_blocks = torch.stack([pstart // BM, pend // BM], 1).int()
    return Routing(slots, block_expert, expert_blocks)
