"""Grouped-LoRA expert op for MoGE: `grouped_lora` (dispatching) and its pure-torch twin.

    y = grouped_lora(x, A, B, gamma, ids, gates=None)
      A: (E, r, d_in), B: (E, d_out, r), gamma: (E,), ids: (T, k) int expert per (token, slot)
      gates=None: x (T, d_in)    -> y (T, k, d_out),  y[t, j] = gamma_e B_e A_e x[t]
      gates (T,k): x (T, k, d_in) -> y (T, d_out),    y[t] = sum_j gates[t, j] gamma_e B_e A_e x[t, j]
    with e = ids[t, j]. Differentiable in x, A, B, gamma and gates.

Dispatch: the Triton kernels for CUDA tensors, `grouped_lora_ref` (torch) otherwise.
OMNIMOL_GLORA=triton or =torch forces one path (read at each call).
"""
import os

from .reference import grouped_lora_dense, grouped_lora_ref

try:
    from .grouped_lora import grouped_lora_triton
except ImportError:  # no triton: the torch path serves every device
    grouped_lora_triton = None

__all__ = ["grouped_lora", "grouped_lora_ref", "grouped_lora_dense", "grouped_lora_triton"]


def grouped_lora(x, A, B, gamma, ids, gates=None):
    mode = os.environ.get("OMNIMOL_GLORA", "auto")
    if mode not in ("auto", "triton", "torch"):
        raise ValueError(f"OMNIMOL_GLORA must be auto, triton or torch, got {mode!r}")
    use_triton = mode == "triton" or (mode == "auto" and x.is_cuda and grouped_lora_triton is not None)
    if use_triton and grouped_lora_triton is None:
        raise RuntimeError("OMNIMOL_GLORA=triton but triton is not importable")
    return (grouped_lora_triton if use_triton else grouped_lora_ref)(x, A, B, gamma, ids, gates)
