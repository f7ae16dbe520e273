"""Foreign checkpoints -> ours, one subcommand per format, and ours out to the formats others load (export.py).
Nothing here downloads; `.bin` files are read with torch.load(weights_only=True) only, and any other pickle or
file type is an error.

    python convert.py release CKPT_DIR OUT_DIR --model PATH [--gin gin.safetensors] [--projector mm_projector.bin]
    python convert.py projector mm_projector.bin OUT_DIR --model PATH [--gin gin.safetensors]
    python convert.py moleculestm moleculestm.pth gin.safetensors
    python convert.py gguf FILE.gguf OUT_DIR
    python convert.py export-peft OUT DEST          # a lora / rslora / gal run -> a peft LoRA adapter folder
    python convert.py export-merged OUT DEST        # the dense adapters merged: a plain HF checkpoint

release: the authors' stage-2 checkpoint (`checkpoint-197148`: a peft adapter folder with
adapter_model.safetensors (or .bin), adapter_config.json, config.json, and non_lora_trainables.bin with
the routers and the projector) -> OUT_DIR/adapters.safetensors + meta.json, a checkpoint folder that
`eval.py --ckpt OUT_DIR` loads strictly and `train.py --init-from OUT_DIR` can start from. Key names, read
from the release (1789336421/Omni-Mol: utils.py seperate_save_lora, peft/.../lora/layer.py,
model/modeling_llava.py; model/modeling_moe.py from WillDreamer/OmniMol), with P = base_model.model. and
L = P + language_model.model.layers.{i}:

    release (peft drops the adapter name `.default` when it saves)      ours
    L.self_attn.q_proj.lora_A.weight (r, d_in)                          model.layers.{i}.self_attn.q_proj.lora_A
    L.self_attn.q_proj.lora_B.weight (d_out, r)                         ... .lora_B
    L.self_attn.q_proj.lora_learnable_alpha.weights (3,) [alpha,beta,p] ... .gal          (also k/v/o, dense mlp)
    L.mlp.experts.{e}.gate_proj.lora_A.weight, e < E                    model.layers.{i}.mlp.experts.gate_A[e]
    L.mlp.shared_experts.gate_proj.lora_A.weight                        ... .gate_A[E]    (B, gal; up, down)
    L.mlp.moe_gate.weight (E, d)              [non_lora_trainables]     model.layers.{i}.mlp.router.weight
    P.mm_projector.weight.weight / .bias      [non_lora_trainables]     mm_projector.weight / .bias

The release's routed and shared experts are deep copies of the layer's base FFN, frozen; the release saves
only trainable tensors, so those copies are not in its checkpoint. If a file does hold base weights (any
`base_layer` / expert-copy / backbone tensor), each one must equal the --model base exactly, or the
conversion stops. The MoE layers, E, r come from the tensors; lora_alpha, dropout and rsLoRA from
adapter_config.json; top-k from config.json's moe_config (else --top-k, default the release's 2).

projector: the release's stage-1 `mm_projector.bin` (keys mm_projector.weight.weight / .bias) -> a stage-1
checkpoint folder (adapters.safetensors with mm_projector.weight / .bias, meta.json with moge null):
`train.py --init-from OUT_DIR` starts stage 2 from it, `release --projector` fills a stage-2 checkpoint
that lacks one, and eval loads it as a stage-1 model.

moleculestm: MoleculeSTM's GIN .pth -> safetensors with the same key names (molecule.load_gin reads it).
gguf: a llama GGUF -> HF folder (smollm.convert_gguf, which also builds the embedded default).
"""
import argparse
import dataclasses
import json
import math
import os
import pickle  # only for its exception type: torch.load(weights_only=True) raises UnpicklingError
import re
import sys

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import checkpoint
import export
import model as M
import smollm
import moge
import molecule
from tokenizer import TEMPLATES

PEFT = "base_model.model."          # PeftModel -> LoraModel -> GraphLlavaForConditionalGeneration
LM = "language_model."              # GraphLlava's LlamaForCausalLM; ours is the CausalLM itself
LORA_SUFFIX = {"lora_A": "lora_A.weight", "lora_B": "lora_B.weight", "gal": "lora_learnable_alpha.weights",
               "A": "lora_A.weight", "B": "lora_B.weight"}
RELEASE_TOP_K = 2                   # scripts/train.sh --top_k_experts 2
RELEASE_BOS = 2                     # WillDreamer/Omni-Mol data_pipe/chat_template.py:31-45 keeps both BOS tokens
# --mol-format of a converted checkpoint: how its training prompts wrote molecules (the checkpoint does not say)
MOL_FORMAT_EVIDENCE = {
    "selfies": "the official release (1789336421/Omni-Mol) has no SMILES switch: arguments.py DataArguments holds only "
               "add_selfies=True, scripts/train.sh passes none, and its prompts name SELFIES "
               "(data_pipe/dataset_profiles.py:218 'The compound SELFIES sequence is: '); the paper reports SELFIES",
    "smiles": "the dev tree's 16-task training script (WillDreamer/Omni-Mol scripts/mixtrain_auto_eval.sh:78) passes "
              "--if_smiles True (its W&B project is named _SMILES_, :22), as does WillDreamer/OmniMol "
              "scripts/mixtrain-moelora-smiles.sh (last line): runs trained on SMILES prompts",
}


class ConversionError(ValueError):
    """A foreign checkpoint that cannot be turned into ours exactly (the message names what and why)."""


# ----------------------------------------------------------------------------- reading files

def read_tensors(path: str) -> dict:
    """{name: tensor} from .safetensors, or from .bin with torch.load(weights_only=True); else an error."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found")
    if path.endswith(".safetensors"):
        try:
            sd = load_file(path)
        except (SafetensorError, OSError, ValueError) as e:
            raise ConversionError(f"cannot read {path}: {e}") from None
    elif path.endswith(".bin"):
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, ValueError) as e:
            raise ConversionError(f"cannot read {path} with torch.load(weights_only=True) (only plain tensor "
                                  f"dicts are accepted; nothing else is unpickled): {checkpoint.refused(e)}") from None
    else:
        raise ConversionError(f"{path}: unknown file type (expected .safetensors or .bin)")
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise ConversionError(f"{path} does not hold a flat {{name: tensor}} state dict")
    return sd


def _read_json(path):
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _listing(what, items, n=20):
    return f"{what} ({len(items)}): " + ", ".join(items[:n]) + (" ..." if len(items) > n else "")


# ----------------------------------------------------------------------------- the release's layout

def release_layout(model) -> dict:
    """{release key: (our tensor name, stacked index or None, expected shape)} for every trainable tensor
    of our model (after molecule.attach_molecule and moge.attach_adapters)."""
    out = {}
    for name, p in moge.trainable_parameters(model).items():
        mod, leaf = name.rsplit(".", 1)
        if name.startswith("mm_projector."):            # the release's NaiveLinear holds its nn.Linear as `weight`
            out[f"{PEFT}mm_projector.weight.{leaf}"] = (name, None, tuple(p.shape))
        elif mod.endswith(".mlp.router"):
            out[f"{PEFT}{LM}{mod[:-len('router')]}moe_gate.weight"] = (name, None, tuple(p.shape))
        elif mod.endswith(".mlp.experts"):               # stacked (E+1, ...): routed experts, then the shared one
            proj, part = leaf.split("_")
            n = p.shape[0]
            for e in range(n):
                copy = f"experts.{e}" if e < n - 1 else "shared_experts"
                key = f"{PEFT}{LM}{mod[:-len('experts')]}{copy}.{proj}_proj.{LORA_SUFFIX[part]}"
                out[key] = (name, e, tuple(p.shape[1:]))
        elif leaf in ("lora_A", "lora_B", "gal"):        # a GALLinear
            out[f"{PEFT}{LM}{mod}.{LORA_SUFFIX[leaf]}"] = (name, None, tuple(p.shape))
        else:
            raise AssertionError(f"no release name for our trainable tensor {name}")
    return out


def _canonical(key: str) -> str:
    key = re.sub(r"\.default(?=\.)", "", key)          # peft's in-memory adapter name (dropped when it saves)
    return key if key.startswith(PEFT) else PEFT + key


def _base_name(key: str) -> str | None:
    """Our base-model name of a frozen tensor the release might hold (a peft base_layer, an expert copy)."""
    rest = key[len(PEFT):]
    if not rest.startswith(LM):
        return None
    rest = rest[len(LM):].replace(".base_layer.", ".")
    return re.sub(r"\.mlp\.(experts\.\d+|shared_experts)\.", ".mlp.", rest)


def infer_config(tensors: dict, adapter_cfg: dict | None, llava_cfg: dict | None, top_k=None, lora_alpha=None):
    """MoGEConfig from the tensors (r, MoE layers, E) and the two JSON configs; refuses what ours cannot
    represent. Returns (cfg, notes)."""
    ac, lc = adapter_cfg or {}, llava_cfg or {}
    moe_cfg = lc.get("moe_config") or {}
    notes = []
    ranks = {k: t.shape[0] for k, t in tensors.items() if k.endswith("lora_A.weight")}
    if not ranks:
        raise ConversionError("no `lora_A.weight` tensor: this is not a peft LoRA checkpoint of the release")
    if len(set(ranks.values())) > 1:
        raise ConversionError(f"LoRA ranks differ across modules ({sorted(set(ranks.values()))}; peft rank_pattern): "
                              "ours has one rank")
    r = next(iter(ranks.values()))
    if "r" in ac and ac["r"] != r:
        raise ConversionError(f"adapter_config.json says r={ac['r']} but the tensors have rank {r}")
    if not any(k.endswith("lora_learnable_alpha.weights") for k in tensors):
        raise ConversionError("no `lora_learnable_alpha.weights` (GAL) tensor: a plain-LoRA release run; the "
                              "converter takes the published GAL recipe only")
    for flag in ("use_dora", "lora_bias"):
        if ac.get(flag):
            raise ConversionError(f"adapter_config.json has {flag}=true: not representable")
    for pat in ("rank_pattern", "alpha_pattern"):
        if ac.get(pat):
            raise ConversionError(f"adapter_config.json has a {pat} ({ac[pat]}): ours has one rank and one alpha")
    if lora_alpha is not None and ac.get("lora_alpha") not in (None, lora_alpha):
        raise ConversionError(f"--lora-alpha {lora_alpha} but adapter_config.json says {ac['lora_alpha']}")
    alpha = ac.get("lora_alpha", lora_alpha)
    if alpha is None:
        raise ConversionError("lora_alpha unknown: no adapter_config.json beside the adapters; pass --lora-alpha "
                              "(the release trains with 16)")
    scaling = alpha / (math.sqrt(r) if ac.get("use_rslora") else r)
    if scaling == 1:  # release layer.py Linear.forward tests `scaling == 1` before `use_learnable_alpha`
        raise ConversionError(f"lora_alpha {alpha} with r {r} gives peft scaling 1, and the release's peft then "
                              "skips GAL (gamma = 1 exactly); ours always applies GAL: not representable")
    moe = {}
    pat = re.compile(r"layers\.(\d+)\.mlp\.(?:experts\.(\d+)|shared_experts|moe_gate)\.")
    for k, t in tensors.items():
        m = pat.search(k)
        if m:
            n = moe.setdefault(int(m.group(1)), set())
            if m.group(2) is not None:
                n.add(int(m.group(2)))
            elif k.endswith("moe_gate.weight"):
                n.update(range(t.shape[0]))
    if lc.get("norm_topk_prob"):
        raise ConversionError("config.json has norm_topk_prob=true (renormalised top-k weights); ours does not "
                              "renormalise")
    if lc.get("projector_type", "naive_linear") != "naive_linear":
        raise ConversionError(f"config.json projector_type {lc['projector_type']!r}: ours is the single linear "
                              "projector")
    dropout = ac.get("lora_dropout", 0.05)
    aux = moe_cfg.get("router_aux_loss_coef") or 0.01
    if not moe:
        return moge.MoGEConfig(recipe="gal", r=r, alpha=alpha, dropout=dropout), notes
    sizes = {layer: max(ids) + 1 for layer, ids in moe.items()}
    if len(set(sizes.values())) > 1:
        raise ConversionError(f"MoE layers have different numbers of experts {sizes}: ours has one n_experts")
    E = next(iter(sizes.values()))
    if moe_cfg.get("moe_layers_idx") is not None and sorted(moe_cfg["moe_layers_idx"]) != sorted(moe):
        raise ConversionError(f"config.json moe_layers_idx {moe_cfg['moe_layers_idx']} but the tensors have MoE "
                              f"layers {sorted(moe)}")
    if top_k is None:
        top_k = moe_cfg.get("top_k_experts")
        notes.append(f"top-k {top_k} from config.json" if top_k else f"top-k {RELEASE_TOP_K}: not in the checkpoint, "
                     "the release's scripts/train.sh value (override with --top-k)")
        top_k = top_k or RELEASE_TOP_K
    if not 1 <= top_k <= E:
        raise ConversionError(f"top-k {top_k} with {E} experts")
    return moge.MoGEConfig(recipe="moge", r=r, alpha=alpha, dropout=dropout, n_experts=E, top_k=top_k,
                           aux_coef=aux, moe_layers=tuple(sorted(moe))), notes


def _check_text_config(model, llava_cfg):
    tc = (llava_cfg or {}).get("text_config") or {}
    ours = model.config.to_hf()
    diff = [f"{k}: checkpoint {tc[k]} vs --model {ours.get(k)}" for k in
            ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
             "vocab_size") if k in tc and tc[k] != ours.get(k)]
    if diff:
        raise ConversionError(f"the checkpoint was trained on {tc.get('_name_or_path', 'another base model')}, "
                              "not on --model: " + "; ".join(diff))


def map_release(model, tensors: dict, source: str) -> tuple[dict, int]:
    """Release tensors (canonical keys) -> our trainable state dict, strictly. Frozen base weights found in
    the file are checked against `model` and dropped. Returns (ours, number of base tensors checked)."""
    layout = release_layout(model)
    base = dict(model.named_parameters())
    if model.config.tie_word_embeddings:
        base["lm_head.weight"] = model.model.embed_tokens.weight
    unexpected, shapes, differ, checked = [], [], [], 0
    for k, t in tensors.items():
        if k in layout:
            if tuple(t.shape) != layout[k][2]:
                shapes.append(f"{k}: file {tuple(t.shape)} vs expected {layout[k][2]}")
            continue
        b = _base_name(k)
        if b in base and not moge.is_trainable(b):
            ref = base[b].detach()
            if tuple(t.shape) != tuple(ref.shape):
                shapes.append(f"{k}: file {tuple(t.shape)} vs base {b} {tuple(ref.shape)}")
            elif not torch.equal(t, ref.to(t.dtype)):
                d = (t.float() - ref.float()).abs().max().item()
                differ.append(f"{k} vs base {b} (max |diff| {d:.3g})")
            checked += 1
            continue
        unexpected.append(k)
    missing = sorted(set(layout) - set(tensors))
    if missing or unexpected or shapes:
        msg = [_listing(w, v) for w, v in (("missing tensors", missing), ("unexpected tensors", sorted(unexpected)),
                                           ("mis-shaped tensors", shapes)) if v]
        if any(".mm_projector.w1." in k or ".mm_projector.w2." in k for k in unexpected):
            msg.append("hint: mm_projector.w1/w2 is the release's two-layer 'mlp' projector; ours is one linear")
        if any(".mm_projector." in k for k in missing):
            msg.append("hint: no projector in the checkpoint: pass the stage-1 one with --projector mm_projector.bin")
        raise ConversionError(f"{source} does not match the release layout for this base model "
                              f"(expected {len(layout)} tensors):\n  " + "\n  ".join(msg))
    if differ:
        raise ConversionError(f"{source}: frozen base weights differ from --model's (the release's experts are "
                              "frozen copies of the base FFN, so this checkpoint was trained on another base "
                              "model):\n  " + "\n  ".join(differ[:20]))
    bad = [k for k in layout if not torch.isfinite(tensors[k]).all()]
    if bad:
        raise ConversionError(f"{source}: non-finite values in {', '.join(bad[:20])}")
    ours, stacks = {}, {}
    for k, (name, e, _) in layout.items():
        t = tensors[k].float()                           # bf16 or fp32 -> our fp32 masters (exact)
        if e is None:
            ours[name] = t
        else:
            stacks.setdefault(name, {})[e] = t
    for name, parts in stacks.items():
        ours[name] = torch.stack([parts[e] for e in range(len(parts))])
    return ours, checked


def read_projector(path: str) -> dict:
    """A stage-1 mm_projector.bin -> {release key: tensor} (canonical P.mm_projector.weight.weight / .bias).
    Like the release's load_projector, anything before `mm_projector.` is ignored."""
    sd = read_tensors(path)
    out = {PEFT + "mm_projector." + k.split("mm_projector.", 1)[1]: v for k, v in sd.items() if "mm_projector." in k}
    want = {f"{PEFT}mm_projector.weight.weight", f"{PEFT}mm_projector.weight.bias"}
    if set(out) != want or len(sd) != 2:
        hint = " (w1/w2: the two-layer 'mlp' projector; ours is one linear)" if any(".w1." in k for k in sd) else ""
        raise ConversionError(f"{path}: expected exactly mm_projector.weight.weight and mm_projector.weight.bias, "
                              f"found {sorted(sd)}{hint}")
    return out


# ----------------------------------------------------------------------------- writing ours

def _our_model(model_path, gin, cfg, llava_cfg=None):
    model, tok = M.load_model(model_path, dtype=torch.float32)
    model.chat_template = tok.template  # _meta: the BOS count applies to templates that have a BOS
    _check_text_config(model, llava_cfg)
    if cfg is not None and cfg.recipe == "moge" and max(cfg.moe_layers) >= model.config.num_hidden_layers:
        raise ConversionError(f"MoE layers {list(cfg.moe_layers)} but --model has {model.config.num_hidden_layers} "
                              "layers")
    molecule.attach_molecule(model, gin_path=gin)
    if cfg is not None:
        moge.attach_adapters(model, cfg)
    else:
        model.requires_grad_(False)
    return model.eval()


def _meta(model, model_path, gin, cfg, stage, step, source, mol_format=None):
    moge_meta = None if cfg is None else {k: v for k, v in dataclasses.asdict(cfg).items() if k != "adapter_dtype"}
    # the release's Llama-3 sequences start with two <|begin_of_text|> (tokenizer.Tokenizer.set_bos); eval prompts
    # the same. A ChatML base (the tests' tiny model) has no such token: 1, i.e. none
    bos = RELEASE_BOS if TEMPLATES[getattr(model, "chat_template", "llama3")][2] else 1
    args = {"model": model_path, "gin": gin, "stage": stage, "bos": bos}
    if mol_format is not None:
        args["mol_format"] = mol_format
    if cfg is not None:
        args.update(recipe=cfg.recipe, lora_r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                    aux_coef=cfg.aux_coef)
    return json.loads(json.dumps({"step": step, "args": args, "base_model": getattr(model, "name_or_path", model_path),
            "model_config": model.config.to_hf(), "gin": model.gin_source, "stage": stage, "moge": moge_meta,
            "converted_from": source}))  # as written: JSON types (lists, not tuples)


def _adapter_file(ckpt_dir):
    for name in ("adapter_model.safetensors", "adapter_model.bin"):
        if os.path.isfile(os.path.join(ckpt_dir, name)):
            return os.path.join(ckpt_dir, name)
    raise FileNotFoundError(f"{ckpt_dir}: no adapter_model.safetensors or adapter_model.bin (a peft adapter folder)")


def convert_release(ckpt_dir, out_dir, model_path="default", gin=None, projector=None, top_k=None,
                    lora_alpha=None, log=print, mol_format="selfies") -> dict:
    """The release's stage-2 checkpoint folder -> our checkpoint folder. Returns the written meta.
    mol_format (meta.json args.mol_format, read by eval.py): how the run's prompts wrote molecules
    (MOL_FORMAT_EVIDENCE); the CLI requires it."""
    if mol_format not in MOL_FORMAT_EVIDENCE:
        raise ValueError(f"mol_format must be one of {sorted(MOL_FORMAT_EVIDENCE)}, got {mol_format!r}")
    if not os.path.isdir(ckpt_dir):
        raise FileNotFoundError(f"{ckpt_dir} is not a folder (expected the release's checkpoint-NNNNNN/)")
    files = [_adapter_file(ckpt_dir)]
    nl = os.path.join(ckpt_dir, "non_lora_trainables.bin")
    if not os.path.isfile(nl):
        raise FileNotFoundError(f"{ckpt_dir}: no non_lora_trainables.bin (routers and projector)")
    files.append(nl)
    tensors = {}
    for path in files:
        for k, v in read_tensors(path).items():
            c = _canonical(k)
            if c in tensors:
                raise ConversionError(f"{k} appears twice (in {os.path.basename(path)} and an earlier file)")
            tensors[c] = v
    if projector is not None:
        proj = read_projector(projector)
        both = sorted(set(proj) & set(tensors))
        if both:
            raise ConversionError(f"--projector given but {ckpt_dir} already holds {', '.join(both)} (the stage-2 "
                                  "projector); drop --projector to use it")
        tensors.update(proj)
        files.append(projector)
    adapter_cfg = _read_json(os.path.join(ckpt_dir, "adapter_config.json"))
    llava_cfg = _read_json(os.path.join(ckpt_dir, "config.json"))
    cfg, notes = infer_config(tensors, adapter_cfg, llava_cfg, top_k, lora_alpha)
    model = _our_model(model_path, gin, cfg, llava_cfg)
    ours, checked = map_release(model, tensors, ckpt_dir)
    moge.load_adapters(model, ours)                      # strict again, in our names
    m = re.search(r"checkpoint-(\d+)", os.path.basename(os.path.normpath(ckpt_dir)))
    base_note = (f"{checked} frozen base tensors in the checkpoint, all equal to --model's" if checked else
                 "the checkpoint holds no frozen base weights (the release saves trainable tensors only); its "
                 "expert copies are taken to be the base FFN of --model, as the release creates them")
    source = {"format": "Omni-Mol release stage 2 (peft adapter + non_lora_trainables)",
              "path": os.path.abspath(ckpt_dir), "files": [os.path.basename(f) for f in files],
              "base_weights_checked": checked, "notes": notes + [base_note]}
    meta = _meta(model, model_path, gin, cfg, 2, int(m.group(1)) if m else None, source, mol_format)
    checkpoint.write_converted(model, out_dir, meta)
    moe = f"MoE layers {list(cfg.moe_layers)}, {cfg.n_experts} experts + 1 shared, top-{cfg.top_k}" \
        if cfg.recipe == "moge" else "no MoE layers (recipe gal)"
    log(f"wrote {out_dir}: {len(ours)} tensors from {len(tensors)} release tensors; r {cfg.r}, alpha {cfg.alpha}, "
        f"{moe}; prompts: {mol_format}, bos {meta['args']['bos']} (meta.json args, read by eval.py)")
    for n in notes + [base_note]:
        log(f"note: {n}")
    if gin is None:
        log("warning: no --gin: the graph tower is the seeded random GIN, not MoleculeSTM; convert the release's "
            "moleculestm.pth with `python convert.py moleculestm` and pass --gin")
    return meta


def convert_projector(src, out_dir, model_path="default", gin=None, log=print) -> dict:
    """The release's stage-1 mm_projector.bin -> a stage-1 checkpoint folder of ours."""
    proj = read_projector(src)
    model = _our_model(model_path, gin, None)
    want = tuple(model.mm_projector.weight.shape)
    w, b = proj[f"{PEFT}mm_projector.weight.weight"], proj[f"{PEFT}mm_projector.weight.bias"]
    if tuple(w.shape) != want or tuple(b.shape) != want[:1]:
        raise ConversionError(f"{src}: projector {tuple(w.shape)} / {tuple(b.shape)} but --model {model_path!r} needs "
                              f"{want} / {want[:1]} (hidden size {want[0]}; pass the release's base model)")
    moge.load_adapters(model, {"mm_projector.weight": w.float(), "mm_projector.bias": b.float()})
    meta = _meta(model, model_path, gin, None, 1, None, {"format": "Omni-Mol release stage 1 (mm_projector.bin)",
                                                        "path": os.path.abspath(src)})
    checkpoint.write_converted(model, out_dir, meta)
    log(f"wrote {out_dir}: mm_projector {want}, stage 1 (train.py --init-from {out_dir})")
    return meta


# ----------------------------------------------------------------------------- MoleculeSTM

def convert_moleculestm(src: str, dst: str) -> dict:
    """MoleculeSTM's .pth (a GNN_graphpred state dict, read with weights_only=True) -> safetensors with
    the same key names. Drops `graph_pred_linear.*` (as the release does) and a DDP `module.` prefix;
    everything else must match exactly. Returns the checked state dict."""
    GINError = molecule.GINCheckpointError
    try:
        sd = torch.load(src, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        raise GINError(f"cannot read {src} with torch.load(weights_only=True): {checkpoint.refused(e)}") from None
    if isinstance(sd, dict) and len(sd) == 1 and isinstance(next(iter(sd.values())), dict):
        sd = next(iter(sd.values()))            # {"model": state_dict} / {"state_dict": ...} wrappers
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise GINError(f"{src} does not hold a state dict of tensors")
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    sd = {k: v for k, v in sd.items() if not k.startswith("graph_pred_linear.")}
    if not any(k.startswith("molecule_node_model.") for k in sd) and \
            {"molecule_node_model." + k for k in sd} == set(molecule.gin_expected_shapes()):
        sd = {"molecule_node_model." + k: v for k, v in sd.items()}   # saved from the bare GNN
    molecule.check_gin_state_dict(sd, src)
    sd = {k: v.detach().contiguous() for k, v in sd.items()}
    save_file(sd, dst, metadata={"format": "pt", "source": os.path.basename(src),
                                 "model": "MoleculeSTM GIN (OGB layout), molecule_node_model.*"})
    return sd


# ----------------------------------------------------------------------------- CLI

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("release", help="the release's stage-2 checkpoint folder -> our checkpoint folder")
    r.add_argument("ckpt_dir", help="checkpoint-NNNNNN/: adapter_model.safetensors|.bin, non_lora_trainables.bin, "
                                    "adapter_config.json, config.json")
    r.add_argument("out_dir", help="our checkpoint folder to write (adapters.safetensors + meta.json)")
    r.add_argument("--model", default="default", help="the base LLM the release was trained on "
                                                      "(Llama-3.2-1B-Instruct folder); its frozen FFN is every "
                                                      "expert's base")
    r.add_argument("--gin", default=None, help="MoleculeSTM GIN safetensors (from `convert.py moleculestm`), "
                                               "recorded for eval; default the seeded random GIN")
    r.add_argument("--projector", default=None, help="a stage-1 mm_projector.bin, for a checkpoint without a projector")
    r.add_argument("--top-k", type=int, default=None, help="routed experts per token if config.json lacks "
                                                           f"moe_config.top_k_experts (default {RELEASE_TOP_K})")
    r.add_argument("--lora-alpha", type=float, default=None, help="GAL alpha0 if there is no adapter_config.json")
    r.add_argument("--mol-format", required=True, choices=sorted(MOL_FORMAT_EVIDENCE), help="how the run's prompts "
                   "wrote molecules (the checkpoint does not record it; saved in meta.json, eval.py prompts the same). "
                   + " ".join(f"{k}: {v}." for k, v in MOL_FORMAT_EVIDENCE.items()))
    p = sub.add_parser("projector", help="the release's stage-1 mm_projector.bin -> a stage-1 checkpoint folder")
    p.add_argument("src")
    p.add_argument("out_dir")
    p.add_argument("--model", default="default", help="the base LLM (sets the hidden size and meta.json)")
    p.add_argument("--gin", default=None, help="MoleculeSTM GIN safetensors recorded in meta.json")
    s = sub.add_parser("moleculestm", help="MoleculeSTM .pth -> safetensors (strict key/shape check)")
    s.add_argument("src")
    s.add_argument("dst")
    g = sub.add_parser("gguf", help="a llama GGUF file -> HF folder (safetensors + config.json + tokenizer.json)")
    g.add_argument("src")
    g.add_argument("out_dir")
    for name, what in (("export-peft", "a lora / rslora / gal run -> a peft LoRA adapter folder"),
                       ("export-merged", "a lora / rslora / gal run -> a plain HF checkpoint, adapters merged")):
        e = sub.add_parser(name, help=what + " (+ projector, GIN, README)",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        e.add_argument("out", help="a run folder (its newest checkpoint) or a step folder")
        e.add_argument("dest", help="the folder to write (new or empty)")
        if name == "export-merged":
            e.add_argument("--dtype", default="float32", choices=sorted(export.DTYPES), help="stored weight dtype")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "release":
            convert_release(args.ckpt_dir, args.out_dir, args.model, args.gin, args.projector, args.top_k,
                            args.lora_alpha, mol_format=args.mol_format)
        elif args.cmd == "projector":
            convert_projector(args.src, args.out_dir, args.model, args.gin)
        elif args.cmd == "moleculestm":
            sd = convert_moleculestm(args.src, args.dst)
            n = sum(v.numel() for k, v in sd.items() if "running" not in k and "num_batches" not in k)
            print(f"wrote {args.dst}: {len(sd)} tensors, {n:,} parameters")
        elif args.cmd == "export-peft":
            print(json.dumps(export.export_peft(args.out, args.dest)))
        elif args.cmd == "export-merged":
            print(json.dumps(export.export_merged(args.out, args.dest, args.dtype)))
        else:
            print(smollm.convert_gguf(args.src, args.out_dir))
    except (ValueError, FileNotFoundError) as e:    # ConversionError and GINCheckpointError are ValueErrors
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
