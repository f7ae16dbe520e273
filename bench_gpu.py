"""The whole-model GPU benchmark, one prepared script (`python bench.py --gpu`, ~8 min on one H100/H200).

    python bench.py --gpu                        # Llama-3.2-1B shapes, random weights, bf16, r 64
    python bench.py --gpu --dry-run              # the same script end to end with tiny shapes (CPU is fine)
    python bench.py --gpu --out results/gpu      # -> results/gpu.json and results/gpu.md

Llama-3.2-1B's config (M.LLAMA_3_2_1B) with random weights (none ship offline), bf16 base, r 64,
the release's batch of 12 with sample lengths drawn from 150-600 tokens (the demo's range; the last
sixth of each sample supervised, as answers are), the same token ids for every set-up:
  1. training tokens/s, MFU and peak memory per step: ours eager (padded), --pack, --pack --compile;
     HF transformers + peft LoRA r 64 on all linears (padded, SDPA); our model with ReferenceMoGE
     (the release's deep-copied experts, a loop over experts).
  2. eval generation answers/s: ours batched with the static cache + CUDA-graph decode vs HF generate
     one prompt at a time (what the release's eval does), the same weights, greedy, 64 new tokens,
     no stop token (fixed work). HF runs a subset of the prompts (one at a time is slow); the rate
     is per answer either way, and the answers on that subset are compared token for token.
  3. the MoGE FFN layer vs a dense FFN + GAL, fwd+bwd, eager and torch.compile'd.
Each part runs in its own try/except: an error is printed and recorded, the other parts still run,
and results are written after every part (a killed run keeps what it measured).

MFU counts the model FLOPs of a step: 4 N per real token for the frozen base (forward 2N, backward
input gradients 2N; no weight gradients), 6 x the adapter parameters a token uses (frozen-base
LoRA: forward, input and weight gradients; MoGE: the shared + top-k experts only), and causal
attention 6 L d n^2 per sample of n tokens (QK^T and PV: 4 n^2 d per layer forward, halved by the
causal mask; backward twice the forward), over the peak dense bf16 rate of the device (H100/H200
SXM 989 TFLOP/s; unknown devices: no MFU). Padding and the router are not counted as useful work.
On CPU (--dry-run) torch.compile uses the aot_eager backend (Inductor's C++ build takes minutes).
"""
import argparse
import copy
import json
import os
import platform
import sys
import time
import traceback
from datetime import datetime, timezone

import torch
import torch.nn as nn
import torch.nn.functional as F

import model as M
import molecule
import moge
from tokenizer import IGNORE_INDEX
from train import TrainStep

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]  # peft: all linears


def peak_flops(device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def compile_backend(device) -> str:
    return "inductor" if device.type == "cuda" else "aot_eager"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device):
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


# ----------------------------------------------------------------------------- models

def hf_config(dry: bool) -> dict:
    if dry:
        return {**M.TINY, "head_dim": 16}
    return {**M.LLAMA_3_2_1B, "max_position_embeddings": 131072, "bos_token_id": 128000, "eos_token_id": 128009}


def random_ours(cfg: dict, device, dtype, seed=0):
    """Our CausalLM with seeded random weights (normal 0.02, norms 1), built on the meta device."""
    c = M.ModelConfig.from_hf(cfg)
    with torch.device("meta"):
        m = M.CausalLM(c)
    m.to_empty(device=device)
    if c.tie_word_embeddings:
        m.lm_head.weight = m.model.embed_tokens.weight
    g = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.02, generator=g) if p.dim() > 1 else p.fill_(1.0)
    m.inv_freq = M.rope_inv_freq(c)
    return m.to(dtype)


def attach(m, recipe="moge", r=64, reference=False):
    molecule.attach_molecule(m)
    moge.attach_adapters(m, moge.MoGEConfig(recipe=recipe, r=r))
    dev = m.lm_head.weight.device
    with torch.no_grad():  # B is zero at init: give it values so nothing is timed on zeros
        for n, p in moge.trainable_parameters(m).items():
            if n.endswith("_B"):
                p.normal_(0, 0.01)
    if reference:  # the release's layer: deep-copied experts, a loop over experts
        for layer in m.model.layers:
            if isinstance(layer.mlp, moge.MoGEFFN):
                layer.mlp = moge.ReferenceMoGE(layer.mlp).to(dev)
    return m.to(dev)


def hf_model(cfg: dict, device, dtype):
    import transformers  # optional (requirements-dev.txt): only the transformers set-ups need it
    keep = {k: v for k, v in cfg.items() if k not in ("model_type", "extra")}
    with torch.device(device):
        m = transformers.LlamaForCausalLM(transformers.LlamaConfig(**keep, attn_implementation="sdpa"))
    return m.to(dtype)


def count_flops(cfg: dict, lengths, n_base: int, n_adapter_per_token: float) -> float:
    """Model FLOPs of one training step over samples of the given lengths (see the module docstring)."""
    L, d = cfg["num_hidden_layers"], cfg["hidden_size"]
    tokens = sum(lengths)
    attn = sum(6 * L * d * n * n for n in lengths)
    return 4 * n_base * tokens + 6 * n_adapter_per_token * tokens + attn


def adapter_params_per_token(m) -> float:
    """Adapter parameters one token uses: dense GAL/LoRA all; a MoGE layer's stacked (E+1) experts
    (k + 1) / (E + 1) of theirs; ReferenceMoGE's routed experts k / E, its shared expert all."""
    n = 0.0
    for name, p in moge.trainable_parameters(m).items():
        if name.startswith("mm_projector") or not p.requires_grad:  # ReferenceMoGE's frozen base copies
            continue
        if ".mlp.experts." in name:
            layer = m.get_submodule(name.split(".mlp.experts.")[0] + ".mlp")
            if isinstance(layer, moge.ReferenceMoGE):
                frac = layer.top_k / layer.E
            else:
                frac = (layer.top_k + 1) / (layer.E + 1)
            n += p.numel() * frac
        else:
            n += p.numel()
    return n


# ----------------------------------------------------------------------------- data

def make_batches(n_batches, batch, lo, hi, vocab, seed=0):
    """Random token ids with lengths uniform in [lo, hi]; labels: the last sixth (answers), else -100."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        lens = torch.randint(lo, hi + 1, (batch,), generator=g).tolist()
        ids = [torch.randint(3, vocab, (n,), generator=g).tolist() for n in lens]
        labels = [[IGNORE_INDEX] * (n - n // 6) + x[n - n // 6:] for n, x in zip(lens, ids)]
        out.append((ids, labels, lens))
    return out


def padded(ids, labels, device):
    L = max(map(len, ids))
    x = torch.tensor([s + [0] * (L - len(s)) for s in ids], device=device)
    am = torch.tensor([[1] * len(s) + [0] * (L - len(s)) for s in ids], device=device)
    y = torch.tensor([s + [IGNORE_INDEX] * (L - len(s)) for s in labels], device=device)
    return x, am, y


# ----------------------------------------------------------------------------- 1. training

def train_setup(name, args, device, cfg, batches):
    """-> (step function taking a batch, trainable count, adapter params per token, base param count)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if name.startswith("transformers"):
        import peft  # optional (requirements-dev.txt): only the transformers set-up needs it
        m = hf_model(cfg, device, dtype)
        n_base = sum(p.numel() for p in m.parameters())
        lcfg = peft.LoraConfig(r=args.r, lora_alpha=16, lora_dropout=0.05, target_modules=TARGETS,
                               task_type="CAUSAL_LM")
        m = peft.get_peft_model(m, lcfg).train()
        params = [p for p in m.parameters() if p.requires_grad]
        n_ad = sum(p.numel() for p in params)

        def loss_fn(ids, labels):
            x, am, y = padded(ids, labels, device)
            return m(input_ids=x, attention_mask=am, labels=y).loss
    else:
        m = random_ours(cfg, device, dtype)
        n_base = sum(p.numel() for p in m.parameters())
        m = attach(m, r=args.r, reference="ReferenceMoGE" in name)
        if "compile" in name:
            for layer in m.model.layers:
                layer.compile(backend=compile_backend(device))
        step = TrainStep(m, pack_len=args.max_len if "pack" in name else 0).train()
        params = [p for p in m.parameters() if p.requires_grad]
        n_ad = adapter_params_per_token(m)

        def loss_fn(ids, labels):
            ce, aux, _ = step(ids, labels, [None] * len(ids))
            n = sum(sum(t != -100 for t in lab[1:]) for lab in labels)
            return ce.sum() / n + 0.01 * aux
    opt = torch.optim.AdamW(params, lr=1e-5)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast(
        "cpu", enabled=False)

    def run(batch):
        ids, labels, _ = batch
        with autocast:
            loss = loss_fn(ids, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss)
    return run, n_base, n_ad, m


def bench_train_setup(name, args, device, cfg, batches, peak):
    reset_peak(device)
    t0 = time.perf_counter()
    run, n_base, n_ad, m = train_setup(name, args, device, cfg, batches)
    warm = args.warmup * (2 if "compile" in name else 1)
    for i in range(warm):  # every distinct batch shape once (compile: twice, to settle dynamic shapes)
        run(batches[i % len(batches)])
    sync(device)
    t_warm = time.perf_counter() - t0
    times, losses = [], []
    for i in range(args.steps):
        b = batches[i % len(batches)]
        sync(device)
        t = time.perf_counter()
        losses.append(run(b))
        sync(device)
        times.append(time.perf_counter() - t)
    med = sorted(times)[len(times) // 2]
    tokens = [sum(b[2]) for b in batches]
    tok_per_step = sum(tokens[i % len(batches)] for i in range(args.steps)) / args.steps
    flops = sum(count_flops(cfg, batches[i % len(batches)][2], n_base, n_ad) for i in range(args.steps)) / args.steps
    res = dict(step_s_median=round(med, 4), step_s_best=round(min(times), 4), tokens_per_s=round(tok_per_step / med, 1),
               tflops_per_s=round(flops / med / 1e12, 2), mfu=round(flops / med / peak, 4) if peak else None,
               peak_mem_gib=peak_gib(device), setup_and_warmup_s=round(t_warm, 1), final_loss=round(losses[-1], 4),
               base_params=n_base, adapter_params_per_token=int(n_ad))
    del run, m
    return res


# ----------------------------------------------------------------------------- 2. generation

def bench_generate(args, device, cfg, results):
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    hf = hf_model(cfg, device, dtype).eval()
    hf.generation_config.eos_token_id = None  # fixed work: exactly N new tokens on both sides
    hf.generation_config.pad_token_id = 0
    with torch.device("meta"):
        ours = M.CausalLM(M.ModelConfig.from_hf(cfg))
    M.load_state_dict_strict(ours, {k: v.detach() for k, v in hf.state_dict().items()}, dtype)  # the same weights
    ours.inv_freq = M.rope_inv_freq(ours.config)
    ours = ours.to(device).eval()
    g = torch.Generator().manual_seed(1)
    lens = torch.randint(args.min_len, args.max_sample + 1, (args.gen_prompts,), generator=g).tolist()
    prompts = [torch.randint(3, cfg["vocab_size"], (n,), generator=g).tolist() for n in lens]
    order = sorted(range(len(prompts)), key=lambda i: -lens[i])     # eval.py: longest first
    n_new, out = args.new_tokens, {}

    def ours_all(model, static):
        res = [None] * len(prompts)
        for b in range(0, len(order), args.gen_batch):
            idx = order[b:b + args.gen_batch]
            for i, s in zip(idx, model.generate([prompts[i] for i in idx], max_new_tokens=n_new, static_cache=static)):
                res[i] = s
        return res

    def timed(fn, *a):
        sync(device)
        t = time.perf_counter()
        r = fn(*a)
        sync(device)
        return r, time.perf_counter() - t

    with torch.no_grad():
        ours.generate([prompts[order[0]]] * 2, max_new_tokens=4)             # warm-up (Triton, cuBLAS)
        static = device.type == "cuda"
        ans, t = timed(lambda: ours_all(ours, static))
        out["ours, batched, static cache + CUDA graphs" if static else "ours, batched (CPU: no graphs)"] = dict(
            answers=len(prompts), seconds=round(t, 2), answers_per_s=round(len(prompts) / t, 2))
        if static:
            _, t2 = timed(lambda: ours_all(ours, False))
            out["ours, batched, growing cache, no graphs"] = dict(answers=len(prompts), seconds=round(t2, 2),
                                                                 answers_per_s=round(len(prompts) / t2, 2))
        sub = order[:args.hf_prompts]       # HF one at a time on a subset: the longest prompts (conservative)

        # the closures take the HF model as an argument: `del hf` below frees it
        def hf_one(model, i, n):
            x = torch.tensor([prompts[i]], device=device)
            return model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, do_sample=False)[0, lens[i]:]
        hf_one(hf, sub[0], 4)

        def hf_run(model):
            return [hf_one(model, i, n_new).tolist() for i in sub]
        hf_ans, t3 = timed(hf_run, hf)
        out["transformers generate, one prompt at a time"] = dict(answers=len(sub), seconds=round(t3, 2),
                                                                  answers_per_s=round(len(sub) / t3, 2))
        same = sum(ans[i] == a for i, a in zip(sub, hf_ans))
        prefix = [next((j for j, (x, y) in enumerate(zip(ans[i], a)) if x != y), n_new) for i, a in zip(sub, hf_ans)]
        # random weights give near-flat logits, so bf16 rounding can flip a greedy argmax: the identity
        # of the two implementations is checked in fp32 on a few prompts (batched vs one at a time)
        few = sub[:args.fp32_prompts]
        hf.float(), ours.float()
        ours_f = [s for s in ours.generate([prompts[i] for i in few], max_new_tokens=n_new)]
        hf_f = [hf_one(hf, i, n_new).tolist() for i in few]
        same_fp32 = sum(a == b for a, b in zip(ours_f, hf_f))
        hf.to(dtype), ours.to(dtype)
        del hf
        # ours with MoGE adapters attached (random B, bf16 A/B), as eval.py runs a checkpoint
        ours = attach(ours, r=args.r)
        moge.cast_low_rank(ours, dtype)
        ours.eval()
        ours.generate([prompts[order[0]]] * 2, max_new_tokens=4)
        _, t4 = timed(lambda: ours_all(ours, static))
        out["ours + MoGE adapters, batched" + (", static cache + CUDA graphs" if static else "")] = dict(
            answers=len(prompts), seconds=round(t4, 2), answers_per_s=round(len(prompts) / t4, 2))
    first = next(iter(out.values()))["answers_per_s"]
    hf_rate = out["transformers generate, one prompt at a time"]["answers_per_s"]
    results["generate"] = dict(rows=out, speedup_vs_transformers=round(first / hf_rate, 2),
                               identical_answers=f"{same}/{len(sub)}", mean_common_prefix=sum(prefix) / len(prefix),
                               identical_answers_fp32=f"{same_fp32}/{len(few)}", dtype=str(dtype).replace("torch.", ""),
                               prompts=len(prompts), new_tokens=n_new, batch=args.gen_batch,
                               prompt_lengths=[min(lens), max(lens)])


# ----------------------------------------------------------------------------- 3. the MoGE layer

def bench_layer(args, device, cfg, results):
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    d, f, T = cfg["hidden_size"], cfg["intermediate_size"], args.layer_tokens
    torch.manual_seed(0)
    mlp = nn.Module()
    mlp.gate_proj, mlp.up_proj = nn.Linear(d, f, bias=False), nn.Linear(d, f, bias=False)
    mlp.down_proj = nn.Linear(f, d, bias=False)
    mlp = mlp.to(device, dtype).requires_grad_(False)
    fast = moge.MoGEFFN(copy.deepcopy(mlp), moge.MoGEConfig(r=args.r)).to(device).train()
    with torch.no_grad():
        for name in ("gate", "up", "down"):
            getattr(fast.experts, f"{name}_B").normal_(0, 0.01)
    dense = copy.deepcopy(mlp)
    for name in ("gate_proj", "up_proj", "down_proj"):
        moge.to_gal(getattr(dense, name), moge.MoGEConfig(recipe="gal", r=args.r))
    dense.train()

    def dense_fwd(h):
        return dense.down_proj(F.silu(dense.gate_proj(h)) * dense.up_proj(h))
    h = torch.randn(T, d, device=device, dtype=dtype, requires_grad=True)
    dy = torch.randn(T, d, device=device, dtype=dtype)

    def ms(fn, n):
        for _ in range(3):
            fn(h).backward(dy)
        sync(device)
        t = time.perf_counter()
        for _ in range(n):
            fn(h).backward(dy)
        sync(device)
        return (time.perf_counter() - t) / n * 1e3
    rows, errors = {}, {}
    variants = [("MoGE FFN, eager", fast), ("dense FFN + GAL, eager", dense_fwd)]
    for label, fn in variants + [(n.replace("eager", "torch.compile"), fn) for n, fn in variants]:
        try:
            f_ = torch.compile(fn, backend=compile_backend(device)) if "compile" in label else fn
            rows[label] = round(ms(f_, args.layer_iters), 3)
        except Exception as e:  # noqa: BLE001 (one variant failing must not lose the others)
            errors[label] = f"{type(e).__name__}: {e}"[:500]
            print(f"  layer variant {label!r} failed: {errors[label]}")
    ratio = {k.split(",")[1].strip(): round(rows[k] / rows[k.replace("MoGE FFN", "dense FFN + GAL")], 2)
             for k in rows if k.startswith("MoGE") and k.replace("MoGE FFN", "dense FFN + GAL") in rows}
    results["moge_layer"] = dict(ms_fwd_bwd=rows, moge_vs_dense=ratio, tokens=T, d=d, ffn=f, r=args.r,
                                 experts="5 routed top-2 + 1 shared", errors=errors)


# ----------------------------------------------------------------------------- report

def markdown(res) -> str:
    lines = [f"# bench.py --gpu ({'DRY RUN, tiny shapes' if res['dry_run'] else 'Llama-3.2-1B shapes'})", "",
             f"{res['machine']}; {res['date']}; command: `{res['command']}`", ""]
    tr = res.get("train", {})
    if tr:
        lines += [f"## Training: batch {res['batch']}, sample lengths {res['lengths']}, r {res['r']}, "
                  f"{'fp32 (CPU)' if res['dry_run'] and 'CPU' in res['machine'] else 'bf16'} base",
                  "",
                  "| set-up | tokens/s | step (s, median) | TFLOP/s | MFU | peak mem (GiB) | vs transformers+peft |",
                  "|---|---|---|---|---|---|---|"]
        hf = tr.get("transformers + peft LoRA r64 (padded)", {}).get("tokens_per_s")
        for k, v in tr.items():
            if "error" in v:
                lines.append(f"| {k} | error: {v['error'][:80]} | | | | | |")
                continue
            mfu = f"{100 * v['mfu']:.1f}%" if v["mfu"] is not None else "n/a"
            vs = f"{v['tokens_per_s'] / hf:.2f}x" if hf else "n/a"
            mem = v["peak_mem_gib"] if v["peak_mem_gib"] is not None else "n/a"
            lines.append(f"| {k} | {v['tokens_per_s']:.0f} | {v['step_s_median']:.3f} | {v['tflops_per_s']} | {mfu} | "
                         f"{mem} | {vs} |")
        lines.append("")
    gen = res.get("generate")
    if gen:
        lines += [f"## Eval generation: {gen['prompts']} prompts "
                  f"({gen['prompt_lengths'][0]}-{gen['prompt_lengths'][1]} tokens), {gen['new_tokens']} new tokens, "
                  f"greedy, batch {gen['batch']}", "",
                  "| implementation | answers | seconds | answers/s |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['answers']} | {v['seconds']} | {v['answers_per_s']} |" for k, v in gen["rows"].items()]
        lines += ["", f"speed-up vs transformers one at a time: {gen['speedup_vs_transformers']}x; identical greedy "
                  f"answers on the transformers subset: {gen['identical_answers']} in {gen['dtype']} "
                  f"(mean common prefix {gen['mean_common_prefix']:.1f} tokens), "
                  f"{gen['identical_answers_fp32']} in fp32", ""]
    lay = res.get("moge_layer")
    if lay:
        lines += [f"## MoGE FFN layer fwd+bwd, {lay['tokens']} tokens, d {lay['d']}, FFN {lay['ffn']}, r {lay['r']}, "
                  f"{lay['experts']}", "", "| layer | ms |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in lay["ms_fwd_bwd"].items()]
        lines += ["", f"MoGE / dense: {lay['moge_vs_dense']}", ""]
    if res["errors"]:
        lines += ["## Errors", ""] + [f"- {k}: {v[:300]}" for k, v in res["errors"].items()]
    return "\n".join(lines) + "\n"


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dry-run", action="store_true", help="tiny shapes, few steps: checks the script end to end")
    p.add_argument("--out", default="bench_gpu", help="writes OUT.json and OUT.md")
    p.add_argument("--parts", default="train,generate,layer,compile", help="comma list of train, generate, "
                   "layer, compile (the --pack --compile training set-up; it compiles for minutes). Order: the "
                   "other training set-ups, generation, compile, the layer")
    p.add_argument("--budget-s", type=float, default=400, help="parts not started after this many seconds "
                   "are skipped (and recorded as skipped)")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    dry = args.dry_run
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not dry and device.type != "cuda":
        raise SystemExit("bench.py --gpu needs a CUDA GPU (use --dry-run to check the script on CPU)")
    cfg = hf_config(dry)
    sizes = dict(r=4 if dry else 64, batch=3 if dry else 12, min_len=20 if dry else 150, max_sample=60 if dry else 600,
                 max_len=160 if dry else 2048, n_batches=2 if dry else 4, warmup=2 if dry else 4, steps=2 if dry else 8,
                 gen_prompts=6 if dry else 256, gen_batch=4 if dry else 64, hf_prompts=2 if dry else 16,
                 fp32_prompts=2 if dry else 4,
                 new_tokens=5 if dry else 64, layer_tokens=64 if dry else 8192, layer_iters=2 if dry else 20)
    for k, v in sizes.items():
        setattr(args, k, v)
    dev_name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    res = dict(machine=f"{dev_name}, {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}",
               date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), command="python bench.py " +
               " ".join(sys.argv[1:]) if argv is None else "bench_gpu.main(" + repr(argv) + ")", dry_run=dry,
               batch=args.batch, lengths=f"{args.min_len}-{args.max_sample}", r=args.r, train={}, errors={})
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    parts = args.parts.split(",")
    t_start = time.perf_counter()

    def save():
        with open(args.out + ".json", "w") as f:
            json.dump(res, f, indent=1)
        with open(args.out + ".md", "w") as f:
            f.write(markdown(res))

    def part(name, fn):
        if time.perf_counter() - t_start > args.budget_s:
            res["errors"][name] = f"skipped: the {args.budget_s:.0f} s budget was spent"
            print(f"[{name}] skipped (budget)")
            return
        t = time.perf_counter()
        print(f"[{name}] ...", flush=True)
        try:
            fn()
        except Exception as e:  # noqa: BLE001 (one part failing must not lose the others)
            traceback.print_exc()
            res["errors"][name] = f"{type(e).__name__}: {e}"[:2000]
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            torch._dynamo.reset()
        print(f"[{name}] {time.perf_counter() - t:.1f} s", flush=True)
        save()

    batches = make_batches(args.n_batches, args.batch, args.min_len, args.max_sample, cfg["vocab_size"])
    peak = peak_flops(device)

    def train_part(s):
        def one():
            res["train"][s] = bench_train_setup(s, args, device, cfg, batches, peak)
            print(f"  {s}: {res['train'][s]}")
        part(f"train: {s}", one)
        if s not in res["train"]:
            res["train"][s] = {"error": res["errors"].get(f"train: {s}", "?")}
    if "train" in parts:
        for s in ("ours, eager (padded)", "ours, --pack", "transformers + peft LoRA r64 (padded)",
                  "ours with ReferenceMoGE (release-style, padded)"):
            train_part(s)
    if "generate" in parts:
        part("generate", lambda: bench_generate(args, device, cfg, res))
    if "compile" in parts:  # after generation: compiling 16 layers (and again for new shapes) takes minutes
        train_part("ours, --pack --compile")
    if "layer" in parts:
        part("moge layer", lambda: bench_layer(args, device, cfg, res))
    res["total_s"] = round(time.perf_counter() - t_start, 1)
    save()
    print(markdown(res))
    print(f"wrote {args.out}.json and {args.out}.md in {res['total_s']} s")
    return res


if __name__ == "__main__":
    main()
