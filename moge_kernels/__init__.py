"""Grouped-LoRA expert op for MoGE: `grouped_lora` (dispatching) and its pure-torch twin.

    y = grouped_lora(x, A, B, gamma, ids, gates=None, plan=None)
      A: (E, r, d_in), B: (E, d_out, r), gamma: (E,), ids: (T, k) int expert per (token, slot)
      gates=None: x (T, d_in)    -> y (T, k, d_out),  y[t, j] = gamma_e B_e A_e x[t]
      gates (T,k): x (T, k, d_in) -> y (T, d_out),    y[t] = sum_j gates[t, j] gamma_e B_e A_e x[t, j]
    with e = ids[t, j]. Differentiable in x, A, B, gamma and gates.

plan = routing_plan(ids, E, x): the routing metadata (the Triton path's blocks, or the torch path's
sort), built once per router call and passed to every grouped_lora call that shares those ids.

Dispatch: the Triton kernels for CUDA tensors, `grouped_lora_ref` (torch) otherwise.
OMNIMOL_GLORA=triton or =torch forces one path (read at each call).
"""
import os

from .reference import grouped_lora_dense, grouped_lora_ref, sort_plan

try:
    from .grouped_lora import grouped_lora_triton, routing
except ImportError:  # no triton: the torch path serves every device
    grouped_lora_triton = routing = None

__all__ = ["grouped_lora", "grouped_lora_ref", "grouped_lora_dense", "grouped_lora_triton", "routing_plan"]


def _use_triton(x) -> bool:
    mode = os.environ.get("OMNIMOL_GLORA", "auto")
    if mode not in ("auto", "triton", "torch"):
        raise ValueError(f"OMNIMOL_GLORA must be auto, triton or torch, got {mode!r}")
    use_triton = mode == "triton" or (mode == "auto" and x.is_cuda and grouped_lora_triton is not None)
    if use_triton and grouped_lora_triton is None:
        raise RuntimeError("OMNIMOL_GLORA=triton but triton is not importable")
    return use_triton


def routing_plan(ids, E, x):
    """Routing metadata for the path grouped_lora takes for inputs like x (build once, share)."""
    return routing(ids, E) if _use_triton(x) else sort_plan(ids, E)


def grouped_lora(x, A, B, gamma, ids, gates=None, plan=None):
    # a plan built for the other path (OMNIMOL_GLORA changed in between) is ignored and rebuilt
    return (grouped_lora_triton if _use_triton(x) else grouped_lora_ref)(x, A, B, gamma, ids, gates, plan)
