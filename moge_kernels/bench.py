"""Grouped-LoRA benchmark (GPU): the Triton op vs the torch paths, with byte and FLOP floors.

    python moge_kernels/bench.py [--T 2048 8192 16384] [--sweep] [--profile]

(The MoGE-layer benchmark, which needs moge.py, is `python bench.py --moge`: moge_kernels/ imports nothing of ours.)

Shapes are MoGE's on Llama-3.2-1B: hidden 2048, FFN 8192, r 64, 5 routed experts (top-2) + 1 shared
expert as an always-on sixth expert, so E = 6 and k = 3 slots per token; bf16. Two modes:
"up" = gate/up projection (x (T, 2048) -> y (T, 3, 8192)), "down" = down projection
(x (T, 3, 8192), gates -> y (T, 2048)). Each row: median time (triton.testing.do_bench), the op's
floor max(min bytes / measured copy bandwidth, FLOPs / measured bf16 matmul rate) and % of it.
"""
import argparse
import os
import sys

import torch
from triton.testing import do_bench

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # `python moge_kernels/bench.py`
from moge_kernels import grouped_lora_dense, grouped_lora_ref, grouped_lora_triton
from moge_kernels.grouped_lora import CFG

D, FFN, R, E, K = 2048, 8192, 64, 6, 3


def grouped_mm_path(x, A, B, gamma, ids, gates=None):
    """torch._grouped_mm on expert-sorted rows (gather before, un-sort after; no host sync)."""
    T, k = ids.shape
    flat = ids.reshape(-1)
    order = torch.argsort(flat, stable=True)
    offs = torch.bincount(flat, minlength=A.shape[0]).cumsum(0).int()
    rows = x.reshape(-1, x.shape[-1])[order // k if gates is None else order]
    s = torch._grouped_mm(rows, A.transpose(1, 2), offs=offs)
    ys = torch._grouped_mm(s, B.transpose(1, 2), offs=offs) * gamma[flat[order]][:, None].to(x.dtype)
    if gates is not None:
        ys = ys * gates.reshape(-1)[order][:, None]
    y = torch.empty_like(ys).index_copy(0, order, ys).view(T, k, -1)
    return y if gates is None else y.sum(1)


def loop_path(x, A, B, gamma, ids, gates=None):
    """MixLoRA-style per-expert Python loop: mask, index, two matmuls, index_add."""
    T, k = ids.shape
    rows = x.reshape(-1, x.shape[-1])
    y = x.new_zeros(T * k, B.shape[1])
    flat = ids.reshape(-1)
    for e in range(A.shape[0]):
        idx = (flat == e).nonzero().squeeze(1)
        xe = rows[idx // k if gates is None else idx]
        ye = (xe @ A[e].t()) @ B[e].t() * gamma[e]
        if gates is not None:
            ye = ye * gates.reshape(-1)[idx][:, None]
        y = y.index_add(0, idx, ye)
    y = y.view(T, k, -1)
    return y if gates is None else y.sum(1)


VARIANTS = {"triton": grouped_lora_triton, "dense-masked": grouped_lora_dense, "grouped_mm": grouped_mm_path,
            "sorted-loop (ref)": grouped_lora_ref, "per-expert loop": loop_path}


def make(T, mode, dtype=torch.bfloat16, dev="cuda"):
    g = torch.Generator(device=dev).manual_seed(T)
    routed = torch.rand(T, E - 1, device=dev, generator=g).argsort(1)[:, :K - 1]
    ids = torch.cat([routed, torch.full((T, 1), E - 1, device=dev)], 1)
    d_in, d_out = (D, FFN) if mode == "up" else (FFN, D)
    x = torch.randn(*((T, d_in) if mode == "up" else (T, K, d_in)), device=dev, generator=g, dtype=dtype)
    A = torch.randn(E, R, d_in, device=dev, generator=g, dtype=dtype) / d_in ** 0.5
    B = torch.randn(E, d_out, R, device=dev, generator=g, dtype=dtype) / R ** 0.5
    gamma = torch.rand(E, device=dev, generator=g) + 1.5
    gates = None
    if mode == "down":
        gates = torch.rand(T, K, device=dev, generator=g, dtype=dtype)
        gates[:, -1] = 1
    dy = torch.randn(*((T, K, d_out) if mode == "up" else (T, d_out)), device=dev, generator=g, dtype=dtype)
    return x, A, B, gamma, ids, gates, dy


def floor(T, mode, bwd):
    """Fewest bytes (each input read once, each output written once) and FLOPs of the op."""
    n = T * K
    d_in, d_out = (D, FFN) if mode == "up" else (FFN, D)
    x_b = (T if mode == "up" else n) * d_in * 2
    y_b = (n if mode == "up" else T) * d_out * 2
    w_b = E * R * (d_in + d_out) * 2
    s_b = n * R * 4
    fl = 2 * n * R * (d_in + d_out)
    if not bwd:
        return x_b + y_b + w_b + s_b, fl
    # fwd + bwd: also read dy, x, s and the weights again, write dx and dA, dB
    return (x_b + y_b + w_b + s_b) + (y_b + x_b + s_b + w_b + x_b + w_b), 3 * fl


def ceilings():
    a = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    bw = 2 * a.numel() / (do_bench(lambda: b.copy_(a), return_mode="median") * 1e-3)
    m = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    fl = 2 * 8192 ** 3 / (do_bench(lambda: m @ m, return_mode="median") * 1e-3)
    return bw, fl


def timer(fn, inputs, bwd, graph=False):
    """Median ms of the forward (or forward + backward); graph=True times CUDA-graph replays."""
    x, A, B, gamma, ids, gates, dy = inputs
    leaves = [t.detach().requires_grad_(bwd) for t in (x, A, B, gamma)] + (
        [gates.detach().requires_grad_(bwd)] if gates is not None else [])
    g = leaves[4] if gates is not None else None

    def step():
        y = fn(*leaves[:4], ids, g)
        return torch.autograd.grad(y, leaves, dy) if bwd else y
    if graph:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(side)
        cg = torch.cuda.CUDAGraph()
        with torch.cuda.graph(cg):
            step()
        return do_bench(cg.replay, warmup=25, rep=100, return_mode="median")
    return do_bench(step, warmup=25, rep=100, return_mode="median")


def bench(Ts, variants, bw, peak):
    rows = []
    for T in Ts:
        for mode in ("up", "down"):
            inputs = make(T, mode)
            for bwd in (False, True):
                nbytes, flops = floor(T, mode, bwd)
                fl_ms = max(nbytes / bw, flops / peak) * 1e3
                times = {}
                for name in variants:
                    times[name] = timer(VARIANTS[name], inputs, bwd)
                    if name in ("triton", "dense-masked"):  # both are sync-free: CUDA-graph replay too
                        times[name + " (graph)"] = timer(VARIANTS[name], inputs, bwd, graph=True)
                for name, ms in times.items():
                    graph = name.endswith("(graph)")
                    tri = times.get("triton (graph)" if graph else "triton", float("nan"))
                    best = min(v for k_, v in times.items()
                               if not k_.startswith("triton") and k_.endswith("(graph)") == graph)
                    sp = f"{best / ms:.2f}x vs best torch" if name.startswith("triton") else f"{ms / tri:.2f}x"
                    rows.append(f"| {T} | {mode} | {'fwd+bwd' if bwd else 'fwd'} | {name} | {ms:.3f} | {fl_ms:.3f} "
                                f"({nbytes / 1e6:.0f} / {flops / 1e9:.0f}) | {100 * fl_ms / ms:.0f}% | {sp} |")
    print("\nlast column: triton rows, best torch path / triton (graph rows against graph rows);"
          " other rows, variant / triton")
    print("| T | mode | pass | variant | ms | floor ms (MB / GFLOP) | % of floor | speedup |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


def sweep(T=8192):
    base = dict(CFG)
    print(f"\nconfig sweep, T={T}, fwd+bwd ms, CUDA-graph replay (up / down)")
    for BM, BK, BN, NT, BX, W, S in [(64, 128, 128, 4, 128, 4, 3), (64, 64, 128, 4, 128, 4, 3),
                                     (64, 128, 128, 4, 128, 4, 2), (64, 128, 128, 4, 128, 4, 4),
                                     (64, 128, 128, 4, 64, 4, 3), (64, 128, 256, 2, 128, 8, 3),
                                     (64, 128, 128, 4, 128, 8, 2), (64, 128, 128, 4, 128, 8, 3),
                                     (32, 128, 128, 4, 128, 4, 3), (64, 128, 64, 8, 128, 4, 3)]:
        CFG.update(BM=BM, BK=BK, BN=BN, NT=NT, BX=BX, W=W, S=S)
        t = [timer(grouped_lora_triton, make(T, m), True, graph=True) for m in ("up", "down")]
        print(f"BM={BM} BK={BK} BN={BN} NT={NT} BX={BX} warps={W} stages={S}: {t[0]:.3f} / {t[1]:.3f}")
    CFG.update(base)


def profile(T=8192):
    for mode in ("up", "down"):
        x, A, B, gamma, ids, gates, dy = make(T, mode)
        leaves = [t.detach().requires_grad_() for t in (x, A, B, gamma)]
        g = gates.detach().requires_grad_() if gates is not None else None
        step = lambda: torch.autograd.grad(grouped_lora_triton(*leaves, ids, g), leaves, dy)  # noqa: E731
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        for activity, sort, title in ((torch.profiler.ProfilerActivity.CUDA, "cuda_time_total", "\nprofile"),
                                      (torch.profiler.ProfilerActivity.CPU, "self_cpu_time_total", "host side, eager")):
            with torch.profiler.profile(activities=[activity]) as prof:
                for _ in range(10):
                    step()
                torch.cuda.synchronize()
            print(f"{title} {mode} T={T} fwd+bwd (10 steps)")
            print(prof.key_averages().table(sort_by=sort, row_limit=14))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--T", type=int, nargs="+", default=[2048, 8192, 16384])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--sweep", action="store_true", help="time a few Triton block configs first")
    ap.add_argument("--profile", action="store_true", help="per-kernel CUDA time of the Triton path")
    args = ap.parse_args()
    assert torch.cuda.is_available(), "the kernel benchmark needs a CUDA GPU"
    print(torch.cuda.get_device_name(), "torch", torch.__version__, "triton", __import__("triton").__version__)
    bw, peak = ceilings()
    print(f"measured: copy {bw / 1e12:.2f} TB/s (read+write), bf16 matmul {peak / 1e12:.0f} TFLOP/s")
    if args.sweep:
        sweep()
    if args.profile:
        profile()
    bench(args.T, args.variants, bw, peak)


if __name__ == "__main__":
    main()
