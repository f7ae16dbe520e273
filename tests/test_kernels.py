"""Grouped-LoRA op: the Triton path (interpreted on CPU, native on a GPU) and the torch twin are both
held equal to a naive per-expert loop in float64, on the output and the gradients of x, A, B,
gamma and gates."""
import pytest
import torch

import moge_kernels
from moge_kernels.grouped_lora import CFG, _fwd
from moge_kernels.metadata import build_routing

CUDA = torch.cuda.is_available()
DEV = "cuda" if CUDA else "cpu"
# relative L2 error allowed against the float64 loop (fp16/bf16: operands of the dots are rounded)
TOL = {torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 3e-2}


def loop_reference(x, A, B, gamma, ids, gates=None):
    """The op as written in the docstring: one expert at a time, float64."""
    x, A, B, gamma = x.double(), A.double(), B.double(), gamma.double()
    T, k = ids.shape
    E = A.shape[0]
    y = x.new_zeros(T, k, B.shape[1])
    for e in range(E):
        t, j = (ids == e).nonzero(as_tuple=True)
        xe = x[t] if gates is None else x[t, j]
        ye = gamma[e] * (xe @ A[e].t() @ B[e].t())
        y = y.index_put((t, j), ye)
    if gates is not None:
        y = (y * gates.double()[..., None]).sum(1)
    return y


def make_case(T, k, E, d_in, d_out, r, gated, dtype, routing="random", seed=0, param_dtype=None):
    g = torch.Generator().manual_seed(seed)
    if routing == "random":      # distinct experts per token when possible, like top-k
        ids = torch.rand(T, E, generator=g).argsort(1)[:, :k] if k <= E else torch.randint(0, E, (T, k), generator=g)
    elif routing == "one":       # every slot on one expert
        ids = torch.full((T, k), E - 1)
    elif routing == "empty":     # expert 1 gets no token
        ids = torch.randint(0, E - 1, (T, k), generator=g)
        ids[ids >= 1] += 1
    elif routing == "shared":    # MoGE: k-1 routed slots among E-1 experts + the shared expert E-1, gate 1
        ids = torch.cat([torch.rand(T, E - 1, generator=g).argsort(1)[:, :k - 1], torch.full((T, 1), E - 1)], 1)
    pd = param_dtype or dtype
    x = torch.randn((T, d_in) if not gated else (T, k, d_in), generator=g).to(dtype)
    A = (torch.randn(E, r, d_in, generator=g) / d_in ** 0.5).to(pd)
    B = (torch.randn(E, d_out, r, generator=g) / r ** 0.5).to(pd)
    gamma = (torch.rand(E, generator=g) + 0.5).to(pd)
    gates = None
    if gated:
        gates = torch.rand(T, k, generator=g).to(dtype)
        if routing == "shared":
            gates[:, -1] = 1.0
    dy_shape = (T, k, d_out) if not gated else (T, d_out)
    dy = torch.randn(dy_shape, generator=g).to(dtype)
    to = lambda t: None if t is None else t.to(DEV)  # noqa: E731
    return [to(t) for t in (x, A, B, gamma, ids, gates, dy)]


def run(fn, x, A, B, gamma, ids, gates, dy):
    leaves = [t.detach().clone().requires_grad_() for t in (x, A, B, gamma)]
    g = gates.detach().clone().requires_grad_() if gates is not None else None
    y = fn(*leaves, ids, g)
    wrt = leaves + ([g] if g is not None else [])
    grads = torch.autograd.grad(y, wrt, dy.to(y.dtype))
    return y, grads


def rel(a, b):
    a, b = a.double().cpu(), b.double().cpu()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def check_against_loop(case, dtype, paths):
    want_y, want_g = run(loop_reference, *case)
    for name, fn in paths:
        y, grads = run(fn, *case)
        assert y.shape == want_y.shape and y.dtype == case[0].dtype, name
        assert torch.isfinite(y).all(), name
        assert rel(y, want_y) < TOL[dtype], f"{name} y: {rel(y, want_y)}"
        x, A, B, gamma, ids, gates, dy = case
        for what, g, w, inp in zip(["x", "A", "B", "gamma", "gates"], grads, want_g, (x, A, B, gamma, gates)):
            assert g.dtype == inp.dtype, f"{name} d{what} dtype {g.dtype} != {inp.dtype}"
            assert rel(g, w) < TOL[dtype], f"{name} d{what}: {rel(g, w)}"


PATHS = [("triton", moge_kernels.grouped_lora_triton), ("torch", moge_kernels.grouped_lora_ref)]

# (T, k, E, d_in, d_out, r, routing)
SHAPES = [
    (7, 2, 5, 40, 72, 16, "random"),      # T < block; d not multiples of the blocks
    (45, 2, 5, 96, 40, 16, "random"),     # T not a multiple of the block
    (33, 1, 8, 64, 64, 16, "random"),     # k = 1, E = 8
    (20, 1, 1, 48, 80, 16, "random"),     # E = 1
    (40, 2, 5, 72, 56, 12, "empty"),      # an expert with no tokens; r = 12 padded to 16
    (37, 2, 8, 56, 48, 16, "one"),        # all tokens on one expert
    (41, 3, 6, 64, 96, 32, "shared"),     # MoGE: 2 routed of 5 + the always-on shared expert
    (1, 2, 5, 24, 24, 16, "random"),      # a single token
]


@pytest.mark.parametrize("gated", [False, True], ids=["slots", "sum"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}k{}E{}d{}x{}r{}-{}".format(*s))
def test_fp32_matches_loop(shape, gated):
    *dims, routing = shape
    check_against_loop(make_case(*dims, gated, torch.float32, routing), torch.float32, PATHS)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("gated", [False, True], ids=["slots", "sum"])
@pytest.mark.parametrize("shape", [SHAPES[1], SHAPES[6]], ids=["odd", "moge"])
def test_half_matches_loop(shape, gated, dtype):
    *dims, routing = shape
    check_against_loop(make_case(*dims, gated, dtype, routing, seed=1), dtype, PATHS)


def test_bf16_activations_fp32_params():
    case = make_case(29, 3, 6, 48, 64, 16, True, torch.bfloat16, "shared", param_dtype=torch.float32)
    check_against_loop(case, torch.bfloat16, PATHS)


def test_dense_masked_matches_loop():
    for gated in (False, True):
        case = make_case(30, 2, 5, 40, 24, 16, gated, torch.float32)
        check_against_loop(case, torch.float32, [("dense", moge_kernels.grouped_lora_dense)])


def test_routing_metadata_invariants():
    for ids, E, BM in [(torch.randint(0, 5, (37, 2)), 5, 32), (torch.zeros(3, 1, dtype=torch.long), 4, 16),
                       (torch.randint(0, 8, (200, 3)), 8, 64)]:
        rt = build_routing(ids, E, BM)
        n = ids.numel()
        slots, be, eb = rt.slots.long(), rt.block_expert.long(), rt.expert_blocks.long()
        real = slots[slots < n]
        assert torch.equal(real.sort().values, torch.arange(n)), "every slot exactly once"
        blk = slots.view(-1, BM)
        flat = ids.reshape(-1)
        for b in range(blk.shape[0]):
            members = blk[b][blk[b] < n]
            if be[b] == E:
                assert members.numel() == 0
            else:
                assert (flat[members] == be[b]).all(), "a block holds one expert"
                assert eb[be[b], 0] <= b < eb[be[b], 1]
        counts = torch.bincount(flat, minlength=E)
        assert torch.equal((eb[:, 1] - eb[:, 0]) * BM >= counts, torch.ones(E, dtype=torch.bool))


def test_dispatch_env(monkeypatch):
    case = make_case(9, 2, 5, 32, 32, 16, False, torch.float32)
    x, A, B, gamma, ids, gates, _ = case
    for mode in ("torch", "triton"):
        monkeypatch.setenv("OMNIMOL_GLORA", mode)
        assert rel(moge_kernels.grouped_lora(x, A, B, gamma, ids), loop_reference(x, A, B, gamma, ids)) < 1e-5
    monkeypatch.setenv("OMNIMOL_GLORA", "cuda")
    with pytest.raises(ValueError):
        moge_kernels.grouped_lora(x, A, B, gamma, ids)


def test_custom_op_compiles():
    """The op is a registered custom op: opcheck (schema, fake, autograd) and a fullgraph trace."""
    x, A, B, gamma, ids, gates, dy = make_case(19, 2, 5, 32, 48, 16, True, torch.float32)
    rt = build_routing(ids, 5, CFG["BM"])
    args = (x.requires_grad_(), A.requires_grad_(), B, gamma, ids, gates.requires_grad_(), *rt)
    torch.library.opcheck(_fwd, args, test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))
    f = torch.compile(moge_kernels.grouped_lora_triton, backend="aot_eager", fullgraph=True)
    y = f(x, A, B, gamma, ids, gates)
    assert rel(y, loop_reference(x, A, B, gamma, ids, gates)) < 1e-5


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_gpu_bf16_native_deterministic():
    """Native bf16 at a mid size; the backward is bit-identical run to run (no atomics)."""
    case = make_case(3000, 3, 6, 512, 1024, 64, True, torch.bfloat16, "shared")
    check_against_loop(case, torch.bfloat16, [("triton", moge_kernels.grouped_lora_triton)])
    case = make_case(3000, 3, 6, 512, 1024, 64, False, torch.bfloat16, "shared")
    check_against_loop(case, torch.bfloat16, [("triton", moge_kernels.grouped_lora_triton)])
    _, g1 = run(moge_kernels.grouped_lora_triton, *case)
    torch.cuda.set_sync_debug_mode("error")  # metadata, kernels and backward never wait for the GPU
    try:
        _, g2 = run(moge_kernels.grouped_lora_triton, *case)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_gpu_cuda_graph_capture():
    x, A, B, gamma, ids, gates, dy = make_case(500, 3, 6, 256, 128, 64, True, torch.bfloat16, "shared")
    f = lambda: moge_kernels.grouped_lora_triton(x, A, B, gamma, ids, gates)  # noqa: E731
    want = f()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = f()
    x.copy_(torch.randn_like(x))
    graph.replay()
    assert torch.equal(y, f()) and not torch.equal(y, want)
