"""Our checkpoints -> the formats other tools load: a peft LoRA adapter folder, or a plain HF checkpoint with
the dense adapters merged. Both leave the graph modality beside the weights (projector, GIN, a README).

    python convert.py export-peft OUT DEST      # DEST/adapter_config.json + adapter_model.safetensors
    python convert.py export-merged OUT DEST    # DEST/config.json + model.safetensors + tokenizer files
    export_peft(out, dest) / export_merged(out, dest, dtype) -> a summary dict

OUT is a run folder (its newest checkpoint) or a step folder (checkpoint.resolve). Recipes lora, rslora and gal
export; moge does not: its routed experts choose per token which low-rank update applies, which neither a
peft LoRA adapter (one fixed update per linear) nor a dense weight can express, so it is refused with that
reason (as is any checkpoint holding an MoE layer). A stage-1 checkpoint (projector only) has no adapters.

Key names (peft drops the adapter name `.default` when it saves; PeftModel.from_pretrained adds it back):

    ours                                   peft
    model.layers.N.self_attn.q_proj.lora_A base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight (r, d_in)
    model.layers.N.self_attn.q_proj.lora_B base_model.model.model.layers.N.self_attn.q_proj.lora_B.weight (d_out, r)
    (also k/v/o_proj and mlp.gate/up/down_proj)

Beside the adapter (or the merged model): mm_projector.safetensors (mm_projector.weight (hidden, 300), .bias),
graph_tower.safetensors (the frozen GIN, MoleculeSTM key names: the converted checkpoint the run used, or the
seeded random init it used), omnimol.json (what the prompts need) and README.md (how to use them).
"""
import contextlib
import json
import os
import shutil

import torch
from safetensors.torch import save_file

import checkpoint
import moge
import molecule
from tokenizer import MOL_PLACEHOLDER, SYSTEM_PROMPT

PEFT_PREFIX = "base_model.model."     # PeftModel -> LoraModel -> the causal LM
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# files of an HF model folder that describe its tokenizer and generation defaults (copied when present)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "tokenizer.model", "chat_template.jinja", "generation_config.json")
ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ExportError(ValueError):
    """A checkpoint that the asked format cannot express, or a destination that is not free."""


# ----------------------------------------------------------------------------- what may be exported

def _checkpoint(out, fmt):
    """-> (step folder, meta, MoGEConfig, adapter tensors), or ExportError saying why fmt cannot hold it."""
    step_dir = checkpoint.resolve(out)
    meta = checkpoint.read_meta(step_dir)
    if meta.get("moge") is None:
        raise ExportError(f"{step_dir} is a stage-1 checkpoint (projector only): it has no adapters to export")
    cfg = moge.MoGEConfig(**meta["moge"])
    sd = checkpoint.read_adapters(step_dir)
    moe = sorted({k.split(".mlp.")[0] for k in sd if ".mlp.router." in k or ".mlp.experts." in k})
    if cfg.recipe == "moge" or moe:
        where = f" (MoE layers: {', '.join(moe)})" if moe else ""
        raise ExportError(
            f"{step_dir} is a MoGE checkpoint (recipe {cfg.recipe}){where}: it cannot be exported as {fmt}. Its "
            "router picks, per token, which experts' low-rank updates apply, and " +
            ("a peft LoRA adapter holds one fixed update per linear layer" if fmt == "a peft adapter" else
             "a merged checkpoint holds one dense weight per linear layer (routed experts are not a dense weight)") +
            ". Train with --recipe gal, lora or rslora to export, or use the checkpoint with this repository.")
    return step_dir, meta, cfg, sd


def _adapted(sd) -> list:
    """The module names carrying a dense adapter (model.layers.N.self_attn.q_proj, ...), sorted."""
    return sorted(k[:-len(".lora_A")] for k in sd if k.endswith(".lora_A"))


@contextlib.contextmanager
def _writing(dest):
    """Yields a temporary sibling folder to write into, renamed to dest when the block ends without error (an
    interrupted export leaves no half-written dest; a failed one removes its temporary folder). ExportError if
    dest exists and is not an empty folder."""
    dest = os.path.abspath(dest)
    if os.path.exists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
        raise ExportError(f"{dest} exists and is not an empty folder: choose a new destination")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = f"{dest}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if os.path.isdir(dest):
        os.rmdir(dest)  # empty, checked above
    os.rename(tmp, dest)


# ----------------------------------------------------------------------------- peft

def gal_folded_B(B, gamma, alpha0: float, r: int) -> torch.Tensor:
    """GAL's learned scale moved into B for peft's fixed scale alpha0 / r:
    ours  W x + gamma B A x,  gamma = clamp(alpha, alpha0 -+ 0.1) / r ** clamp(p, 0.49, 0.51) + clamp(beta, -+0.05)
    peft  W x + (lora_alpha / r) B' A x  with lora_alpha = alpha0, so  B' = B * gamma * r / alpha0
    (computed in fp64, stored in B's dtype)."""
    return (B.double() * (float(gamma) * r / alpha0)).to(B.dtype)


def peft_tensors(sd, cfg) -> dict:
    """Our dense adapter tensors -> peft's names and values (GAL's scale folded into B, see gal_folded_B)."""
    out = {}
    for name in _adapted(sd):
        A, B = sd[f"{name}.lora_A"], sd[f"{name}.lora_B"]
        if cfg.recipe == "gal":
            if f"{name}.gal" not in sd:
                raise ExportError(f"recipe gal but {name}.gal is missing from the checkpoint")
            B = gal_folded_B(B, moge.gal_gamma(sd[f"{name}.gal"], cfg.alpha, cfg.r), cfg.alpha, cfg.r)
        out[f"{PEFT_PREFIX}{name}.lora_A.weight"] = A.contiguous()
        out[f"{PEFT_PREFIX}{name}.lora_B.weight"] = B.contiguous()
    return out


def adapter_config(cfg, targets, base) -> dict:
    """peft's LoraConfig as adapter_config.json: lora_alpha / r (lora, gal folded) or / sqrt(r) (rslora)."""
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base, "revision": None,
            "r": cfg.r, "lora_alpha": cfg.alpha, "lora_dropout": cfg.dropout, "use_rslora": cfg.recipe == "rslora",
            "target_modules": sorted(targets), "bias": "none", "fan_in_fan_out": False, "inference_mode": True,
            "init_lora_weights": True, "modules_to_save": None, "layers_to_transform": None, "use_dora": False}


def export_peft(out, dest) -> dict:
    """A lora / rslora / gal checkpoint -> a peft adapter folder at dest, with the graph modality beside it."""
    step_dir, meta, cfg, sd = _checkpoint(out, "a peft adapter")
    names = _adapted(sd)
    targets = {n.rsplit(".", 1)[-1] for n in names}
    layers = {n.split(".")[2] for n in names}
    if len(names) != len(targets) * len(layers):  # target_modules names each projection in every layer
        raise ExportError(f"{step_dir}: the adapters do not cover {sorted(targets)} in every layer")
    tensors = peft_tensors(sd, cfg)
    base = meta.get("base_model") or meta["args"]["model"]
    with _writing(dest) as tmp:
        save_file(tensors, os.path.join(tmp, "adapter_model.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(tmp, "adapter_config.json"), "w") as f:
            json.dump(adapter_config(cfg, targets, base), f, indent=1)
        info = _side_files(tmp, step_dir, meta, sd, "peft", dest)
    return {"dest": os.path.abspath(dest), "recipe": cfg.recipe, "tensors": len(tensors), **info}


# ----------------------------------------------------------------------------- a merged HF checkpoint

def hf_config(model_config, dtype) -> dict:
    """config.json of a plain HF checkpoint from our ModelConfig."""
    cfg = model_config.to_hf()
    name = str(dtype).removeprefix("torch.")
    return {**cfg, "architectures": [ARCHITECTURES[cfg["model_type"]]], "dtype": name, "torch_dtype": name}


def save_hf(model, dest, tok=None, dtype=torch.float32) -> None:
    """The language model's weights (HF names; no graph tower, no projector, a tied head once) as
    dest/config.json + model.safetensors, and its tokenizer: the base folder's files where it has one, else
    tok's tokenizer.json (the tiny model's)."""
    os.makedirs(dest, exist_ok=True)
    skip = ("graph_tower.", "mm_projector.") + (("lm_head.",) if model.config.tie_word_embeddings else ())
    sd = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items() if not k.startswith(skip)}
    save_file(sd, os.path.join(dest, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(dest, "config.json"), "w") as f:
        json.dump(hf_config(model.config, dtype), f, indent=1)
    src = getattr(model, "name_or_path", None)
    copied = [n for n in TOKENIZER_FILES if src and os.path.isfile(os.path.join(src, n))]
    for n in copied:
        shutil.copyfile(os.path.join(src, n), os.path.join(dest, n))
    if not copied and tok is not None:
        tok.tok.save(os.path.join(dest, "tokenizer.json"))


def export_merged(out, dest, dtype=torch.float32) -> dict:
    """A lora / rslora / gal checkpoint -> a plain HF checkpoint at dest: every dense adapter folded into its
    base weight in fp32 (moge.merge_adapters), then stored in dtype; the graph modality beside it."""
    step_dir, meta, cfg, sd = _checkpoint(out, "a merged checkpoint")
    dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    with _writing(dest) as tmp:
        model, tok, _ = checkpoint.load_model(step_dir, "cpu", torch.float32, log=lambda *a: None)
        n = moge.merge_adapters(model)
        save_hf(model, tmp, tok, dtype)
        info = _side_files(tmp, step_dir, meta, sd, "merged", dest)
    return {"dest": os.path.abspath(dest), "recipe": cfg.recipe, "merged": n, "dtype": str(dtype), **info}


# ----------------------------------------------------------------------------- the graph modality beside it

README = """# Omni-Mol export ({kind}) of {step_dir}

Recipe `{recipe}`, step {step}, base model `{base}`.

{weights}

**Molecules.** These weights alone are text-only: a prompt without a molecule works as is. The tasks that take
a molecule put one token per heavy atom where the prompt holds `{mol}` (followed by the "\\n" token), made by

    atom tokens = mm_projector(GIN(graph))     # (heavy atoms, hidden), spliced in place of the placeholder

- `graph_tower.safetensors`: the frozen GIN (MoleculeSTM's key names `molecule_node_model.*`, 5 layers x 300,
  JK last, eval mode), source: {gin};
- `mm_projector.safetensors`: `mm_projector.weight` (hidden, 300) and `mm_projector.bias`, fp32;
- the graph: rdkit's molecule of the task's graph-source SMILES, node features [atomic number - 1,
  chiral tag], edge features [bond type, bond direction] (both directions of every bond), as the Omni-Mol
  release featurizes it (this repository's `molecule.smiles_to_graph`; `molecule.embed_inputs` splices).

Prompts: the task's release instruction text with molecules written as {mol_format} (`omnimol.json`),
in the base model's chat template with the system prompt in `omnimol.json`.
"""
WEIGHTS = {
    "peft": """`adapter_config.json` + `adapter_model.safetensors` are a peft LoRA adapter on q/k/v/o and the dense
FFN projections of every layer{gal}:

    base = transformers.AutoModelForCausalLM.from_pretrained("{base}")
    model = peft.PeftModel.from_pretrained(base, "{dest}")        # or model.merge_and_unload()""",
    "merged": """`config.json` + `model.safetensors` + the tokenizer files are a plain HF checkpoint with the adapters
merged into the weights:

    model = transformers.AutoModelForCausalLM.from_pretrained("{dest}")""",
}


def _side_files(tmp, step_dir, meta, sd, kind, dest) -> dict:
    """mm_projector.safetensors, graph_tower.safetensors, omnimol.json and README.md into tmp (to become dest)."""
    margs = meta.get("args", {})
    proj = {k: v.contiguous() for k, v in sd.items() if k.startswith("mm_projector.")}
    save_file(proj, os.path.join(tmp, "mm_projector.safetensors"), metadata={"format": "pt"})
    gin_path = margs.get("gin")
    gin = molecule.load_gin(gin_path)  # the converted file the run named, else the seeded init every run uses
    save_file({k: v.contiguous() for k, v in gin.state_dict().items()}, os.path.join(tmp, "graph_tower.safetensors"),
              metadata={"format": "pt"})
    gin_source = os.path.abspath(gin_path) if gin_path else meta.get("gin") or "random init (seed 0)"
    mol_format = margs.get("mol_format", "selfies")
    recipe, base = meta["moge"]["recipe"], meta.get("base_model") or margs.get("model")
    info = {"source": os.path.abspath(step_dir), "step": meta.get("step"), "recipe": recipe, "base_model": base,
            "mol_format": mol_format, "system_prompt": SYSTEM_PROMPT, "mol_placeholder": MOL_PLACEHOLDER,
            "gin": gin_source, "gal_scale": "folded into lora_B" if recipe == "gal" and kind == "peft" else None}
    with open(os.path.join(tmp, "omnimol.json"), "w") as f:
        json.dump(info, f, indent=1)
    gal = (";\nGAL's learned scale gamma of each linear is folded into its lora_B (B' = B * gamma * r / lora_alpha),\n"
           "so peft's fixed lora_alpha / r gives the trained update") if recipe == "gal" else ""
    weights = WEIGHTS[kind].format(base=base, gal=gal, dest=os.path.abspath(dest))
    with open(os.path.join(tmp, "README.md"), "w") as f:
        f.write(README.format(kind=kind, step_dir=os.path.abspath(step_dir), recipe=recipe, step=meta.get("step"),
                              base=base, weights=weights, mol=MOL_PLACEHOLDER, gin=gin_source,
                              mol_format=mol_format.upper()))
    return {"projector": bool(proj), "gin": gin_source}
