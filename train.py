"""Train Omni-Mol: one LLM on the molecular tasks, with GAL adapters and MoGE.

    torchrun --nproc_per_node=2 train.py --tasks all      # the embedded demo: SmolLM2-135M + demo data
    python train.py --tasks forward,molcap:0.5 --model /path/Llama-3.2-1B-Instruct --data /path/omnimol-data
    python train.py --stage 1 --model ... --data ...        # projector-only pretraining on molcap pairs
    python train.py --init-from OUT1/checkpoints/step_N ... # stage 2 from the stage-1 projector
    python train.py ... --resume                            # continue from the newest OUT/checkpoints/step_*

Reads top to bottom: arguments -> compute_init -> model + molecule + adapters -> data -> optimizer and
schedule -> resume (checkpoint.py, the run folder) -> the loop. Defaults are the official launch's recipe
(scripts/train.sh: AdamW lr 8e-5, cosine, warmup ratio 0.0075, weight decay 0, batch 16, 15 epochs, max length
2048, bf16 autocast on GPU; seed 42) with the dev tree's clip 1.0 (see --clip), except with `--data demo`, where
the run is sized to finish on 2 CPU cores (see --max-steps and friends).

The loss of an optimizer step is the sum of answer-token cross-entropies over all its micro-batches and
ranks divided by the global number of answer tokens (all-reduced before the first backward), plus
aux_coef x the MoGE balance loss (a per-rank statistic, averaged over ranks as DDP averages gradients):
so, balance loss aside, 2 ranks x batch B take the same step as 1 rank x batch 2B. DDP runs with
find_unused_parameters=False: every trainable tensor gets a gradient in every step (moge.py explains
the experts; the projector is touched with a zero when a batch holds no molecule).

Writes OUT/log.jsonl (one JSON object per step), OUT/loss.png (per-task curves, if matplotlib is
installed), with --curve-every OUT/heldout.jsonl + OUT/learning_curve.png (held-out answer NLL, curve.py),
and OUT/checkpoints/step_000123/ = adapters.safetensors (every trainable tensor),
optimizer.pt (optimizer + scheduler state; torch.load(weights_only=True)) and meta.json (args, model
config, base checkpoint, MoGE config, step, data position, RNG states). A checkpoint is written to a
temporary folder and renamed, so a crash mid-save leaves the previous one whole.
"""
import argparse
import contextlib
import dataclasses
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint as grad_checkpoint
from tqdm import tqdm

import checkpoint
import data
import curve
import gin_pretrain
from ddp import add_device_arguments, all_sum, check_device, compute_init, print0, rank0_first
import model as M
import molecule
import moge
import packing
from tokenizer import IGNORE_INDEX

# Defaults that depend on the data. The release's recipe for real data; for `--data demo` a run sized so
# that `torchrun --nproc_per_node=2 train.py --tasks all` and then `python eval.py` finish within 15
# minutes on 2 CPU cores (timing in BENCHMARKS.md): the demo's longest sample is ~800 tokens, so max_len
# 1024 drops none; few steps need a larger learning rate than the release's 15 epochs do.
DEMO = dict(max_steps=16, epochs=None, batch_size=2, max_len=1024, lora_r=16, lr=5e-4)
# `--data demo` on a CUDA device: enough steps to learn (3 epochs of the 4,400 demo samples, ~1,650 steps of 8
# on one GPU), at a learning rate between the CPU demo's and the release's
DEMO_CUDA = dict(max_steps=None, epochs=3, batch_size=8, max_len=1024, lora_r=16, lr=2e-4)
# batch 16 per device: the official launch (1789336421/Omni-Mol scripts/train.sh:44); the dev tree's scripts use 20
# (WillDreamer/Omni-Mol scripts/mixtrain_auto_eval.sh:45) and 12 (its puretext scripts/mixtrain_moeloratext.sh)
RELEASE = dict(max_steps=None, epochs=15, batch_size=16, max_len=2048, lora_r=64, lr=8e-5)
PROFILES = {"demo (CPU)": DEMO, "demo (CUDA)": DEMO_CUDA, "release": RELEASE}


# ----------------------------------------------------------------------------- arguments

def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("what to train")
    g.add_argument("--tasks", default="all", help="'all' or a comma list of task keys, each optionally "
                   "key:ratio with a ratio in (0, 1] to train on a seeded subset of that task's data, e.g. "
                   "forward,molcap:0.5 (the release also caps ratios at 1: no repetition); arith:R adds R x the "
                   "other tasks' samples of generated arithmetic word problems (arith.py, a general-reasoning "
                   "mix: weight,tpsa,logp,arith:0.2; with --reasoning their answers carry the sum)")
    g.add_argument("--model", default="default", help="'default' (embedded SmolLM2-135M-Instruct), 'tiny' "
                   "(random 2-layer model for tests) or an HF Llama/Qwen2 folder")
    g.add_argument("--data", default="demo", help="'demo' (built from installed packages on first use) or a "
                   "folder with the release's task files")
    g.add_argument("--out", default="out", help="run folder: log.jsonl, loss.png, checkpoints/")
    g.add_argument("--stage", type=int, default=2, choices=(1, 2), help="1: projector only, on molcap "
                   "molecule-description pairs with the release's stage-1 prompt (graph + question, no molecule "
                   "text); 2: adapters + routers + projector on --tasks (start it from stage 1 with --init-from)")
    g.add_argument("--recipe", default="moge", choices=moge.RECIPES, help="moge: GAL everywhere + MoGE in "
                   "--moe-layers (the paper); gal: GAL, no MoE; lora: plain alpha/r LoRA; rslora: alpha/sqrt(r) "
                   "LoRA (rsLoRA), no MoE")
    g.add_argument("--mol-format", default="selfies", choices=data.MOL_FORMATS, help="how molecules are "
                   "written in prompts and molecule answers: selfies (the paper) or smiles (its ablation); "
                   "saved in meta.json, eval.py uses the same")
    g.add_argument("--graph", default="gin", choices=("gin", "none"), help="gin: each task's graph-source "
                   "molecule as atom tokens (the paper); none: molecules as text only, no <mol> placeholder and no "
                   "graph (the dev tree's --training_recipe puretext, WillDreamer/Omni-Mol "
                   "scripts/mixtrain_moeloratext.sh); saved in meta.json, eval.py uses the same")
    g.add_argument("--bos", type=int, default=1, choices=(1, 2), help="<|begin_of_text|> tokens at the start of "
                   "every Llama-3 sequence: 1 (the template's) or 2 (the release: its system string carries one and "
                   "tokenizer.encode adds another, WillDreamer/Omni-Mol data_pipe/chat_template.py:31-45); saved in "
                   "meta.json, eval.py uses the same. ChatML models take 1 only")
    g.add_argument("--reasoning", action="store_true", help="answers with an rdkit rationale before them, "
                   "'<think> ... </think> ANSWER', for the tasks and records that have one (reasoning.py: weight, "
                   "tpsa, logp, molediting, atom-mapped reactions); the others unchanged")
    g.add_argument("--order", default="uniform", choices=data.ORDERS, help="batch order: uniform (the "
                   "release: uniform random over all tasks together, batches mix tasks) or length (batches of "
                   "similar length: less padding, but nearly single-task batches, which changes gradient noise "
                   "and the per-batch router / balance statistics)")
    g.add_argument("--schedule", default="joint", choices=data.SCHEDULES, help="joint: all tasks mixed throughout "
                   "(the paper's unified training; the release); sequential: the paper's contrast, the tasks one after "
                   "another in --tasks order ('all': the task table's, tasks.py) in this one run (one optimizer, one "
                   "cosine schedule), each phase single-task and given its share of the steps in proportion to its "
                   "data, so each task gets the passes joint training gives it; a checkpoint at every phase end. "
                   "The release's --training_recipe sequential (WillDreamer/Omni-Mol model_factory.py "
                   "load_moe_lora_model_sequential) is instead a new run started from a finished stage-2 checkpoint "
                   "on that run's --task_config, with a fresh optimizer and schedule and lm_head also trainable: chain "
                   "runs with --init-from for that (our lm_head stays frozen)")
    g.add_argument("--gin", default=None, help="MoleculeSTM GIN weights (.safetensors, see molecule.py "
                   "convert), or 'pretrained': our GIN pretrained by attribute masking on the packaged molecules "
                   "(gin_pretrain.py, built on first use into $OMNIMOL_CACHE); default: a seeded random frozen GIN "
                   "(no pretrained weights ship offline)")
    g.add_argument("--init-from", default=None, help="a checkpoint folder whose trainable tensors start "
                   "this run, e.g. the stage-1 projector for stage 2 (tensors absent there keep their init)")

    g = p.add_argument_group("schedule and batch (release recipe; --data demo shrinks the run)")
    g.add_argument("--max-steps", type=int, default=None, help="optimizer steps in the whole run (sets the "
                   f"cosine schedule); default: --epochs worth of data, or {DEMO['max_steps']} with --data demo and "
                   "no --epochs")
    g.add_argument("--epochs", type=float, default=None, help="used when --max-steps is not given; default "
                   f"{RELEASE['epochs']} (the release trains 15 epochs and reports epoch 14), {DEMO_CUDA['epochs']} "
                   "with --data demo on CUDA")
    g.add_argument("--batch-size", type=int, default=None, help="sequences per device per micro-step; "
                   f"default {RELEASE['batch_size']} ({DEMO['batch_size']} with --data demo); lower it if "
                   "memory runs out and raise --grad-accum to keep the global batch")
    g.add_argument("--grad-accum", type=int, default=1, help="micro-steps per optimizer step; global batch = "
                   "batch-size x grad-accum x world size")
    g.add_argument("--max-len", type=int, default=None, help="longest sample in tokens (atoms included); "
                   f"longer samples are dropped and counted, never cut. Default {RELEASE['max_len']} "
                   f"({DEMO['max_len']} with --data demo)")
    g.add_argument("--lr", type=float, default=None, help="peak learning rate; default 8e-5 (stage 2, the "
                   f"release; {DEMO['lr']} with --data demo) or 2e-3 (stage 1, the projector alone, as MolMoE)")
    g.add_argument("--warmup-ratio", type=float, default=0.0075, help="linear warmup over this fraction of "
                   "the steps, then cosine to 0")
    g.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay (the release: 0)")
    g.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip: HF's max_grad_norm default, "
                   "which applies in the dev tree's launch without DeepSpeed (WillDreamer/Omni-Mol "
                   "scripts/mixtrain_auto_eval.sh:27-28); the official ZeRO-2 launch (scripts/train.sh:30) names a "
                   "config without gradient_clipping, so it most likely ran unclipped")
    g.add_argument("--seed", type=int, default=42, help="adapter init, data order and subsets, dropout masks")
    g.add_argument("--task-loss", action="store_true", help="the dev tree's use_task_loss (WillDreamer/OmniMol "
                   "args.py, train_engine.py compute_loss, model/modeling_llava.py forward; --use_task_loss False in "
                   "its scripts): a micro-batch's loss is the mean over its tasks of L_t / (L_t.detach() + 1e-5), L_t "
                   "the task's answer-token mean CE, so each task present pulls with the same weight whatever its "
                   "loss (gradient of L_t / L_t); averaged over micro-steps and ranks as HF Trainer does. The logged "
                   "ce stays the answer-token mean")

    g = p.add_argument_group("adapters")
    g.add_argument("--lora-r", type=int, default=None, help=f"adapter rank; default {RELEASE['lora_r']} (the "
                   f"release), {DEMO['lora_r']} with --data demo")
    g.add_argument("--lora-alpha", type=float, default=16.0, help="alpha0: GAL's alpha init and clamp centre")
    g.add_argument("--lora-dropout", type=float, default=0.05, help="dropout on the adapter input (the release)")
    g.add_argument("--aux-coef", type=float, default=0.01, help="weight of the MoGE load-balancing loss "
                   "(the paper's 0.01). Ours trains the router with it; under the release's reentrant gradient "
                   "checkpointing the loss reaches its optimizer as a constant, so its router learns from the "
                   "CE loss only: --aux-coef 0 is the release as it was run (the loss is still logged)")
    g.add_argument("--n-experts", type=int, default=5, help="routed experts per MoGE layer (+1 always-on "
                   "shared expert); the paper's ablation")
    g.add_argument("--top-k", type=int, default=2, help="experts per token in a MoGE layer (routing, not "
                   "decoding: train.py does not decode)")
    g.add_argument("--moe-layers", default="second_quarter", help="which layers get MoGE: comma list of layer "
                   f"indices (e.g. 12,13,14,15) or a release moe_mode: {', '.join(moge.MOE_MODES)}; "
                   "second_quarter = the last L//4 layers (the paper)")

    g = p.add_argument_group("checkpoints and logging")
    checkpoint.add_run_arguments(g, epochs=True)
    g.add_argument("--curve-every", type=int, default=0, help="every N steps (and at step 0) the held-out answer "
                   "NLL of --curve-items test items per task -> OUT/heldout.jsonl, OUT/learning_curve.png (a report: "
                   "nothing in the run is chosen from it); 0 = off")
    g.add_argument("--curve-items", type=int, default=4, help="test items per task for --curve-every")

    g = p.add_argument_group("hardware")
    add_device_arguments(g)
    g.add_argument("--grad-ckpt", action="store_true", help="activation checkpointing per decoder layer "
                   "(the release uses it): less memory, about 30%% more compute")
    g.add_argument("--base-dtype", default="auto", choices=("auto", "float32", "bfloat16"), help="dtype of the "
                   "frozen base weights; auto: bfloat16 on CUDA (halves their memory, and autocast no longer "
                   "re-casts them every step), float32 on CPU. Adapters, routers, GAL scalars and the "
                   "projector always keep fp32 masters")
    g.add_argument("--pack", action="store_true", help="pack each micro-batch's samples into rows of up to "
                   "--max-len tokens, attention and positions per sample (FlexAttention on CUDA): the same "
                   "samples and loss as without, no compute on padding")
    g.add_argument("--compile", action="store_true", help="torch.compile each decoder layer (the first "
                   "steps are slow while it compiles; new shapes recompile)")
    g.add_argument("--prefetch", type=int, default=2, help="batches tokenized + featurized ahead in a "
                   "background thread (0: inline, in the training loop)")
    # test hooks, not for users: make steps non-finite / kill the process in the middle of a save
    p.add_argument("--debug-nan-steps", default="", help=argparse.SUPPRESS)
    p.add_argument("--debug-crash-in-save", type=int, default=None, help=argparse.SUPPRESS)
    return p


def parse_args(argv=None):
    parser = get_parser()
    args = parser.parse_args(argv)
    check_device(parser, args)
    cuda = torch.cuda.is_available() if args.device is None else args.device.startswith("cuda")
    given = argv if argv is not None else sys.argv[1:]
    if args.stage == 1 and any(a == "--recipe" or a.startswith("--recipe=") for a in given):
        parser.error("--recipe applies to stage 2 (adapters); --stage 1 trains the projector alone")
    if args.resume and args.init_from:
        parser.error("--resume continues this run's own checkpoint; --init-from starts a new run from another: "
                     "give one of them")
    if args.resume and args.overwrite:
        parser.error("--resume keeps the run in --out, --overwrite deletes it: give one of them")
    for k in ("max_steps", "epochs", "save_every"):
        if getattr(args, k) not in (None, "epoch") and getattr(args, k) <= 0:
            parser.error(f"--{k.replace('_', '-')} must be > 0, got {getattr(args, k)}")
    if not 0.0 <= args.warmup_ratio <= 1.0:
        parser.error(f"--warmup-ratio is a fraction of the run in [0, 1], got {args.warmup_ratio}")
    for k in ("lr", "clip"):
        if getattr(args, k) is not None and not getattr(args, k) > 0:
            parser.error(f"--{k} must be > 0, got {getattr(args, k)}")
    if args.curve_every < 0 or args.stop_after is not None and args.stop_after < 1:
        parser.error("--curve-every must be >= 0 and --stop-after >= 1")
    args.profile = ("demo (CUDA)" if cuda else "demo (CPU)") if args.data == "demo" else "release"
    profile = PROFILES[args.profile]
    for k in ("batch_size", "max_len", "lora_r", "max_steps", "lr", "epochs"):
        if k == "max_steps" and args.epochs is not None:
            continue  # an explicit --epochs sets the run's length, also over the demo profile's step count
        if getattr(args, k) is None:
            setattr(args, k, 2e-3 if k == "lr" and args.stage == 1 else profile[k])
    if args.stage == 1 and args.graph == "none":
        parser.error("--stage 1 trains the projector on graphs; --graph none has none")
    if args.stage == 1:
        if args.tasks not in ("all", "molcap"):
            parser.error(f"--stage 1 trains the projector on molcap pairs only; got --tasks {args.tasks!r} "
                         "(use --tasks molcap or all)")
        args.tasks = "molcap"
    try:
        args.task_ratios = data.parse_tasks(args.tasks)  # {key: ratio}; names the valid keys on error
    except ValueError as e:
        parser.error(str(e))
    for k in ("batch_size", "grad_accum", "max_len", "lora_r", "keep_last", "max_bad_steps", "n_experts",
              "curve_items"):
        if getattr(args, k) < 1:
            parser.error(f"--{k.replace('_', '-')} must be >= 1, got {getattr(args, k)}")
    if not 1 <= args.top_k <= args.n_experts:
        parser.error(f"--top-k must be in 1..--n-experts ({args.n_experts}), got {args.top_k}")
    args.moe_layer_ids = args.moe_layers if args.moe_layers in moge.MOE_MODES else None  # a mode, or indices
    if args.moe_layer_ids is None:
        try:
            args.moe_layer_ids = tuple(sorted({int(i) for i in args.moe_layers.split(",") if i.strip()}))
        except ValueError:
            args.moe_layer_ids = ()
        if not args.moe_layer_ids or min(args.moe_layer_ids) < 0:
            parser.error(f"--moe-layers: expected layer indices like 12,13,14,15 or one of {list(moge.MOE_MODES)}, "
                         f"got {args.moe_layers!r}")
    if args.prefetch < 0:
        parser.error(f"--prefetch must be >= 0, got {args.prefetch}")
    args.debug_nan_steps = {int(s) for s in args.debug_nan_steps.split(",") if s}
    return args


# ----------------------------------------------------------------------------- the loss of a micro-batch

class TrainStep(nn.Module):
    """Wraps the model so DDP sees the whole trainable computation (projector included) in forward.
    Returns the SUM of answer-token cross-entropies per sample (not a mean: the caller divides by the
    global token count) and the MoGE balance loss of this forward."""

    def __init__(self, model, pack_len=0):
        super().__init__()
        self.model = model
        self.pack_len = pack_len  # > 0: --pack, the micro-batch's samples packed into rows of this length

    def forward(self, input_ids, labels, graphs):
        m = self.model
        emb, mask, labels = molecule.embed_inputs(m, input_ids, graphs, labels=labels)  # right padded
        if self.pack_len:  # the same samples in fewer rows, attention and positions per sample (packing.py)
            p = packing.pack(emb, mask, labels, self.pack_len)
            tgt, owner = p.targets, p.owner                                            # (R, T) each
            emb, doc_ids = p.embeds, p.doc_ids
        else:  # right padding + causal attention: real tokens never see padding, so no mask is needed
            tgt, owner, doc_ids = labels[:, 1:], None, None                           # (B, T-1)
        # logits and log-softmax over the vocabulary only where there is a target (answers are ~1/6 of the tokens);
        # the output head at every position is the plain reference (tests/test_train_step.py holds them equal)
        b, t = (tgt != IGNORE_INDEX).nonzero(as_tuple=True)                        # (N,) answer positions
        logits = m(inputs_embeds=emb, doc_ids=doc_ids, at=(b, t))                    # (N, V)
        tok_ce = F.cross_entropy(logits.float(), tgt[b, t], reduction="none")        # (N,)
        sample = b if owner is None else owner[b, t]                                  # (N,) sample of each
        ce = torch.zeros(len(labels), device=tok_ce.device, dtype=tok_ce.dtype).index_add(0, sample, tok_ce)
        # a batch without molecules leaves the projector out of the graph; touch it so every trainable
        # tensor gets a gradient each step (DDP runs with find_unused_parameters=False, see moge.py)
        ce = ce + 0.0 * sum(p.sum() for p in m.mm_projector.parameters())
        return ce, moge.aux_loss(m).to(ce.device), int(mask.sum())


def task_balanced_loss(ce, tasks, n_answer, eps=1e-5):
    """--task-loss, the dev tree's use_task_loss (WillDreamer/OmniMol model/modeling_llava.py forward): per task
    t in the micro-batch L_t = its samples' CE sum / their answer tokens, and the loss mean_t L_t / (L_t.detach()
    + eps): about 1 in value, gradient mean_t grad(L_t) / L_t. ce (B,): per-sample CE sums; tasks, n_answer:
    per sample. The dev tree counts a task's tokens as those with loss > 0 (its padding and prompt tokens
    score 0); a token with exactly zero loss is all that differs, and the count cancels out but for eps."""
    terms = []
    for t in dict.fromkeys(tasks):
        idx = [j for j, u in enumerate(tasks) if u == t]
        lt = ce[idx].sum() / sum(n_answer[j] for j in idx)
        terms.append(lt / (lt.detach() + eps))
    return torch.stack(terms).mean()


# ----------------------------------------------------------------------------- main

def main(argv=None):
    args = parse_args(argv)
    ddp, rank, local_rank, world_size, device = compute_init(args)
    master = rank == 0
    checkpoint.claim(args.out, args.resume, args.overwrite, world=world_size, rank=rank)  # locked for the run
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    if device.type == "cuda":  # the release trains with --tf32 True: the fp32 matmuls (router, projector) in TF32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True

    # ---------------------------------------------------------------- model, molecule tower, adapters
    torch.manual_seed(args.seed)  # same initial adapters and projector on every rank
    with rank0_first(ddp, master):
        base_dtype = {"auto": torch.bfloat16 if device.type == "cuda" else torch.float32, "float32": torch.float32,
                      "bfloat16": torch.bfloat16}[args.base_dtype]
        model, tok = M.load_model(args.model, device=device, dtype=base_dtype)  # adapters below: fp32
        if args.gin == "pretrained":  # gin_pretrain.py's attribute-masking GIN, built once (rank 0) and cached
            args.gin = gin_pretrain.ensure(log=print0)
    tok.set_bos(args.bos)  # ValueError for --bos 2 with a template that has no begin-of-text token
    molecule.attach_molecule(model, args.gin)
    moge_cfg = None
    if args.stage == 2:
        moge_cfg = moge.MoGEConfig(recipe=args.recipe, r=args.lora_r, alpha=args.lora_alpha,
                                   dropout=args.lora_dropout, aux_coef=args.aux_coef, n_experts=args.n_experts,
                                   top_k=args.top_k, moe_layers=args.moe_layer_ids)
        n_layers = len(model.model.layers)
        if max(moge_cfg.moe_layer_ids(n_layers), default=0) >= n_layers:
            raise SystemExit(f"--moe-layers {args.moe_layers}: the model has layers 0..{n_layers - 1}")
        moge.attach_adapters(model, moge_cfg)  # freezes the base, marks adapters/routers/projector
    else:  # stage 1: the projector alone
        model.requires_grad_(False)
        model.mm_projector.requires_grad_(True)
    model.to(device)
    if args.init_from:
        src = os.path.join(args.init_from, "adapters.safetensors")
        sd, own = checkpoint.read_adapters(args.init_from), moge.trainable_parameters(model)
        hit = {k: v for k, v in sd.items() if k in own}
        moge.load_adapters(model, {**moge.adapter_state_dict(model), **hit})
        print0(f"init from {src}: {len(hit)} of {len(own)} trainable tensors")
    if args.grad_ckpt:
        for layer in model.model.layers:  # non-reentrant keeps the MoGE aux loss graph (moge.py)
            layer.forward = (lambda f: lambda *a: grad_checkpoint(f, *a, use_reentrant=False))(layer.forward)
    if args.compile:  # per layer: one small graph reused L times; the grouped-LoRA ops are custom ops
        for layer in model.model.layers:
            layer.compile()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    raw_model = model
    # GAL dropout on; the GIN stays in eval mode (molecule.py)
    step_fn = TrainStep(model, pack_len=args.max_len if args.pack else 0).train()
    if ddp:
        step_fn = nn.parallel.DistributedDataParallel(step_fn, device_ids=[device.index] if device.type == "cuda"
                                                      else None)
    torch.manual_seed(args.seed + rank)  # different dropout masks per rank from here on
    n_train = sum(p.numel() for p in params.values())
    print0(f"profile {args.profile}: " + ", ".join(f"{k} {getattr(args, k)}" for k in PROFILES[args.profile])
           + " (explicit flags win)")
    print0(f"model {args.model}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
           f"{n_train / 1e6:.2f}M trainable ({args.recipe if args.stage == 2 else 'projector only'}), "
           f"world size {world_size}, device {device}, {torch.get_num_threads()} threads per process, base "
           f"weights {str(base_dtype).replace('torch.', '')}{', packed rows' if args.pack else ''}"
           f"{', compiled layers' if args.compile else ''}")

    # ---------------------------------------------------------------- data
    with rank0_first(ddp, master):
        train_set = data.load_tasks(args.task_ratios, split="train", data=args.data, seed=args.seed,
                                    tokenizer=tok, max_len=args.max_len, verbose=master,
                                    mol_format=args.mol_format, graph_only=args.stage == 1,
                                    reasoning=args.reasoning, text_only=args.graph == "none")
    loader = data.Loader(train_set, tok, args.batch_size, rank=rank, world_size=world_size, seed=args.seed,
                         order=args.order, schedule=args.schedule, task_order=list(args.task_ratios))
    tasks = sorted({s.task for s in train_set})
    steps_per_epoch = max(1, len(loader) // args.grad_accum)
    total_steps = args.max_steps or max(1, math.ceil(args.epochs * steps_per_epoch))
    phase_ends = set()  # --schedule sequential: the last step of each task's phase
    if loader.seq is not None:
        loader.seq.set_total(total_steps * args.grad_accum, args.grad_accum)  # ValueError: a task without a step
        phases = [(t, a // args.grad_accum + 1, b // args.grad_accum) for t, a, b in loader.seq.phases()]
        phase_ends = {b for _, _, b in phases}
        print0("sequential schedule: " + ", ".join(f"{t} steps {a}-{b}" for t, a, b in phases))
    if args.prefetch:  # the same batches, collated ahead in a background thread (resume stays exact)
        loader = data.Prefetcher(loader, depth=args.prefetch)
    save_every = checkpoint.cadence(args.save_every, total_steps, steps_per_epoch)
    if args.save_every == "epoch":
        print0(f"a checkpoint every epoch ({steps_per_epoch} steps): epoch 14 is checkpoints/step_"
               f"{14 * steps_per_epoch:06d}" + ("" if 14 * steps_per_epoch <= total_steps else " (beyond this run)"))
    print0(f"data {args.data}: {len(train_set)} training samples in {len(tasks)} tasks; {total_steps} steps "
           f"of {args.batch_size} x {args.grad_accum} x {world_size} sequences ({total_steps / steps_per_epoch:.2f} "
           f"epochs)")

    # ---------------------------------------------------------------- optimizer and schedule
    optimizer = torch.optim.AdamW(params.values(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8,
                                  weight_decay=args.weight_decay)
    warmup = math.ceil(args.warmup_ratio * total_steps)

    def lr_lambda(s):  # HF get_cosine_schedule_with_warmup
        if s < warmup:
            return s / max(1, warmup)
        return 0.5 * (1.0 + math.cos(math.pi * (s - warmup) / max(1, total_steps - warmup)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)

    # ---------------------------------------------------------------- resume
    step = 0
    if args.resume:
        older = {"order": "length", "mol_format": "selfies", "n_experts": 5, "top_k": 2,
                 "moe_layers": "second_quarter", "reasoning": False,
                 "bos": 1, "graph": "gin", "schedule": "joint", "task_loss": False}  # before these flags
        meta, _ = checkpoint.resume(
            args.out, raw_model, optimizer, scheduler, loader, args,
            ("model", "data", "tasks", "stage", "recipe", "lora_r", "lora_alpha", "seed", "batch_size", "grad_accum",
             *older), lambda m: {**m, "args": {**older, **m["args"]}}, rank, device)
        step = meta["step"]
    log_path = checkpoint.start_log(args.out, step if args.resume else None) if master else None

    def checkpoint_meta():
        rngs = checkpoint.gather(checkpoint.rng_state(device), world_size)
        return {"step": step, "total_steps": total_steps, "world_size": world_size, "args": {
                    k: v for k, v in vars(args).items()
                    if k not in ("task_ratios", "debug_nan_steps", "moe_layer_ids")},
                "tasks": args.task_ratios, "base_model": getattr(raw_model, "name_or_path", args.model),
                "model_config": raw_model.config.to_hf(), "gin": raw_model.gin_source, "stage": args.stage,
                "moge": None if moge_cfg is None else {k: v for k, v in dataclasses.asdict(moge_cfg).items()
                                                       if k != "adapter_dtype"},
                "data_position": loader.state_dict(), "rng": rngs}

    def save():
        meta = checkpoint_meta()  # collective (all ranks gather RNG states)
        if master:
            try:
                path = checkpoint.save(args.out, step, raw_model, optimizer, scheduler, meta, args.keep_last,
                                       crash_after_adapters=args.debug_crash_in_save == step)
                print0(f"saved {path}")
            except ValueError as e:  # non-finite tensors: never the newest checkpoint
                print0(f"\n{e}")

    heldout = None
    if args.curve_every > 0:  # held-out NLL during training (curve.py); collective: each rank scores its share
        heldout = curve.HeldoutCurve(tok, tasks, args.data, args.out if master else None, args.curve_items, args.seed,
                             args.mol_format, step if args.resume else None, text_only=args.graph == "none")
        if step == 0:
            heldout(raw_model, 0, rank, world_size)

    # ---------------------------------------------------------------- the loop
    bar = tqdm(total=total_steps, initial=step, disable=not master, dynamic_ncols=True)
    batches = iter(loader)
    task_index = {t: i for i, t in enumerate(tasks)}
    bad_in_row, skipped, tokens_seen, t_start, first_step = 0, 0, 0, time.time(), step
    stop_at = total_steps if args.stop_after is None else min(total_steps, step + args.stop_after)
    while step < stop_at:
        t0 = time.time()
        micro = [next(batches) for _ in range(args.grad_accum)]
        answers = [[sum(y != IGNORE_INDEX for y in lab) for lab in mb["labels"]] for mb in micro]
        # the global count of supervised tokens (micro-steps x ranks), known before the first backward
        n_global = all_sum(torch.tensor(float(sum(map(sum, answers))))).item()
        # [ce sum, answer tokens] per task, then [ce sum, aux, tokens] of the step: one all-reduce at the end
        stats = torch.zeros(2 * len(tasks) + 3, dtype=torch.float64)
        for i, mb in enumerate(micro):
            last = i == len(micro) - 1
            with (step_fn.no_sync() if ddp and not last else contextlib.nullcontext()):  # forward AND backward
                with autocast:
                    ce, aux, n_tok = step_fn(mb["input_ids"], mb["labels"], mb["graphs"])
                if args.task_loss:  # per micro-batch, as the dev tree; DDP's average over ranks as HF's
                    loss = (task_balanced_loss(ce, mb["tasks"], answers[i]) + args.aux_coef * aux) / len(micro)
                else:  # DDP averages gradients over ranks: x world_size makes it a mean over the global tokens
                    loss = ce.sum() * (world_size / max(n_global, 1.0)) + args.aux_coef * aux / len(micro)
                if step + 1 in args.debug_nan_steps and master:
                    loss = loss * float("nan")
                loss.backward()
            for task, c, n in zip(mb["tasks"], ce.detach().double().cpu().tolist(), answers[i]):
                stats[2 * task_index[task]] += c
                stats[2 * task_index[task] + 1] += n
            stats[-3] += float(ce.detach().sum())
            stats[-2] += float(aux.detach()) / (len(micro) * world_size)
            stats[-1] += n_tok
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params.values(), args.clip))  # after DDP's all-reduce
        stats = all_sum(stats)
        ce_mean, aux_mean = stats[-3].item() / max(n_global, 1.0), stats[-2].item()
        total = ce_mean + args.aux_coef * aux_mean  # aux is 0 without MoGE layers
        lr = scheduler.get_last_lr()[0]
        finite = math.isfinite(total) and math.isfinite(grad_norm)  # the same verdict on every rank
        if finite:
            optimizer.step()
            bad_in_row = 0
        else:
            skipped, bad_in_row = skipped + 1, bad_in_row + 1
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        step += 1
        tokens_seen += int(stats[-1])
        tok_s = tokens_seen / max(time.time() - t_start, 1e-9)
        rec = {"step": step, "loss": total, "ce": ce_mean, "aux": aux_mean, "lr": lr, "grad_norm": grad_norm,
               "skipped": not finite, "tokens": int(stats[-1]), "tok_per_s": round(tok_s, 1),
               "step_time": round(time.time() - t0, 3),
               "task_loss": {t: stats[2 * j].item() / stats[2 * j + 1].item()
                             for t, j in task_index.items() if stats[2 * j + 1] > 0}}
        if master:
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            bar.set_postfix(loss=f"{total:.4f}", lr=f"{lr:.2e}", tok_s=f"{tok_s:.0f}", skipped=skipped)
            bar.update(1)
        if not finite:
            checkpoint.report_bad_step(args, step, total, grad_norm, bad_in_row, skipped, bar, ddp)
        if heldout is not None and (step % args.curve_every == 0 or step == total_steps):
            heldout(raw_model, step, rank, world_size)
        if ((step % save_every == 0 or step in phase_ends) and finite) or step == stop_at:
            save()
    bar.close()
    if master:
        curve.plot_losses(log_path, os.path.join(args.out, "loss.png"))
        if heldout is not None:
            curve.plot(heldout.path, os.path.join(args.out, "learning_curve.png"))
    del step_fn  # DDP's reducer goes before the process group: one that outlived gloo died with SIGABRT at exit
    checkpoint.finish(args.out, ddp, first_step, step, total_steps, time.time() - t_start, skipped)
    return raw_model


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as e:  # bad paths, checkpoints, data: the message, not a traceback
        raise SystemExit(f"train.py: error: {e}") from None
    except OSError as e:  # a full or read-only disk: which path, and why
        raise SystemExit(f"train.py: error: {checkpoint.disk_error(e, '')}") from None
