"""GAL adapters and MoGE (Mixture of GAL Experts) with shared frozen expert bases.

    cfg = MoGEConfig(recipe="moge")          # or "gal" (GAL, no MoE) / "lora" (plain alpha/r, no MoE)
                                             # / "rslora" (alpha/sqrt(r), no MoE)
    attach_adapters(model, cfg)              # in place; base weights frozen, HF names untouched
    loss = ce + cfg.aux_coef * aux_loss(model)
    save_adapters(model, "adapters.safetensors"); load_adapters(model, "adapters.safetensors")

Adapters sit beside the base weights: an adapted nn.Linear becomes a `GALLinear` in place, so
`q_proj.weight` keeps its name and `q_proj.lora_A` (r, d_in), `q_proj.lora_B` (d_out, r) and
`q_proj.gal` ([alpha, beta, p], the release's 3-vector) appear next to it. A MoGE layer keeps the
layer's ONE frozen FFN as `mlp.gate_proj/up_proj/down_proj` (base checkpoints load unchanged) and
adds `mlp.router.weight` (E, d) and the stacked adapters of E routed experts + 1 shared expert
(index E, always on with gate 1) as `mlp.experts.{gate,up,down}_{A,B,gal}` with leading dim E+1.

Shared bases are exact by linearity: the base gate/up GEMMs run once per token, the base down GEMM
once on the gate-weighted sum of the expert activations, and only the low-rank parts run per
(token, expert) through `moge_kernels.grouped_lora`. `ReferenceMoGE` is the release's layer (deep-copied
FFNs, a loop over experts); tests check the two agree on outputs and every gradient.

LoRA dropout: dense GAL layers draw a mask per linear, as peft does. In a MoGE layer gate and up each
draw ONE mask on the shared input, used by all three experts of a token (peft: one per expert); the
masks are then correlated across experts, with the same marginal distribution. Down-projection inputs
differ per (token, expert), so their masks are independent as in the release.

DDP: every trainable tensor gets a gradient in every step, so `find_unused_parameters=False` works
with any routing. The experts' adapters are stacked (E+1, ...) tensors used as wholes by every call,
so an expert with no tokens gets a zero slice of a gradient that exists; the router and all GAL
scalars are used by every token. (The per-expert modules of `ReferenceMoGE` would leave unused
experts without gradients: that is one reason it is only a reference.)

Router: logits and softmax in fp32 (autocast is switched off around them), greedy top-k, the k
weights NOT renormalised (release: norm_topk_prob False).

Aux loss: each MoGE layer stores the last forward's balance loss `sum_i P_i f_i` (all tokens, as
the release) on itself; under activation checkpointing use the non-reentrant variant so it keeps its
graph. `router_stats` gives tokens per expert of the last forward.
"""
import copy
import math
import os
import re
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from moge_kernels import grouped_lora, routing_plan
from model import LLAMA_3_2_1B, CausalLM, ModelConfig

RECIPES = ("moge", "gal", "lora", "rslora")
# the release's moe_mode names -> MoE layer indices for L layers ([A] modeling_llava._get_moe_layers_by_mode);
# second_quarter (the paper's, the default) takes at least one layer where the release would take none (L < 4)
MOE_MODES = {"second_quarter": lambda L: range(L - max(1, L // 4), L), "first_half": lambda L: range(L // 2),
             "second_half": lambda L: range(L // 2, L), "sparse": lambda L: range(0, L, 4), "dense": range}
# trainable: GAL/LoRA tensors, MoGE routers and expert adapters, the molecule projector (molecule.py)
TRAINABLE = re.compile(r"\.(lora_A|lora_B|gal)$|(^|\.)mlp\.(router|experts)\.|(^|\.)mm_projector\.")


@dataclass
class MoGEConfig:
    recipe: str = "moge"          # moge | gal | lora | rslora
    r: int = 64
    alpha: float = 16.0           # alpha0: GAL's alpha init and clamp centre; lora's scale is alpha / r,
                                  # rslora's alpha / sqrt(r) (rsLoRA, Kalajdzievski 2023; peft use_rslora)
    dropout: float = 0.05
    n_experts: int = 5            # routed experts; +1 always-on shared expert
    top_k: int = 2
    aux_coef: float = 0.01        # used by the trainer: loss = ce + aux_coef * aux_loss(model)
    moe_layers: tuple | str | None = None  # layer indices, or a MOE_MODES name; None: "second_quarter",
                                           # the release's last quarter range(L - L//4, L), at least one layer
    adapter_dtype: torch.dtype = torch.float32  # master dtype of A/B; the GAL scalars are always fp32

    def __post_init__(self):
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {RECIPES}, got {self.recipe!r}")
        assert 1 <= self.top_k <= self.n_experts, f"top_k {self.top_k} vs {self.n_experts} experts"
        if isinstance(self.moe_layers, str) and self.moe_layers not in MOE_MODES:
            raise ValueError(f"moe_layers mode must be one of {list(MOE_MODES)}, got {self.moe_layers!r}")

    def moe_layer_ids(self, n_layers: int) -> list:
        if self.recipe != "moge":
            return []
        if self.moe_layers is not None and not isinstance(self.moe_layers, str):
            return sorted(self.moe_layers)
        return list(MOE_MODES[self.moe_layers or "second_quarter"](n_layers))

    def lora_scale(self) -> float:
        """The fixed scale of the recipes without GAL: alpha / r (lora) or alpha / sqrt(r) (rslora)."""
        return self.alpha / (math.sqrt(self.r) if self.recipe == "rslora" else self.r)


def gal_gamma(gal: torch.Tensor, alpha0: float, r: int) -> torch.Tensor:
    """gal (..., 3) = [alpha, beta, p] -> gamma (...), the release's clamped learnable scale."""
    alpha, beta, p = gal.to(torch.promote_types(gal.dtype, torch.float32)).unbind(-1)
    return alpha.clamp(alpha0 - 0.1, alpha0 + 0.1) / r ** p.clamp(0.49, 0.51) + beta.clamp(-0.05, 0.05)


def _gal_init(alpha0, *lead):
    return torch.tensor([alpha0, 0.0, 0.5]).expand(*lead, 3).clone()


def _kaiming(t):  # peft's LoRA A init; fan_in is the last dim also for stacked (E, r, d_in) tensors
    bound = 1.0 / math.sqrt(t.shape[-1])  # = kaiming_uniform_(a=sqrt(5)): gain*sqrt(3/fan_in)
    return t.uniform_(-bound, bound) if t.device.type != "meta" else t


# ----------------------------------------------------------------------------- GAL on one linear

class GALLinear(nn.Linear):
    """nn.Linear + GAL adapter: W0 x + gamma * B A dropout(x). Made by `to_gal` in place."""

    def scale(self):
        """gamma: a float for plain LoRA (alpha0 / r), else the GAL scalar tensor (fp32)."""
        return self.lora_scale if self.gal is None else gal_gamma(self.gal, self.alpha0, self.r)

    def forward(self, x):
        y = F.linear(x, self.weight, self.bias)
        h = F.dropout(x, self.lora_dropout, self.training)
        gamma = self.scale()
        gamma = gamma.to(x.dtype) if torch.is_tensor(gamma) else gamma
        s = F.linear(h, self.lora_A.to(x.dtype)) * gamma                # (..., r): scale the narrow side
        return y + F.linear(s, self.lora_B.to(x.dtype))

    def merge(self) -> nn.Linear:
        """Fold gamma B A into the weight and turn back into a plain nn.Linear (for export)."""
        with torch.no_grad():
            dt = torch.promote_types(self.weight.dtype, torch.float32)
            # dtype=dt: a float scale (lora, rslora) is not rounded to fp32 on the way
            delta = torch.as_tensor(self.scale(), dtype=dt) * (self.lora_B.to(dt) @ self.lora_A.to(dt))
            self.weight += delta.to(self.weight.dtype)
        for n in ("lora_A", "lora_B", "gal"):
            delattr(self, n)
        for n in ("r", "alpha0", "lora_dropout", "lora_scale"):
            self.__dict__.pop(n, None)
        self.__class__ = nn.Linear
        return self


def to_gal(lin: nn.Linear, cfg: MoGEConfig) -> GALLinear:
    """Convert an nn.Linear in place: its weight (and name) stay, adapter parameters are added."""
    assert type(lin) is nn.Linear, f"expected a plain nn.Linear, got {type(lin).__name__}"
    dev = lin.weight.device
    lin.__class__ = GALLinear
    lin.r, lin.alpha0, lin.lora_dropout, lin.lora_scale = cfg.r, cfg.alpha, cfg.dropout, cfg.lora_scale()
    lin.lora_A = nn.Parameter(_kaiming(torch.empty(cfg.r, lin.in_features, device=dev, dtype=cfg.adapter_dtype)))
    lin.lora_B = nn.Parameter(torch.zeros(lin.out_features, cfg.r, device=dev, dtype=cfg.adapter_dtype))
    gal = nn.Parameter(_gal_init(cfg.alpha).to(dev)) if cfg.recipe in ("moge", "gal") else None
    lin.register_parameter("gal", gal)
    return lin


# ----------------------------------------------------------------------------- MoGE layer

def _route(h, router_weight, top_k):
    """h (N, d) -> probs (N, E) fp32, top-k weights (N, k) NOT renormalised, top-k ids (N, k)."""
    with torch.autocast(h.device.type, enabled=False):  # fp32 logits even under bf16 autocast (release)
        probs = torch.softmax(F.linear(h.float(), router_weight.float()), dim=-1)
    topw, topi = probs.topk(top_k, dim=-1)
    return probs, topw, topi


def _balance(probs, topi, E):
    """sum_i P_i f_i with P_i the mean router prob and f_i = E/(k N) #(slots given to i); counts (E,)."""
    N, k = topi.shape
    counts = torch.zeros(E, device=probs.device).scatter_add_(0, topi.reshape(-1), probs.new_ones(N * k))
    return (probs.mean(0) * counts * (E / (k * N))).sum(), counts.detach()


def _gated_sum(a, gates):
    """(T, K, f), (T, K) -> (T, f) = sum_j gates[:, j] a[:, j]."""
    g = gates.to(a.dtype)
    if a.is_cuda:  # cuBLAS runs this batched 1xK GEMM far below bandwidth (26% of the MoGE step on an
        return (a * g[..., None]).sum(1)  # H100, moge_kernels/bench.py --profile); mul + sum stays elementwise
    return torch.bmm(g[:, None], a)[:, 0]  # on CPU the batched GEMM is ~2.5x faster than mul + sum


class _Routed(nn.Module):
    aux_loss = counts = None  # the last forward's balance loss (scalar tensor) and tokens per expert (E,)

    def __getstate__(self):  # copy.deepcopy / pickle: leave out the last forward's graph
        return {**self.__dict__, "aux_loss": None, "counts": None}


class MoGEFFN(_Routed):
    """The MoGE FFN: one frozen base FFN shared by E routed + 1 shared expert, each with its own GAL
    adapters on gate/up/down, routed top-k (T=tokens, E=experts, K=k+1 slots with the shared one)."""

    def __init__(self, mlp: nn.Module, cfg: MoGEConfig):
        super().__init__()
        self.gate_proj, self.up_proj, self.down_proj = mlp.gate_proj, mlp.up_proj, mlp.down_proj
        d, f = self.gate_proj.in_features, self.gate_proj.out_features
        dev = self.gate_proj.weight.device
        self.E, self.top_k, self.r, self.alpha0 = cfg.n_experts, cfg.top_k, cfg.r, cfg.alpha
        self.lora_dropout = cfg.dropout
        self.router = nn.Linear(d, self.E, bias=False, device=dev, dtype=torch.float32)  # kaiming(a=sqrt(5))
        n, r, dt = self.E + 1, cfg.r, cfg.adapter_dtype
        ex = self.experts = nn.Module()
        for name, d_in, d_out in (("gate", d, f), ("up", d, f), ("down", f, d)):
            ex.register_parameter(f"{name}_A", nn.Parameter(_kaiming(torch.empty(n, r, d_in, device=dev, dtype=dt))))
            ex.register_parameter(f"{name}_B", nn.Parameter(torch.zeros(n, d_out, r, device=dev, dtype=dt)))
            ex.register_parameter(f"{name}_gal", nn.Parameter(_gal_init(cfg.alpha, n).to(dev)))

    def gammas(self, name=None):
        """(E+1,) fp32 scales of one projection; without a name (gate, up, down) all three from one
        gal_gamma call on the stacked (3, E+1, 3) scalars."""
        if name is not None:
            return gal_gamma(getattr(self.experts, f"{name}_gal"), self.alpha0, self.r)
        ex = self.experts
        return gal_gamma(torch.stack([ex.gate_gal, ex.up_gal, ex.down_gal]), self.alpha0, self.r).unbind(0)

    def forward(self, x):
        shape = x.shape
        h = x.reshape(-1, shape[-1])                                      # (T, d)
        T, ex, p = h.shape[0], self.experts, self.lora_dropout
        probs, topw, topi = _route(h, self.router.weight, self.top_k)     # (T, E), (T, k), (T, k)
        self.aux_loss, self.counts = _balance(probs, topi, self.E)
        ids = torch.cat([topi, topi.new_full((T, 1), self.E)], 1)        # (T, K): shared expert last
        gates = torch.cat([topw, topw.new_ones(T, 1)], 1)                 # (T, K) fp32
        # the three projections share the routing: its metadata (the kernels' expert-sorted blocks, or
        # the torch path's sort and its one host sync) is built once here, and the GAL scales once
        plan = routing_plan(ids, self.E + 1, h)
        g_gate, g_up, g_down = self.gammas()
        g = self.gate_proj(h)[:, None] + grouped_lora(F.dropout(h, p, self.training), ex.gate_A, ex.gate_B,
                                                      g_gate, ids, plan=plan)          # (T, K, f)
        u = self.up_proj(h)[:, None] + grouped_lora(F.dropout(h, p, self.training), ex.up_A, ex.up_B,
                                                    g_up, ids, plan=plan)              # (T, K, f)
        a = F.silu(g) * u                                                 # (T, K, f) expert activations
        y = self.down_proj(_gated_sum(a, gates))                          # W_down sum_j c_j a_j: (T, d)
        y = y + grouped_lora(F.dropout(a, p, self.training), ex.down_A, ex.down_B, g_down, ids, gates, plan=plan)
        return y.view(shape)


# ----------------------------------------------------------------------------- the release's layer

class _ExpertFFN(nn.Module):
    def __init__(self, gate_proj, up_proj, down_proj):
        super().__init__()
        self.gate_proj, self.up_proj, self.down_proj = gate_proj, up_proj, down_proj

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class ReferenceMoGE(_Routed):
    """What the release does (DeepseekV2MoE + peft): `experts` = E deep copies of the FFN and
    `shared_experts` one more, each linear with its own GAL adapter; a Python loop over experts.
    Built from a MoGEFFN, copying its router and adapters, so the two compute the same function."""

    def __init__(self, fast: MoGEFFN):
        super().__init__()
        self.E, self.top_k = fast.E, fast.top_k
        self.router = copy.deepcopy(fast.router)
        ex = fast.experts
        cfg = MoGEConfig(r=fast.r, alpha=fast.alpha0, dropout=fast.lora_dropout, adapter_dtype=ex.gate_A.dtype)

        def expert(e):
            projs = []
            for name in ("gate", "up", "down"):
                lin = to_gal(copy.deepcopy(getattr(fast, f"{name}_proj")), cfg)
                with torch.no_grad():
                    for part in ("A", "B", "gal"):
                        getattr(lin, "gal" if part == "gal" else f"lora_{part}").copy_(
                            getattr(ex, f"{name}_{part}")[e])
                projs.append(lin)
            return _ExpertFFN(*projs)

        self.experts = nn.ModuleList(expert(e) for e in range(self.E))
        self.shared_experts = expert(self.E)
        self.train(fast.training)

    def forward(self, x):
        shape = x.shape
        h = x.reshape(-1, shape[-1])
        probs, topw, topi = _route(h, self.router.weight, self.top_k)
        self.aux_loss, self.counts = _balance(probs, topi, self.E)
        y = self.shared_experts(h)
        for e, expert in enumerate(self.experts):
            tok, slot = torch.where(topi == e)
            if tok.numel():
                y = y.index_add(0, tok, (topw[tok, slot, None] * expert(h[tok])).to(y.dtype))
        return y.view(shape)


def moge_layers(model) -> dict:
    return {n: m for n, m in model.named_modules() if isinstance(m, (MoGEFFN, ReferenceMoGE))}


def aux_loss(model) -> torch.Tensor:
    """Sum of the MoGE layers' balance losses from the last forward (0 if there are none)."""
    losses = [m.aux_loss for m in moge_layers(model).values() if m.aux_loss is not None]
    return torch.stack(losses).sum() if losses else torch.zeros(())


def router_stats(model) -> dict:
    """{layer name: tokens per routed expert} of the last forward (a host sync: call when logging)."""
    return {n: m.counts.long().tolist() for n, m in moge_layers(model).items() if m.counts is not None}


# ----------------------------------------------------------------------------- attach, select, save

def attach_adapters(model, cfg: MoGEConfig = None):
    """Freeze everything, then add GAL to q/k/v/o of every layer and to gate/up/down of the dense FFNs,
    and (recipe moge) swap the FFN of `cfg.moe_layer_ids` for a MoGEFFN around the same base weights.
    Works on meta-device models. Returns the model."""
    cfg = cfg or MoGEConfig()
    for p in model.parameters():
        p.requires_grad_(False)
    layers = model.model.layers
    moe = set(cfg.moe_layer_ids(len(layers)))
    assert moe <= set(range(len(layers))), f"moe_layers {sorted(moe)} outside 0..{len(layers) - 1}"
    for i, layer in enumerate(layers):
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            to_gal(getattr(layer.self_attn, name), cfg)
        if i in moe:
            layer.mlp = MoGEFFN(layer.mlp, cfg).train(layer.training)
        else:
            for name in ("gate_proj", "up_proj", "down_proj"):
                to_gal(getattr(layer.mlp, name), cfg)
    for n, p in model.named_parameters():
        p.requires_grad_(is_trainable(n))
    model.moge_config = cfg
    return model


def is_trainable(name: str) -> bool:
    return TRAINABLE.search(name) is not None


def trainable_parameters(model) -> dict:
    """{name: parameter} of every trainable tensor: GAL/LoRA adapters, routers, projector."""
    return {n: p for n, p in model.named_parameters() if is_trainable(n)}


def adapter_state_dict(model) -> dict:
    return {n: p.detach() for n, p in trainable_parameters(model).items()}


def save_adapters(model, path: str, metadata: dict | None = None) -> None:
    """Adapter-only safetensors (every trainable tensor), written to a temp file and renamed."""
    tmp = f"{path}.tmp{os.getpid()}"
    save_file({n: t.contiguous().cpu() for n, t in adapter_state_dict(model).items()}, tmp, metadata=metadata)
    os.replace(tmp, path)


def load_adapters(model, src) -> None:
    """Load an adapter file (path or dict) strictly: the error names every missing, unexpected or
    mis-shaped tensor. Values are cast to each parameter's dtype and device."""
    if isinstance(src, (str, os.PathLike)):
        src = load_file(src)
    own = trainable_parameters(model)
    missing, unexpected = sorted(set(own) - set(src)), sorted(set(src) - set(own))
    shapes = [f"{n}: file {tuple(src[n].shape)} vs model {tuple(own[n].shape)}"
              for n in sorted(set(own) & set(src)) if src[n].shape != own[n].shape]
    if missing or unexpected or shapes:
        msg = [f"{what} ({len(v)}): {', '.join(v[:20])}" for what, v in
               (("missing tensors", missing), ("unexpected tensors", unexpected), ("mis-shaped tensors", shapes)) if v]
        raise ValueError("adapter file does not match the model:\n  " + "\n  ".join(msg))
    with torch.no_grad():
        for n, p in own.items():
            p.copy_(src[n])


def cast_low_rank(model, dtype) -> int:
    """Inference: store the low-rank A/B matrices (dense and experts) in `dtype`, e.g. bf16 on a GPU.
    GALLinear and the Triton expert kernels cast A/B to the activation dtype before their matmuls, so
    for them this is the same arithmetic minus those casts (at each decode step, inside CUDA graphs
    too); the torch expert path (CPU) computes in fp32 from A/B, and then sees bf16-rounded values.
    Routers and GAL scalars stay fp32 (the router runs in fp32). Returns the number of tensors cast."""
    n = 0
    for name, p in trainable_parameters(model).items():
        if re.search(r"(lora_[AB]|_[AB])$", name) and p.dtype != dtype:
            p.data = p.data.to(dtype)
            n += 1
    return n


def merge_adapters(model) -> int:
    """Fold every dense GAL/LoRA adapter into its base weight (GALLinear -> nn.Linear; names are then
    the base model's). MoGE layers are routed and stay as they are. Returns the number merged."""
    gal = [m for m in model.modules() if isinstance(m, GALLinear)]
    for m in gal:
        m.merge()
    return len(gal)


# ----------------------------------------------------------------------------- parameter count

def parameter_count(hf_config: dict = LLAMA_3_2_1B, cfg: MoGEConfig = None) -> dict:
    """Parameters of our MoGE model and of the release's (deep-copied experts), built on the meta
    device from an HF config dict (no weights needed). Tied embeddings count once."""
    cfg = cfg or MoGEConfig()
    with torch.device("meta"):
        model = CausalLM(ModelConfig.from_hf(hf_config))
    count = lambda: sum(p.numel() for p in model.parameters())  # noqa: E731
    base = count()
    attach_adapters(model, cfg)
    ours, trainable = count(), sum(p.numel() for p in trainable_parameters(model).values())
    for layer in model.model.layers:
        if isinstance(layer.mlp, MoGEFFN):
            layer.mlp = ReferenceMoGE(layer.mlp)
    release = count()  # the release's adapters are the same tensors, so release - trainable is its base
    return dict(base=base, trainable=trainable, ours=ours, release=release, release_base=release - trainable,
                ratio=ours / release, base_ratio=base / (release - trainable))
