"""Pure-torch paths of the grouped-LoRA op (plain autograd, any device).

`grouped_lora_ref` is the CPU path and the fallback: slots are sorted by expert and each expert's
rows go through two exact-size matmuls (a Python loop over E; the split sizes come from the host,
free on CPU). `grouped_lora_dense` is the dense-masked variant (cuBLAS-friendly, no host sync):
every token meets every expert and a one-hot mask keeps the routed ones; it spends E/k times the
low-rank FLOPs. Both keep the shrink output s in fp32.
"""
from typing import NamedTuple, Optional

import torch


def _check(x, A, B, gamma, ids, gates):
    E, r, d_in = A.shape
    assert B.shape[0] == E and B.shape[2] == r, f"B {tuple(B.shape)} does not match A {tuple(A.shape)}"
    assert gamma.shape == (E,), f"gamma must be (E,), got {tuple(gamma.shape)}"
    assert ids.dim() == 2, "ids must be (T, k)"
    T, k = ids.shape
    if gates is None:
        assert x.shape == (T, d_in), f"x must be (T, d_in) = {(T, d_in)} without gates, got {tuple(x.shape)}"
    else:
        assert gates.shape == (T, k), f"gates must be (T, k) = {(T, k)}, got {tuple(gates.shape)}"
        assert x.shape == (T, k, d_in), f"x must be (T, k, d_in) = {(T, k, d_in)} with gates, got {tuple(x.shape)}"
    return T, k, E, r, d_in, B.shape[1]


class SortPlan(NamedTuple):
    """The sort of grouped_lora_ref, shared by every call with the same ids (one router)."""
    order: torch.Tensor   # (T*k,) slots sorted by expert (stable)
    counts: list          # slots per expert (host ints: the one host sync of this path)
    inv: torch.Tensor     # (T*k,) inverse permutation of order


def sort_plan(ids: torch.Tensor, E: int) -> SortPlan:
    flat = ids.reshape(-1).long()
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=E).tolist()
    inv = torch.empty_like(order)
    inv[order] = torch.arange(order.numel(), device=order.device)
    return SortPlan(order, counts, inv)


def grouped_lora_ref(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, gamma: torch.Tensor,
                     ids: torch.Tensor, gates: Optional[torch.Tensor] = None,
                     plan: Optional[SortPlan] = None) -> torch.Tensor:
    """Same contract as `moge_kernels.grouped_lora`: sorted-gather torch implementation. `plan`: a
    sort_plan(ids, E) built once and shared by the calls that use the same ids."""
    T, k, E, r, d_in, d_out = _check(x, A, B, gamma, ids, gates)
    order, counts, inv = plan if isinstance(plan, SortPlan) else sort_plan(ids, E)  # another path's plan: rebuild
    rows = x.reshape(-1, d_in)[order // k if gates is None else order]
    outs = []
    for e, xe in enumerate(rows.split(counts)):
        s = xe.float() @ A[e].float().t()                       # (n_e, r) fp32
        outs.append((s @ B[e].float().t()) * gamma[e].float())   # (n_e, d_out) fp32
    y_sorted = torch.cat(outs) if outs else rows.new_zeros(0, d_out, dtype=torch.float32)
    y = y_sorted[inv].view(T, k, d_out)
    if gates is not None:
        y = (y * gates.float()[..., None]).sum(1)
    return y.to(x.dtype)


def grouped_lora_dense(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, gamma: torch.Tensor,
                       ids: torch.Tensor, gates: Optional[torch.Tensor] = None, plan=None) -> torch.Tensor:
    """Same contract, dense-masked: GEMMs against all E experts at once, no host sync."""
    T, k, E, r, d_in, d_out = _check(x, A, B, gamma, ids, gates)
    A_cat = A.to(x.dtype).reshape(E * r, d_in)
    B_cat = B.to(x.dtype).permute(0, 2, 1).reshape(E * r, d_out)
    onehot = (ids.long()[..., None] == torch.arange(E, device=ids.device)).float()   # F.one_hot would sync
    coef = onehot * gamma.float()[ids.long()][..., None]  # (T, k, E)
    if gates is None:
        s = (x @ A_cat.t()).float().view(T, 1, E, r)
        s = (coef[..., None] * s).reshape(T * k, E * r)
        return (s.to(x.dtype) @ B_cat).view(T, k, d_out)
    s = (x.reshape(T * k, d_in) @ A_cat.t()).float().view(T, k, E, r)
    s = ((coef * gates.float()[..., None])[..., None] * s).sum(1).reshape(T, E * r)
    return s.to(x.dtype) @ B_cat
