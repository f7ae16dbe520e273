"""GAL adapters and MoGE (moge.py): the shared-base layer against the release-style deep-copy
reference (outputs and every gradient), the router's math, DDP with idle experts, and model-level
properties on the tiny Llama (B=0 logits, frozen base, adapter files, merge, parameter count)."""
import copy
import math
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.checkpoint import checkpoint

import moge_kernels
import moge_kernels.reference as ref_mod
import moge
import molecule
from model import MLP, TINY, ModelConfig, load_model
from moge import GALLinear, MoGEConfig, MoGEFFN, ReferenceMoGE

# error bound relative to max(1, max |reference|). fp64 is bounded by kernels' torch path, which keeps
# the low-rank intermediate s (and its products) in fp32 whatever the input dtype.
REL = {torch.float32: 1e-5, torch.float64: 1e-4}


def assert_close(got, want, dtype):
    err, scale = (got - want.to(got.dtype)).abs().max().item(), max(1.0, want.abs().max().item())
    assert err <= REL[dtype] * scale, f"max error {err:.3g} > {REL[dtype]} x {scale:.3g}"


def make_layer(d=24, f=40, dtype=torch.float32, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = MoGEConfig(r=kw.pop("r", 4), dropout=kw.pop("dropout", 0.0), adapter_dtype=dtype, **kw)
    mlp = MLP(ModelConfig(**{**TINY, "hidden_size": d, "intermediate_size": f})).to(dtype).requires_grad_(False)
    return MoGEFFN(mlp, cfg)


def randomize(module, seed=1):
    """Non-zero B and GAL scalars spread across (and beyond) their clamp ranges."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in module.named_parameters():
            if n.endswith("_B") or n.endswith("lora_B"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            elif n.endswith("gal"):
                u = torch.rand(p.shape, generator=g)
                p.copy_(torch.stack([16 + (u[..., 0] - 0.5) * 0.3, (u[..., 1] - 0.5) * 0.15,
                                     0.5 + (u[..., 2] - 0.5) * 0.03], -1))


def ref_param(ref, e, name, part):
    ffn = ref.shared_experts if e == ref.E else ref.experts[e]
    lin = getattr(ffn, f"{name}_proj")
    return lin.gal if part == "gal" else getattr(lin, f"lora_{part}")


# ----------------------------------------------------------------------------- GAL

def test_gal_gamma_init_and_clamps():
    g = moge.gal_gamma(torch.tensor([16.0, 0.0, 0.5]), 16.0, 64)
    assert g.item() == pytest.approx(2.0)  # the rsLoRA scale at init
    g = moge.gal_gamma(torch.tensor([[20.0, 1.0, 0.9], [10.0, -1.0, 0.1]]), 16.0, 64)
    assert g.tolist() == pytest.approx([16.1 / 64 ** 0.51 + 0.05, 15.9 / 64 ** 0.49 - 0.05])


@pytest.mark.parametrize("recipe", ["gal", "lora", "rslora"])
def test_gal_linear_in_place_names_and_formula(recipe):
    torch.manual_seed(0)
    lin = nn.Linear(8, 6, bias=True).double().eval()  # eval: no LoRA dropout
    w, b = lin.weight.clone(), lin.bias.clone()
    x = torch.randn(3, 8, dtype=torch.float64)
    y0 = lin(x)
    moge.to_gal(lin, MoGEConfig(recipe=recipe, r=4, adapter_dtype=torch.float64))
    assert isinstance(lin, GALLinear) and torch.equal(lin.weight, w) and torch.equal(lin.bias, b)
    names = dict(lin.named_parameters())
    assert set(names) == ({"weight", "bias", "lora_A", "lora_B"} | ({"gal"} if recipe == "gal" else set()))
    assert names["lora_A"].shape == (4, 8) and names["lora_B"].shape == (6, 4)
    assert torch.equal(lin(x), y0)  # B = 0 at init
    randomize(lin)
    gamma = {"gal": moge.gal_gamma(lin.gal, 16.0, 4) if recipe == "gal" else None, "lora": 16.0 / 4,
             "rslora": 16.0 / 4 ** 0.5}[recipe]  # rsLoRA: alpha / sqrt(r)
    torch.testing.assert_close(lin(x), y0 + gamma * x @ lin.lora_A.T @ lin.lora_B.T)


# ----------------------------------------------------------------------------- MoGE layer vs reference

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_moge_matches_deep_copy_reference(dtype):
    fast = make_layer(dtype=dtype)
    randomize(fast)
    ref = ReferenceMoGE(fast)
    x = torch.randn(3, 11, 24, dtype=dtype, requires_grad=True)
    w = torch.randn(3, 11, 24, dtype=dtype)
    outs = []
    for layer in (fast, ref):
        y = layer(x)
        ((y * w).sum() + 0.7 * layer.aux_loss).backward()
        outs.append((y.detach(), layer.aux_loss.detach(), x.grad.clone(), layer.counts))
        x.grad = None
    (yf, af, gxf, cf), (yr, ar, gxr, cr) = outs
    for got, want in ((yf, yr), (af, ar), (gxf, gxr), (fast.router.weight.grad, ref.router.weight.grad)):
        assert_close(got, want, dtype)
    assert torch.equal(cf, cr) and cf.sum() == 2 * 33
    ex, n_checked = fast.experts, 0
    for e in range(fast.E + 1):
        for name in ("gate", "up", "down"):
            for part in ("A", "B", "gal"):
                gf, gr = getattr(ex, f"{name}_{part}").grad[e], ref_param(ref, e, name, part).grad
                if gr is None:  # an expert the reference never ran: its slice must be zero
                    assert not gf.any()
                else:
                    assert_close(gf, gr, dtype)
                    n_checked += 1
    assert n_checked >= 3 * 3 * 4  # shared + at least 3 routed experts saw tokens
    assert all(p.grad is None for p in (fast.gate_proj.weight, fast.up_proj.weight, fast.down_proj.weight))


def test_top2_weights_not_renormalised():
    layer = make_layer()  # B = 0: every expert is the base FFN, so y = (1 + p_top1 + p_top2) FFN(x)
    x = torch.randn(17, 24)
    probs = torch.softmax(x @ layer.router.weight.T, -1)
    top = probs.topk(2, -1).values
    assert (top.sum(-1) < 1).all()
    ffn = layer.down_proj(torch.nn.functional.silu(layer.gate_proj(x)) * layer.up_proj(x))
    torch.testing.assert_close(layer(x), (1 + top.sum(-1, keepdim=True)) * ffn)


def test_aux_loss_and_router_stats_hand_computed():
    layer = make_layer(d=5, f=8)
    logits = [[3, 2, 0, 0, 0], [0, 3, 2, 0, 0], [2, 0, 0, 0, 3], [0, 0, 0, 1, 4]]  # token t's router logits
    with torch.no_grad():
        layer.router.weight.copy_(torch.cat([torch.tensor(logits).T.float(), torch.zeros(5, 1)], 1))
    layer(torch.eye(5)[:4])  # token t = e_t, so its logits are column t of the router weight
    # top-2 by hand: {0,1}, {1,2}, {4,0}, {4,3} -> counts [2, 2, 1, 1, 2] over N*k = 8 slots
    P = [0.0] * 5
    for row in logits:
        z = sum(math.exp(v) for v in row)
        for i, v in enumerate(row):
            P[i] += math.exp(v) / z / 4
    counts = [2, 2, 1, 1, 2]
    expected = sum(P[i] * counts[i] * 5 / (2 * 4) for i in range(5))
    assert layer.aux_loss.item() == pytest.approx(expected, rel=1e-6)
    assert moge.router_stats(nn.ModuleDict({"mlp": layer})) == {"mlp": counts}


def test_idle_experts_still_get_gradients():
    layer = make_layer()
    randomize(layer)
    with torch.no_grad():  # logits c_e * x0 with x0 > 0: experts 0 and 1 win every token
        layer.router.weight.zero_()
        layer.router.weight[:, 0] = torch.tensor([3.0, 2.0, 1.0, -5.0, 0.0])
    x = torch.randn(9, 24)
    x[:, 0] = x[:, 0].abs() + 1
    layer(x).square().sum().backward()
    assert layer.counts.tolist() == [9, 9, 0, 0, 0]
    for n, p in layer.experts.named_parameters():
        assert p.grad is not None, n
        assert not p.grad[2:5].any() and p.grad[[0, 1, 5]].any(), n


def _ddp_worker(rank, world, tmp):
    dist.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=world)
    layer = make_layer()
    randomize(layer)
    with torch.no_grad():  # experts 0/1 win on rank 0 and 3/4 on rank 1: expert 2 idle everywhere
        layer.router.weight.zero_()
        layer.router.weight[:, 0] = torch.tensor([3.0, 2.0, -9.0, 0.0, 1.0]) * (1 if rank == 0 else -1)
    ddp = DDP(layer, find_unused_parameters=False)
    opt = torch.optim.AdamW([p for p in ddp.parameters() if p.requires_grad], lr=1e-2)
    g = torch.Generator().manual_seed(rank)
    for _ in range(2):
        x = torch.randn(8, 24, generator=g)
        x[:, 0] = x[:, 0].abs() + 1
        (ddp(x).square().mean() + layer.aux_loss).backward()
        opt.step()
        opt.zero_grad()
    state = {n: p.detach().clone() for n, p in layer.named_parameters() if p.requires_grad}
    if rank == 1:
        torch.save(state, f"{tmp}/r1.pt")
    dist.barrier()
    if rank == 0:
        other = torch.load(f"{tmp}/r1.pt", weights_only=True)
        assert all(torch.equal(state[n], other[n]) for n in state), "replicas diverged"
    del ddp, opt  # the reducer goes while its process group is still alive
    dist.barrier()  # both ranks reach destroy together (one that left early aborted at exit)
    dist.destroy_process_group()
    open(f"{tmp}/done{rank}", "w").close()  # written only after the check above passed on rank 0


def test_ddp_without_find_unused_parameters():
    with tempfile.TemporaryDirectory() as tmp:
        try:
            mp.spawn(_ddp_worker, args=(2, tmp), nprocs=2)
        except mp.ProcessExitedException as e:
            # gloo's C++ threads can still abort a process during interpreter teardown, after the process
            # group was destroyed (pytorch/pytorch#179291). That is past everything this test checks, so it
            # passes only if both ranks got to the end, rank 0 having compared the replicas.
            done = [os.path.exists(f"{tmp}/done{r}") for r in range(2)]
            if e.signal_name != "SIGABRT" or not all(done):
                raise
        assert all(os.path.exists(f"{tmp}/done{r}") for r in range(2))


# ----------------------------------------------------------------------------- model level (tiny Llama)

def tiny(recipe=None, dtype=torch.float32, **kw):
    model, _ = load_model("tiny", dtype=dtype)
    if recipe is not None:
        moge.attach_adapters(model, MoGEConfig(recipe=recipe, r=8, adapter_dtype=dtype, **kw))
    return model


def test_layer_selection_and_trainable_names():
    assert MoGEConfig().moe_layer_ids(16) == [12, 13, 14, 15]
    assert MoGEConfig().moe_layer_ids(30) == list(range(23, 30))
    assert MoGEConfig().moe_layer_ids(2) == [1]  # at least one layer (the release would pick none)
    assert MoGEConfig(recipe="gal").moe_layer_ids(16) == []
    assert MoGEConfig(recipe="rslora").moe_layer_ids(16) == []
    # the release's moe_mode names ([A] _get_moe_layers_by_mode) and explicit indices
    assert MoGEConfig(moe_layers="second_quarter").moe_layer_ids(16) == [12, 13, 14, 15]
    assert MoGEConfig(moe_layers="first_half").moe_layer_ids(16) == list(range(8))
    assert MoGEConfig(moe_layers="second_half").moe_layer_ids(16) == list(range(8, 16))
    assert MoGEConfig(moe_layers="sparse").moe_layer_ids(16) == [0, 4, 8, 12]
    assert MoGEConfig(moe_layers="dense").moe_layer_ids(16) == list(range(16))
    assert MoGEConfig(moe_layers=[3, 1]).moe_layer_ids(16) == [1, 3]
    with pytest.raises(ValueError, match="moe_layers mode"):
        MoGEConfig(moe_layers="third_quarter")
    base = set(tiny().state_dict())
    model = tiny("moge")
    assert base <= set(model.state_dict())  # HF names untouched, base checkpoints load
    assert isinstance(model.model.layers[1].mlp, MoGEFFN) and isinstance(model.model.layers[0].mlp.gate_proj, GALLinear)
    for n, p in model.named_parameters():
        assert p.requires_grad == (n not in base), n
    assert set(moge.trainable_parameters(model)) == set(model.state_dict()) - base
    assert {n.split(".mlp.")[-1] for n in moge.trainable_parameters(model) if ".1.mlp." in n} == {
        "router.weight", *(f"experts.{a}_{b}" for a in ("gate", "up", "down") for b in ("A", "B", "gal"))}
    assert model.model.layers[1].mlp.experts.gate_A.shape == (6, 8, 64)
    # the projector is trainable, the graph tower frozen, whichever is attached first
    model = moge.attach_adapters(molecule.attach_molecule(tiny()), MoGEConfig(r=8))
    train = moge.trainable_parameters(model)
    assert {"mm_projector.weight", "mm_projector.bias"} <= set(train) and all(p.requires_grad for p in train.values())
    assert not any(p.requires_grad or n in train for n, p in model.named_parameters() if n.startswith("graph_tower."))


@pytest.mark.parametrize("recipe", ["gal", "lora", "rslora", "moge"])
def test_b0_logits_equal_base(recipe):
    base, model = tiny(), tiny(recipe)
    ids = torch.randint(0, 300, (2, 13))
    want = base(ids)
    if recipe == "moge":  # the release's MoGE at init is (1 + p_top1 + p_top2) x the base FFN
        mlp, router = base.model.layers[1].mlp, model.model.layers[1].mlp.router
        fwd = mlp.forward
        mlp.forward = lambda x: (1 + torch.softmax(router(x), -1).topk(2, -1).values.sum(-1, keepdim=True)) * fwd(x)
        want = base(ids)
    got = model(ids)
    # fp32 rounding of the reordered FFN sum, relative to the logits' scale (tiny's logits have std ~2)
    torch.testing.assert_close(got, want, atol=1e-6 * want.abs().max().item(), rtol=1e-5) if recipe == "moge" else \
        assert_equal(got, want)


def assert_equal(a, b):
    assert torch.equal(a, b), (a - b).abs().max()


def test_base_weights_bit_identical_after_steps():
    model = tiny("moge").train()  # dropout on
    base = {n: t.clone() for n, t in model.state_dict().items() if not moge.is_trainable(n)}
    before = {n: p.detach().clone() for n, p in moge.trainable_parameters(model).items()}
    opt = torch.optim.AdamW(moge.trainable_parameters(model).values(), lr=1e-2, weight_decay=0.1)
    for _ in range(3):
        ids = torch.randint(0, 300, (2, 12))
        logits = model(ids[:, :-1])
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten()) + 0.01 * moge.aux_loss(model)
        loss.backward()
        opt.step()
        opt.zero_grad()
    after = copy.deepcopy(model).state_dict()  # a copy after a forward (the stored aux loss holds a graph)
    assert all(torch.equal(after[n], t) for n, t in base.items())
    changed = [n for n, t in before.items() if not torch.equal(after[n], t)]
    assert len(changed) == len(before), set(before) - set(changed)


def test_adapter_save_load_roundtrip_and_strict_errors(tmp_path):
    model = tiny("moge")
    randomize(model)
    path = str(tmp_path / "adapters.safetensors")
    moge.save_adapters(model, path)
    fresh = tiny("moge")
    moge.load_adapters(fresh, path)
    ids = torch.randint(0, 300, (2, 9))
    assert_equal(fresh(ids), model(ids))
    sd = moge.adapter_state_dict(model)
    bad = dict(sd)
    bad.pop("model.layers.0.self_attn.q_proj.lora_A")
    bad["model.layers.0.self_attn.q_proj.lora_C"] = torch.zeros(1)
    bad["model.layers.1.mlp.experts.up_B"] = torch.zeros(6, 128, 4)
    with pytest.raises(ValueError) as err:
        moge.load_adapters(fresh, bad)
    msg = str(err.value)
    assert "missing tensors (1): model.layers.0.self_attn.q_proj.lora_A" in msg
    assert "unexpected tensors (1): model.layers.0.self_attn.q_proj.lora_C" in msg
    assert "mis-shaped tensors (1): model.layers.1.mlp.experts.up_B: file (6, 128, 4) vs model (6, 128, 8)" in msg


@pytest.mark.parametrize("recipe", ["gal", "lora", "rslora"])
def test_merge_dense_adapters(recipe):
    model = tiny(recipe, dtype=torch.float64)
    randomize(model)
    ids = torch.randint(0, 300, (2, 9))
    want = model(ids)
    assert moge.merge_adapters(model) == 2 * 7
    assert not any(isinstance(m, GALLinear) for m in model.modules())
    assert set(model.state_dict()) == set(tiny().state_dict())
    torch.testing.assert_close(model(ids), want)


def test_parameter_count_llama_3_2_1b():
    c = moge.parameter_count()
    print(f"\nLlama-3.2-1B MoGE: ours {c['ours'] / 1e9:.3f}B (base {c['base'] / 1e9:.3f}B + trainable "
          f"{c['trainable'] / 1e6:.1f}M) vs release {c['release'] / 1e9:.3f}B (base {c['release_base'] / 1e9:.3f}B): "
          f"{c['ratio']:.3f}x (base weights {c['base_ratio']:.3f}x)")
    assert c["base"] == 1_235_814_400  # Llama-3.2-1B, tied embeddings
    assert c["release_base"] == c["base"] + 4 * 5 * 3 * 2048 * 8192  # + 5 FFN copies in each of 4 layers
    assert 84e6 < c["trainable"] < 85e6  # LoRA ~84.4M + routers 41K (the release's trainable count)
    assert c["ratio"] <= 0.6


def test_router_fp32_under_autocast():
    layer = make_layer()
    x = torch.randn(2, 16, 24)
    layer(x)
    want = layer.aux_loss
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x)
    assert abs(layer.aux_loss.item() - want.item()) < 1e-6  # bf16 logits would move it by ~1e-3


def test_moge_through_triton_kernel_matches_reference(monkeypatch):
    if getattr(moge_kernels, "grouped_lora_triton", None) is None:
        pytest.skip("triton not importable")
    if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
        pytest.skip("needs a GPU or TRITON_INTERPRET=1")
    monkeypatch.setattr(moge, "grouped_lora", moge_kernels.grouped_lora_triton)
    fast = make_layer(d=32, f=48)
    randomize(fast)
    ref = ReferenceMoGE(fast)
    x = torch.randn(21, 32, requires_grad=True)
    grads = []
    for layer in (fast, ref):
        y = layer(x)
        y.square().sum().backward()
        grads.append((y.detach(), x.grad.clone()))
        x.grad = None
    for got, want in zip(*grads):
        assert_close(got, want, torch.float32)
    for e in range(fast.E + 1):
        for name in ("gate", "up", "down"):
            for part in ("A", "B", "gal"):
                gr = ref_param(ref, e, name, part).grad
                gf = getattr(fast.experts, f"{name}_{part}").grad[e]
                assert_close(gf, gr, torch.float32) if gr is not None else None
                assert gr is not None or not gf.any()


def test_activation_checkpointing_keeps_aux_loss_gradient():
    layer = make_layer(dropout=0.1)
    randomize(layer)
    x = torch.randn(2, 10, 24)
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(5)  # same dropout masks (checkpoint replays the RNG state on recompute)
        y = checkpoint(layer, x, use_reentrant=False) if ckpt else layer(x)
        (y.square().sum() + 10 * layer.aux_loss).backward()
        grads.append({n: p.grad.clone() for n, p in layer.named_parameters() if p.requires_grad})
        layer.zero_grad()
    for n in grads[0]:
        assert torch.equal(grads[0][n], grads[1][n]), n


def test_moge_layer_builds_its_routing_metadata_once(monkeypatch):
    """The three projections of a MoGE layer share one routing plan (moge_kernels.routing_plan), so the
    torch path's sort (and its host sync) happens once per forward, not once per grouped_lora call."""
    counts = {"plan": 0, "fallback": 0}
    real_plan, real_fallback = moge_kernels.sort_plan, ref_mod.sort_plan

    def plan(*a):
        counts["plan"] += 1
        return real_plan(*a)

    def fallback(*a):
        counts["fallback"] += 1
        return real_fallback(*a)
    monkeypatch.setattr(moge_kernels, "sort_plan", plan)            # what routing_plan calls (CPU path)
    monkeypatch.setattr(ref_mod, "sort_plan", fallback)        # what grouped_lora_ref calls without a plan
    monkeypatch.setenv("OMNIMOL_GLORA", "torch")
    layer = make_layer()
    randomize(layer)
    layer(torch.randn(13, 24)).sum().backward()
    assert counts == {"plan": 1, "fallback": 0}
