"""The CUDA paths on the tiny model (skipped without a GPU): a bf16-base train step against the fp32 CPU
step, generation with the static cache + CUDA-graph decode step against the growing-cache path,
packed rows (FlexAttention document mask) against padded batches, and torch.compile'd layers (Inductor
+ Triton) against eager, each within its dtype's tolerance. bf16 needs compute capability >= 8.
tiny_batch, decode_prompts (conftest.py) hold molecules, so they are used where RDKit is installed."""
import importlib.util

import pytest
import torch

import model as M
import molecule
import moge
from train import TrainStep

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

HAVE_RDKIT = importlib.util.find_spec("rdkit") is not None


@pytest.fixture
def batch_for(tiny_batch):
    """batch_for(tok): conftest's tiny_batch (molecules) when RDKit is installed; the GPU image may lack it
    (the graph splice is CPU-tested): then text-only samples of similar lengths."""
    def make(tok):
        if HAVE_RDKIT:
            return tiny_batch(tok)
        ids, labels = zip(*(tok.encode_chat(f"Name {i * 'x'} a noble gas, item {i}.", f"answer {i} " + "y" * (3 * i))
                            for i in range(7)))
        return list(ids), list(labels), [None] * 7
    return make


@pytest.fixture
def prompts_for(decode_prompts):
    """prompts_for(m, tok): conftest's decode_prompts (two with graphs) when RDKit is installed, else text only."""
    def make(m, tok):
        if HAVE_RDKIT:
            return decode_prompts(m, tok)
        ids = [tok.encode_chat(t)[0] for t in ("Describe ethanol.", "Name a noble gas, please, in one word.", "Why?")]
        return molecule.embed_inputs(m, ids, [None] * 3, padding_side="left")[:2]
    return make


def bf16_ok():
    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8


def build(device, dtype, recipe="moge", b_scale=0.05):
    torch.manual_seed(0)
    m, tok = M.load_model("tiny", dtype=dtype)
    molecule.attach_molecule(m)
    moge.attach_adapters(m, moge.MoGEConfig(recipe=recipe, r=16, dropout=0.0, n_experts=3, top_k=2))
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for n, p in moge.trainable_parameters(m).items():
            if n.endswith("_B") or n.endswith("lora_B"):
                p.copy_(torch.randn(p.shape, generator=g) * b_scale)
    return m.to(device), tok


def ce_and_grads(m, batch, pack_len=0, autocast=False):
    params = moge.trainable_parameters(m)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        ce, aux, _ = TrainStep(m, pack_len=pack_len).train()(*batch)
    grads = torch.autograd.grad(ce.sum(), list(params.values()), allow_unused=True)
    return ce.detach().float().cpu(), {n: (g.float().cpu() if g is not None else None) for n, g in zip(params, grads)}


def rel(a, b):
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def grads_close(got, want, tol):
    """All gradients as one vector: a small-norm tensor whose terms cancel (a GAL scalar's gradient
    sums a whole layer) can have a large relative bf16 error on its own."""
    names = [n for n, a in want.items() if a is not None]
    assert all(got[n] is not None for n in names)
    err = rel(torch.cat([got[n].flatten() for n in names]), torch.cat([want[n].flatten() for n in names]))
    assert err < tol, err


@pytest.mark.skipif(not bf16_ok(), reason="bf16 needs compute capability >= 8")
def test_bf16_train_step_matches_fp32_cpu(batch_for):
    ref_m, tok = build("cpu", torch.float32)
    batch = batch_for(tok)
    ce_ref, g_ref = ce_and_grads(ref_m, batch)
    m, _ = build("cuda", torch.bfloat16)
    assert all(p.dtype == torch.float32 for p in moge.trainable_parameters(m).values())
    ce, g = ce_and_grads(m, batch, autocast=True)
    assert torch.isfinite(ce).all()
    torch.testing.assert_close(ce, ce_ref, rtol=3e-2, atol=0.0)
    grads_close(g, g_ref, 0.05)


@pytest.mark.parametrize("dtype", [torch.float32, pytest.param(torch.bfloat16, marks=pytest.mark.skipif(
    not bf16_ok(), reason="bf16 needs compute capability >= 8"))])
def test_graph_decode_equals_eager_decode(dtype, prompts_for):
    m, tok = build("cuda", dtype, b_scale=0.2)
    m.eval()
    emb, mask = prompts_for(m, tok)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        steps = {}
        for cls in (M.EagerDecoder, M.Decoder):
            dec = cls(m, emb, mask, 12)
            logits = [dec.prefill()]
            for _ in range(11):  # greedy from the EAGER path's argmax, so both see the same tokens
                nxt = (steps[M.EagerDecoder][:, len(logits) - 1] if cls is M.Decoder else logits[-1][:, -1]).argmax(-1)
                logits.append(dec(nxt).clone())
            steps[cls] = torch.cat(logits, 1).float()
            if cls is M.Decoder:
                assert dec.cuda_graph is not None  # the decode step really was captured and replayed
        tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else dict(atol=5e-2, rtol=5e-2)
        torch.testing.assert_close(steps[M.Decoder], steps[M.EagerDecoder], **tol)
        a = m.generate(inputs_embeds=emb, attention_mask=mask, max_new_tokens=24, static_cache=False)
        b = m.generate(inputs_embeds=emb, attention_mask=mask, max_new_tokens=24)  # CUDA default: graphs
        c = m.generate(inputs_embeds=emb, attention_mask=mask, max_new_tokens=24)
    assert b == c                     # replay is deterministic
    if dtype == torch.float32:
        assert a == b


@pytest.mark.parametrize("backend", ["flex", "dense"])
def test_packed_equals_unpacked_on_gpu(backend, monkeypatch, batch_for):
    monkeypatch.setenv("OMNIMOL_ATTN", backend)
    m, tok = build("cuda", torch.float32)
    batch = batch_for(tok)
    ce0, g0 = ce_and_grads(m, batch)
    ce1, g1 = ce_and_grads(m, batch, pack_len=1024)
    torch.testing.assert_close(ce1, ce0, atol=1e-4, rtol=1e-4)
    grads_close(g1, g0, 1e-4)
    if bf16_ok():
        mb, _ = build("cuda", torch.bfloat16)
        c0, _ = ce_and_grads(mb, batch, autocast=True)
        c1, _ = ce_and_grads(mb, batch, pack_len=1024, autocast=True)
        torch.testing.assert_close(c1, c0, rtol=3e-2, atol=0.0)


@pytest.mark.skipif(not bf16_ok(), reason="bf16 needs compute capability >= 8")
def test_compiled_equals_eager_bf16(batch_for):
    torch._dynamo.reset()
    m, tok = build("cuda", torch.bfloat16)
    batch = batch_for(tok)
    ce0, g0 = ce_and_grads(m, batch, autocast=True)
    ce0p, _ = ce_and_grads(m, batch, pack_len=1024, autocast=True)
    for layer in m.model.layers:
        layer.compile()
    ce1, g1 = ce_and_grads(m, batch, autocast=True)
    ce1p, _ = ce_and_grads(m, batch, pack_len=1024, autocast=True)
    torch.testing.assert_close(ce1, ce0, rtol=3e-2, atol=0.0)
    torch.testing.assert_close(ce1p, ce0p, rtol=3e-2, atol=0.0)
    grads_close(g1, g0, 0.05)
    torch._dynamo.reset()
