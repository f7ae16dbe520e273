"""Triton grouped-LoRA expert op: forward and deterministic backward, as a torch custom op.

For every (token t, slot j) pair with expert e = ids[t, j]:
  shrink   s[t, j] = A_e x_in[t, j]                      (fp32, kept for backward)
  expand   mode "slots" (gates=None):  y[t, j] = gamma_e B_e s[t, j]             y: (T, k, d_out)
           mode "sum"   (gates given): y[t]    = sum_j g[t, j] gamma_e B_e s[t, j] y: (T, d_out)
x_in[t, j] is x[t] in "slots" mode (x: (T, d_in)) and x[t, j] in "sum" mode (x: (T, k, d_in)).
With the per-slot scale c = gamma_e (slots) or g gamma_e (sum), the backward is
  dsu = B_e^T dy_out;  ds = c dsu;  dB_e = sum c dy_out s^T;  dA_e = sum ds x_in^T;  dx_in = A_e^T ds
  dgamma_e = sum (c / gamma_e) <dsu, s>;  dgates = gamma_e <dsu, s>.
Kernels (slots sorted by expert in BM blocks, see metadata.py; gathers/scatters fused in loads/stores):
  _shrink  one program per block: acc[BM, r] += X[rows] @ W_e^T over K          (s and dsu)
  _expand  one program per (block, NT N tiles): Y[slot] = (c s) @ W_e^T   (y of "slots", dx of "sum")
  _combine one program per (token block, N tile), token order: for each expert, the tile's slots
           routed to it form one (BM, r) operand; Y[t] = sum_e (c s)_e @ W_e^T (y of "sum", dx of "slots")
  _xty     one program per (expert, N tile, M tile[, split]), looping over the expert's blocks:
           dW_e = P[rows]^T @ Q[rows]: every output has one owner; splits are summed in a fixed
           order afterwards, so no atomics anywhere and the backward is bitwise reproducible (dA, dB)
The backward shrink also writes <dsu, s> (for dgamma, dgates) and ds = c dsu in its epilogue.
Tiles are loaded in the input dtype and accumulated in fp32; tensor-core operands built from s
are rounded to the input dtype. Under TRITON_INTERPRET=1 tiles are upcast to fp32 (the
interpreter's bf16 arithmetic is wrong).
"""
import functools
import os
from typing import Optional

import torch
import triton
import triton.language as tl

from .metadata import Routing, build_routing
from .reference import _check

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
# BM slot/token block, BK shrink K tile, BN x NT expand N tiles per program, BX xty tile, warps, stages
# (tuned on an H100 at the MoGE shapes: moge_kernels/bench.py --sweep). Interpreter: small grids, both code paths.
CFG = dict(BM=32, BK=64, BN=64, NT=2, BX=64, W=4, S=1) if INTERPRET else \
    dict(BM=64, BK=128, BN=128, NT=4, BX=128, W=4, S=2)


@triton.jit
def _shrink(X, W, S, slots, block_expert, n_slots, E, K, R, stride_x, stride_we, stride_wn, stride_wk,
            S0, coef, DOT, ROW_DIV: tl.constexpr, EPI: tl.constexpr, BM: tl.constexpr, BR: tl.constexpr,
            BK: tl.constexpr, UPCAST: tl.constexpr, PREC: tl.constexpr):
    # S[slot] = W_e X[slot // ROW_DIV]; with EPI (backward): DOT[slot] = <acc, S0[slot]>, S[slot] = coef[slot] acc
    pid = tl.program_id(0)
    e = tl.load(block_expert + pid)
    if e < E:
        slot = tl.load(slots + pid * BM + tl.arange(0, BM))
        valid = slot < n_slots
        row = (slot // ROW_DIV).to(tl.int64)
        offs_r = tl.arange(0, BR)
        offs_k = tl.arange(0, BK)
        acc = tl.zeros((BM, BR), dtype=tl.float32)
        for k0 in range(0, K, BK):
            kk = k0 + offs_k
            x = tl.load(X + row[:, None] * stride_x + kk[None, :], mask=valid[:, None] & (kk < K)[None, :], other=0.0)
            w = tl.load(W + e * stride_we + offs_r[None, :] * stride_wn + kk[:, None] * stride_wk,
                        mask=(offs_r < R)[None, :] & (kk < K)[:, None], other=0.0)
            if UPCAST:
                x = x.to(tl.float32)
                w = w.to(tl.float32)
            acc = tl.dot(x, w, acc, input_precision=PREC)
        ptr = slot.to(tl.int64)[:, None] * R + offs_r[None, :]
        smask = valid[:, None] & (offs_r < R)[None, :]
        if EPI:
            tl.store(DOT + slot, tl.sum(acc * tl.load(S0 + ptr, mask=smask, other=0.0), 1), mask=valid)
            acc = acc * tl.load(coef + slot, mask=valid, other=0.0)[:, None]
        tl.store(S + ptr, acc, mask=smask)


@triton.jit
def _expand(S, W, Y, scale, slots, block_expert, n_slots, E, N, R, stride_we, stride_wn, stride_wr, stride_y,
            HAS_SCALE: tl.constexpr, BM: tl.constexpr, BR: tl.constexpr, BN: tl.constexpr, NT: tl.constexpr,
            UPCAST: tl.constexpr, PREC: tl.constexpr):
    pid = tl.program_id(0)
    pid_n = tl.program_id(1)
    e = tl.load(block_expert + pid)
    if e < E:
        slot = tl.load(slots + pid * BM + tl.arange(0, BM))
        valid = slot < n_slots
        slot64 = slot.to(tl.int64)
        offs_r = tl.arange(0, BR)
        s = tl.load(S + slot64[:, None] * R + offs_r[None, :], mask=valid[:, None] & (offs_r < R)[None, :], other=0.0)
        if HAS_SCALE:
            s = s * tl.load(scale + slot, mask=valid, other=0.0)[:, None]
        if not UPCAST:
            s = s.to(W.dtype.element_ty)
        for i in tl.static_range(NT):   # NT output tiles per program reuse the s tile
            offs_n = (pid_n * NT + i) * BN + tl.arange(0, BN)
            w = tl.load(W + e * stride_we + offs_r[:, None] * stride_wr + offs_n[None, :] * stride_wn,
                        mask=(offs_r < R)[:, None] & (offs_n < N)[None, :], other=0.0)
            if UPCAST:
                w = w.to(tl.float32)
            y = tl.dot(s, w, input_precision=PREC)
            tl.store(Y + slot64[:, None] * stride_y + offs_n[None, :], y.to(Y.dtype.element_ty),
                     mask=valid[:, None] & (offs_n < N)[None, :])


@triton.jit
def _combine(S, W, Y, coef, ids, T, E, N, R, stride_we, stride_wn, stride_wr, stride_y,
             K_SLOTS: tl.constexpr, HAS_COEF: tl.constexpr, BM: tl.constexpr, BR: tl.constexpr, BN: tl.constexpr,
             UPCAST: tl.constexpr, PREC: tl.constexpr):
    # Y[t] = sum_j coef[t, j] W_{ids[t, j]} S[t, j], token-ordered: each output tile has one owner.
    # Per expert, the tile's slots routed to it are gathered into one (BM, r) operand.
    offs_t = tl.program_id(0) * BM + tl.arange(0, BM)
    offs_n = tl.program_id(1) * BN + tl.arange(0, BN)
    offs_r = tl.arange(0, BR)
    tmask = offs_t < T
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for e in range(E):
        a = tl.zeros((BM, BR), dtype=tl.float32)
        for j in tl.static_range(K_SLOTS):
            slot = offs_t * K_SLOTS + j
            hit = tmask & (tl.load(ids + slot, mask=tmask, other=-1) == e)
            s = tl.load(S + slot.to(tl.int64)[:, None] * R + offs_r[None, :],
                        mask=hit[:, None] & (offs_r < R)[None, :], other=0.0)
            if HAS_COEF:
                s = s * tl.load(coef + slot, mask=hit, other=0.0)[:, None]
            a += s
        w = tl.load(W + e * stride_we + offs_r[:, None] * stride_wr + offs_n[None, :] * stride_wn,
                    mask=(offs_r < R)[:, None] & (offs_n < N)[None, :], other=0.0)
        if UPCAST:
            w = w.to(tl.float32)
        acc = tl.dot(a.to(w.dtype), w, acc, input_precision=PREC)
    tl.store(Y + offs_t.to(tl.int64)[:, None] * stride_y + offs_n[None, :], acc.to(Y.dtype.element_ty),
             mask=tmask[:, None] & (offs_n < N)[None, :])


@triton.jit
def _xty(P, Q, OUT, scale, slots, expert_blocks, n_slots, N, M, stride_p, stride_q, stride_oe, stride_on,
         P_DIV: tl.constexpr, Q_DIV: tl.constexpr, SCALE_Q: tl.constexpr, P_F32: tl.constexpr,
         BS: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr, SPLIT: tl.constexpr,
         UPCAST: tl.constexpr, PREC: tl.constexpr):
    # OUT[sp, e, n, m] = sum over the blocks b = sp mod SPLIT of expert e, of the slots' outer products
    # P[slot // P_DIV, n] * Q[slot // Q_DIV, m] (* scale[slot]); the caller sums sp in a fixed order
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    e = tl.program_id(2) // SPLIT
    sp = tl.program_id(2) % SPLIT
    b0 = tl.load(expert_blocks + 2 * e) + sp
    b1 = tl.load(expert_blocks + 2 * e + 1)
    offs_n = pid_n * BN + tl.arange(0, BN)
    offs_m = pid_m * BM + tl.arange(0, BM)
    acc = tl.zeros((BN, BM), dtype=tl.float32)
    for b in range(b0, b1, SPLIT):
        slot = tl.load(slots + b * BS + tl.arange(0, BS))
        valid = slot < n_slots
        p = tl.load(P + (slot // P_DIV).to(tl.int64)[:, None] * stride_p + offs_n[None, :],
                    mask=valid[:, None] & (offs_n < N)[None, :], other=0.0)
        q = tl.load(Q + (slot // Q_DIV).to(tl.int64)[:, None] * stride_q + offs_m[None, :],
                    mask=valid[:, None] & (offs_m < M)[None, :], other=0.0)
        if SCALE_Q:
            q = q * tl.load(scale + slot, mask=valid, other=0.0)[:, None]
        if UPCAST:
            p = p.to(tl.float32)
            q = q.to(tl.float32)
        elif P_F32:
            p = p.to(q.dtype)
        else:
            q = q.to(p.dtype)
        acc = tl.dot(tl.trans(p), q, acc, input_precision=PREC)
    tl.store(OUT + tl.program_id(2) * stride_oe + offs_n[:, None] * stride_on + offs_m[None, :],
             acc.to(OUT.dtype.element_ty), mask=(offs_n < N)[:, None] & (offs_m < M)[None, :])


def _flags(dtype):
    return dict(UPCAST=INTERPRET and dtype != torch.float32, PREC="ieee" if dtype == torch.float32 else "tf32")


def _pow2(r):
    return max(16, triton.next_power_of_2(r))


def shrink(X, W_e, stride_wn, stride_wk, R, K, row_div, rt, n_slots, s0=None, coef=None):
    """S[slot] = W_e[:R, :K] (as strided) @ X[slot // row_div]: (n_slots, R) fp32.
    With s0 and coef (backward): returns (coef * S, <S, s0> per slot)."""
    S = torch.empty(n_slots, R, device=X.device, dtype=torch.float32)
    dot = torch.empty(n_slots, device=X.device, dtype=torch.float32) if s0 is not None else S
    nb = rt.block_expert.numel()
    _shrink[(nb,)](X, W_e, S, rt.slots, rt.block_expert, n_slots, W_e.shape[0], K, R, X.stride(0),
                   W_e.stride(0), stride_wn, stride_wk, s0 if s0 is not None else S, coef if coef is not None else S,
                   dot, ROW_DIV=row_div, EPI=s0 is not None, BM=CFG["BM"], BR=_pow2(R), BK=CFG["BK"],
                   num_warps=CFG["W"], num_stages=CFG["S"], **_flags(X.dtype))
    return (S, dot) if s0 is not None else S


def expand(S, W_e, stride_wn, stride_wr, N, scale, rt, dtype):
    """Y[slot] = scale[slot] * W_e (N x R, strided) @ S[slot]: (n_slots, N) in dtype."""
    n_slots, R = S.shape
    Y = torch.empty(n_slots, N, device=S.device, dtype=dtype)
    nb = rt.block_expert.numel()
    _expand[(nb, triton.cdiv(N, CFG["BN"] * CFG["NT"]))](
        S, W_e, Y, scale if scale is not None else S, rt.slots, rt.block_expert, n_slots, W_e.shape[0], N, R,
        W_e.stride(0), stride_wn, stride_wr, Y.stride(0), HAS_SCALE=scale is not None, BM=CFG["BM"],
        BR=_pow2(R), BN=CFG["BN"], NT=CFG["NT"], num_warps=CFG["W"], **_flags(dtype))
    return Y


def xty(P, Q, scale, p_div, q_div, N, M, rt, E, out_dtype, p_f32):
    """OUT[e] = sum_{slot in e} P[slot // p_div, :N]^T (x scale[slot]) Q[slot // q_div, :M]: (E, N, M)."""
    BN = _pow2(N) if p_f32 else CFG["BX"]
    BMq = CFG["BX"] if p_f32 else _pow2(M)
    tiles = triton.cdiv(N, BN) * triton.cdiv(M, BMq) * E
    # split each expert's slot blocks over SPLIT programs when the grid would not fill the GPU
    split = 2 if INTERPRET else max(1, min(8, (2 * _sms(P.device) + tiles - 1) // tiles))
    OUT = torch.empty(split * E, N, M, device=P.device, dtype=out_dtype if split == 1 else torch.float32)
    _xty[(triton.cdiv(N, BN), triton.cdiv(M, BMq), E * split)](
        P, Q, OUT, scale, rt.slots, rt.expert_blocks, scale.numel(), N, M, P.stride(0), Q.stride(0),
        OUT.stride(0), OUT.stride(1), P_DIV=p_div, Q_DIV=q_div, SCALE_Q=not p_f32, P_F32=p_f32,
        BS=CFG["BM"], BN=BN, BM=BMq, SPLIT=split, num_warps=CFG["W"], num_stages=CFG["S"],
        **_flags(Q.dtype if p_f32 else P.dtype))
    return OUT if split == 1 else OUT.view(E, split, N, M).sum(1).to(out_dtype)


@functools.lru_cache(None)
def _sms(device):
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1


def combine(S, W_e, stride_wn, stride_wr, N, coef, ids, dtype):
    """Y[t] = sum_j coef[t, j] W_e (N x R, strided) @ S[t * k + j], e = ids[t, j]: (T, N) in dtype."""
    T, k = ids.shape
    R = S.shape[1]
    Y = torch.empty(T, N, device=S.device, dtype=dtype)
    _combine[(triton.cdiv(T, CFG["BM"]), triton.cdiv(N, CFG["BN"]))](
        S, W_e, Y, coef if coef is not None else S, ids.contiguous(), T, W_e.shape[0], N, R, W_e.stride(0),
        stride_wn, stride_wr, Y.stride(0), K_SLOTS=k, HAS_COEF=coef is not None, BM=CFG["BM"], BR=_pow2(R),
        BN=CFG["BN"], num_warps=CFG["W"], num_stages=CFG["S"], **_flags(dtype))
    return Y


# ---------------------------------------------------------------- custom ops (torch.compile, CUDA graphs)

@torch.library.custom_op("omnimol::grouped_lora_fwd", mutates_args=())
def _fwd(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, gamma: torch.Tensor, ids: torch.Tensor,
         gates: Optional[torch.Tensor], slots: torch.Tensor, block_expert: torch.Tensor,
         expert_blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rt = Routing(slots, block_expert, expert_blocks)
    T, k = ids.shape
    E, r, d_in = A.shape
    d_out = B.shape[1]
    A, B = A.to(x.dtype).contiguous(), B.to(x.dtype).contiguous()
    x2 = x.reshape(-1, d_in).contiguous()
    s = shrink(x2, A, d_in, 1, r, d_in, k if gates is None else 1, rt, T * k)
    gsc = gamma.float()[ids.reshape(-1).long()]
    if gates is None:
        y = expand(s, B, r, 1, d_out, gsc, rt, x.dtype).view(T, k, d_out)
    else:
        y = combine(s, B, r, 1, d_out, gsc * gates.reshape(-1).float(), ids, x.dtype)
    return y, s


@_fwd.register_fake
def _(x, A, B, gamma, ids, gates, slots, block_expert, expert_blocks):
    T, k = ids.shape
    d_out = B.shape[1]
    y = x.new_empty(T, k, d_out) if gates is None else x.new_empty(T, d_out)
    return y, x.new_empty(T * k, A.shape[1], dtype=torch.float32)


@torch.library.custom_op("omnimol::grouped_lora_bwd", mutates_args=())
def _bwd(dy: torch.Tensor, x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, gamma: torch.Tensor,
         ids: torch.Tensor, gates: Optional[torch.Tensor], s: torch.Tensor, slots: torch.Tensor,
         block_expert: torch.Tensor, expert_blocks: torch.Tensor
         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    rt = Routing(slots, block_expert, expert_blocks)
    T, k = ids.shape
    E, r, d_in = A.shape
    d_out = B.shape[1]
    n = T * k
    Ac, Bc = A.to(x.dtype).contiguous(), B.to(x.dtype).contiguous()
    x2 = x.reshape(-1, d_in).contiguous()
    dy2 = dy.reshape(-1, d_out).contiguous()
    div = 1 if gates is None else k                      # dy row of a slot is slot // div
    flat = ids.reshape(-1).long()
    g_e = gamma.float()[flat]
    c = g_e if gates is None else g_e * gates.reshape(-1).float()
    ds, dot = shrink(dy2, Bc, 1, r, r, d_out, div, rt, n, s, c)   # c B_e^T dy (n, r) fp32; <B_e^T dy, s>
    wdot = dot if gates is None else dot * gates.reshape(-1).float()
    dgamma = wdot @ (flat[:, None] == torch.arange(E, device=flat.device)).float()  # segment sum, no atomics
    dgates = (g_e * dot).view(T, k).to(gates.dtype) if gates is not None else dot.new_empty(0)
    dB = xty(dy2, s, c, div, 1, d_out, r, rt, E, B.dtype, False)
    dA = xty(ds, x2, c, 1, 1 if gates is not None else k, r, d_in, rt, E, A.dtype, True)
    if gates is None:   # dx[t] = sum_j A_e^T ds[t, j]
        dx = combine(ds, Ac, 1, d_in, d_in, None, ids, x.dtype)
    else:               # dx[t, j] = A_e^T ds[t, j]
        dx = expand(ds, Ac, 1, d_in, d_in, None, rt, x.dtype).view_as(x)
    return dx, dA, dB, dgamma.to(gamma.dtype), dgates


@_bwd.register_fake
def _(dy, x, A, B, gamma, ids, gates, s, slots, block_expert, expert_blocks):
    dg = gates.new_empty(gates.shape) if gates is not None else s.new_empty(0)
    return x.new_empty(x.shape), A.new_empty(A.shape), B.new_empty(B.shape), gamma.new_empty(gamma.shape), dg


def _setup(ctx, inputs, output):
    x, A, B, gamma, ids, gates, slots, block_expert, expert_blocks = inputs
    ctx.has_gates = gates is not None
    ctx.save_for_backward(x, A, B, gamma, ids, gates, output[1], slots, block_expert, expert_blocks)


def _backward(ctx, dy, _ds):
    x, A, B, gamma, ids, gates, s, slots, block_expert, expert_blocks = ctx.saved_tensors
    dx, dA, dB, dgamma, dgates = _bwd(dy.contiguous(), x, A, B, gamma, ids, gates if ctx.has_gates else None,
                                      s, slots, block_expert, expert_blocks)
    return dx, dA, dB, dgamma, None, (dgates if ctx.has_gates else None), None, None, None


_fwd.register_autograd(_backward, setup_context=_setup)


def routing(ids, E):
    """The block metadata of the Triton path, to share across the calls that use the same ids."""
    return build_routing(ids, E, CFG["BM"])


def grouped_lora_triton(x, A, B, gamma, ids, gates=None, plan=None):
    """The Triton path of `moge_kernels.grouped_lora` (any device under TRITON_INTERPRET=1). plan: a
    routing(ids, E) built once for the calls that share ids."""
    _check(x, A, B, gamma, ids, gates)
    rt = plan if isinstance(plan, Routing) else build_routing(ids, A.shape[0], CFG["BM"])
    y, _ = _fwd(x, A, B, gamma, ids, gates, rt.slots, rt.block_expert, rt.expert_blocks)
    return y
