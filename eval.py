"""Evaluate an Omni-Mol checkpoint on the 16 tasks, or score any model's answers.

    python eval.py [--ckpt out/] [--tasks all] [--data demo|PATH] [--limit N] [--greedy]
    torchrun --nproc_per_node=N eval.py ...   # prompts sharded over ranks, answers gathered on rank 0
    python eval.py --score predictions.jsonl [--data demo|PATH] [--scoring release|molt5]   # no model (report.py)
    python eval.py --mcq mcq.jsonl [--ckpt out/ | --ckpt none --base default]   # multiple choice (mcq.py)

A checkpoint is exactly the folder it names (or the newest OUT/checkpoints/step_* under an OUT
folder; checkpoint.py): its meta.json says which base model, recipe and adapter config to rebuild, and its
adapters.safetensors must load strictly. A missing or corrupt file is an error naming it; eval never falls
back to the bare base model. The output folder is checked before generating, and each rank appends its
answers to OUT/eval/predictions.partial.rankN.jsonl as they are made. Decoding follows the release
(sampling, temperature 0.2, top-k 50 (HF generate's default, which the release leaves on), top-p 1.0, 512
new tokens) unless --greedy, but batched with a KV cache instead of one sample at a time. Prompts use the
checkpoint's --mol-format (meta.json).

Writes OUT/eval/results.json ({task: {metric: value}}, plus "_meta": checkpoint, decoding, speed),
predictions.jsonl (one {"task", "id", "prompt", "prediction", "reference"} per line, the schema --score
reads), baselines.json ({task: {baseline: {metric: value}}}: trivial predictors from the training split,
baselines.py, scored on the same items by the same scorer) and results.md (a summary table, then a table
per task: ours, ours under --release-compat scoring (the paper's definitions) where they differ, the
baselines and the paper's reported numbers where known).

Held-out answer NLL: a teacher-forced pass over the test items (likelihood.py, no generation) gives the
answer loss in nats/token per task for the checkpoint and for the base model with freshly attached,
untrained adapters (train.py's step-0 model): the cheapest honest signal that training helped.
Speed: each task's answers get a budget of its longest training answer + BUDGET_MARGIN tokens (capped by
--max-new-tokens; --fixed-budget gives every task the cap, as the release's 512), a batch holds one task,
generation stops at the end token, and the dense GAL adapters are folded into the base weights once
(moge.merge_adapters; the MoGE layers stay routed).
Is it better than a trivial guess? Every report (--score included) gives per task a 95% bootstrap interval, the
best baseline chosen on the training split, the paired bootstrap interval of ours minus it and the verdict,
Spearman and distinct answers (significance.py: the rule is printed in results.md). Numeric tasks may be
answered by the median of K samples (--numeric-samples) or by digit expectations (--numeric-expectation).
Metric definitions: metrics.py; --release-compat reproduces the release's scoring flaws; --scoring molt5 uses
MolT5's definitions for the molecule and text tasks (molt5.py), as the ChEBI-20 literature reports them.
Text metrics: BLEU/METEOR count the LLM's own tokens, as the release does. --score has no model, so it
uses --tokenizer (a tokenizer.json) when given, else nltk's wordpunct words; the output names which. --score
writes into FILE_scored/ beside the predictions file, never over the model eval's results.
Beyond the release: a retrosynthesis round trip (the model's own forward prediction from its proposed
reactants must give back the product) and an rdkit re-computation of MW / TPSA / LogP; every answer is also
checked by verify.py (column "Verified (verify.py)", reasons in the notes, verified.json beside the predictions).
"""
import argparse
import contextlib
import json
import os
import re
import statistics
import time

import torch
import torch.distributed as dist
from tqdm import tqdm

import answers
import arith
import baselines
import checkpoint
import data
import fewshot
import likelihood
import mcq
import metrics
import model as M
import moge
import molecule
import reasoning
import significance
import verify
from ddp import add_device_arguments, check_device, compute_cleanup, compute_init  # the same process setup as training
import report
from report import NLL, NLL_UNTRAINED, summary_table, write_results
from chem import smiles_to_selfies
from tasks import GRAPH, TASKS, scored_as
from tokenizer import IGNORE_INDEX

# The demo's eval profile on CPU: a handful of items per task and a shorter answer cap, so train + eval of the
# embedded default fit in 12 minutes on 2 CPU cores; any explicit --limit / --max-new-tokens wins.
DEMO_EVAL = {"limit": 4, "max_new_tokens": 160}


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=_Help)
    p.add_argument("--ckpt", default=None, help="a checkpoint folder (OUT/checkpoints/step_NNNNNN) or an OUT folder, "
                   "whose newest checkpoint is used; with --mcq, 'none' scores the bare --base model. Default: out/ "
                   "(not with --score, which loads no model)")
    p.add_argument("--tasks", default="all", help="'all' or a comma list of task keys")
    p.add_argument("--data", default=None, help="demo or a data folder; default: the data the checkpoint was trained "
                   "on. With --score: the data whose training split gives the baselines (none without it)")
    p.add_argument("--limit", type=int, default=None, help="at most N test items per task (the first N); default: all, "
                   f"or {DEMO_EVAL['limit']} with the demo data on CPU (sized so `make demo` fits 12 minutes on 2 "
                   "cores)")
    p.add_argument("--greedy", action="store_true", help="greedy decoding instead of the release's sampling at T=0.2")
    p.add_argument("--temperature", type=float, default=0.2, help="sampling temperature (the release's); 0 or "
                   "--greedy decodes greedily")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling: the smallest set of tokens with this "
                   "much probability (1.0: off, the release)")
    p.add_argument("--full", default="", help="comma list of tasks exempt from --limit: scored on all their test "
                   "items (e.g. --limit 4 --full weight,logp,tpsa: N >= 45 where a claim is made, a glance elsewhere)")
    p.add_argument("--numeric-samples", type=int, default=1, help="numeric tasks (weight, tpsa, logp, homolumo, "
                   "yield): sample K answers per prompt at --numeric-temperature and answer their median, the "
                   "minimum-Bayes-risk answer under absolute error (Lukasik et al. 2024, regression-aware inference "
                   "with LLMs); greedy or low-temperature decoding of digits picks the modal digit at each position "
                   "and collapses a spread distribution onto a few values. Default 1: one answer, as the release")
    p.add_argument("--numeric-temperature", type=float, default=1.0, help="sampling temperature of --numeric-samples")
    p.add_argument("--numeric-expectation", action="store_true", help="numeric tasks: the greedy answer with each "
                   "digit replaced by its expectation under the model's digit distribution at that position (one "
                   "teacher-forced pass; needs a tokenizer with one token per digit, as SmolLM2's)")
    p.add_argument("--top-k", type=int, default=50, help="sample from the k most likely tokens only; 50 is HF "
                   "generate's default, on in the release; 0 turns it off")
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: 512 (the release), or "
                   f"{DEMO_EVAL['max_new_tokens']} with the demo data on CPU; each task's budget stays below it "
                   "(see --fixed-budget)")
    p.add_argument("--batch-size", type=int, default=16, help="prompts per generate call; lower it if memory runs out")
    p.add_argument("--seed", type=int, default=42, help="sampling seed (rank r uses seed + r)")
    add_device_arguments(p)
    p.add_argument("--out", default=None, help="where results go; default: OUT/eval for the checkpoint's OUT; with "
                   "--score, a folder beside the predictions file named after it (FILE_scored/), so the model eval's "
                   "own results.json is never overwritten")
    p.add_argument("--no-roundtrip", action="store_true", help="skip the retrosynthesis round-trip check (one more "
                   "generation pass over the valid retrosynthesis answers)")
    p.add_argument("--score", metavar="PREDICTIONS_JSONL", default=None, help="score this file; no model is loaded")
    p.add_argument("--tokenizer", default=None, help="with --score: tokenizer.json (or its folder) for the text "
                   "metrics' BLEU/METEOR tokens: the LLM's own (release scoring, as the release does) or a WordPiece "
                   "tokenizer.json / vocab.txt such as SciBERT's (--scoring molt5); without it, nltk wordpunct words")
    p.add_argument("--scoring", default="release", choices=("release", "molt5"), help="release: the Omni-Mol "
                   "release's metric definitions (metrics.py); molt5: MolT5's, as the ChEBI-20 literature reports "
                   "(molt5.py: InChI with stereo, raw-string Levenshtein and character BLEU over every item, WordPiece "
                   "text tokens) for the molecule and text tasks, release scoring for the others")
    p.add_argument("--mcq", metavar="MCQ_JSONL", default=None, help="score the multiple-choice questions of this file "
                   "(mcq.py build) by option log-likelihood; no generation")
    p.add_argument("--base", default="default", help="with --ckpt none: the bare base model (default|tiny|PATH), "
                   "no adapters and no molecule encoder (the <mol> placeholder is dropped; the prompt's SELFIES "
                   "remain)")
    p.add_argument("--few-shot", type=int, default=0, metavar="K", help="in-context baseline: K solved examples "
                   "from the TRAINING split of each item's task, nearest by input molecule (Morgan/Tanimoto), before "
                   "the question (fewshot.py); predictions keep the plain prompt. With --mcq: the same examples (from "
                   "--data, default demo) before each question. Use its own --out")
    p.add_argument("--bos", type=int, default=None, choices=(1, 2), help="<|begin_of_text|> tokens per Llama-3 "
                   "prompt; default: the checkpoint's (meta.json args.bos: train.py --bos, 2 for convert.py release), "
                   "1 for older checkpoints and --ckpt none. Given, it overrides the checkpoint's")
    p.add_argument("--fixed-budget", action="store_true", help="every task may generate --max-new-tokens (the "
                   f"release: 512); default: the task's longest training answer + {data.BUDGET_MARGIN} tokens, "
                   "capped by it")
    p.add_argument("--no-baselines", action="store_true", help="skip the training-split baselines (and with "
                   "--fixed-budget, reading the training split at all)")
    p.add_argument("--no-nll", action="store_true", help="skip the held-out answer NLL (trained and untrained)")
    p.add_argument("--no-untrained-nll", action="store_true", help="skip the untrained (step-0) model's NLL: it is "
                   "the same for runs that differ only in training (learning.py computes it once)")
    p.add_argument("--no-merge", action="store_true", help="generate with the unmerged adapters (the reference "
                   "path; slower, same answers up to fp32 rounding)")
    p.add_argument("--release-compat", action="store_true", help="reproduce the release's scoring flaws (unsigned "
                   "numbers, ROUGE with the end token, edit success over valid answers only): see metrics.py")
    return p


def parse_args(argv=None):
    p = get_parser()
    args = p.parse_args(argv)
    if args.score and (args.mcq or args.ckpt):
        p.error("--score scores a predictions file without a model: it takes no --mcq or --ckpt")
    args.ckpt = args.ckpt or "out/"
    check_device(p, args)
    for k, lo in (("limit", 1), ("max_new_tokens", 1), ("batch_size", 1), ("numeric_samples", 1), ("top_k", 0),
                  ("few_shot", 0)):
        if getattr(args, k) is not None and getattr(args, k) < lo:
            p.error(f"--{k.replace('_', '-')} must be >= {lo}, got {getattr(args, k)}")
    if args.temperature < 0 or not args.numeric_temperature > 0:
        p.error("--temperature must be >= 0 (0: greedy) and --numeric-temperature > 0")
    if not 0 < args.top_p <= 1:
        p.error(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.temperature == 0:
        args.greedy = True  # recorded as what it decodes: greedy
    if arith.KEY in args.tasks.replace("/", ",").replace(":", ",").split(","):
        p.error(f"--tasks: {arith.KEY} is a generated training mix (arith.py), not one of the scored tasks")
    return args


class _Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """The module docstring as written, and every flag's default in its help."""


# ----------------------------------------------------------------------------- generation
def numeric_task(task):
    """weight / tpsa / logp / homolumo / yield (and its scored sets); False for "" (no task given) too."""
    return bool(task) and metrics.answer_kind(task) in baselines.NUMERIC_KINDS


def median_answer(task, texts):
    """The median of the numbers read from sampled answers (as metrics.py reads them), written with the most
    decimals any sample had (at most 4); the first sample if none holds a number."""
    kind = metrics.answer_kind(task)
    nums = [(x, t) for x, t in ((significance.read_number(kind, t), t) for t in texts) if x is not None]
    if not nums:
        return texts[0]
    decimals = max((len(m.group(1)) for _, t in nums for m in [re.search(r"\.(\d+)", t)] if m), default=0)
    return f"{statistics.median(x for x, _ in nums):.{min(decimals, 4)}f}"


def digit_expectation(model, tok, prompts, graphs, gens):
    """Numeric answers read as expectations: for each generated answer (token ids, cut before the end token),
    the first number whose every token is one digit, '.' or a leading '-' keeps its shape, and each digit is
    replaced by its expected value under the model's distribution over the ten digit tokens at that position
    (one teacher-forced pass over prompt + answer; each position conditioned on the answer's own prefix).
    A 60/40 belief between "3" and "2" as the hundreds digit reads 260, where greedy reads 300. -> texts;
    None for an answer without such a number (e.g. a tokenizer that merges digits: keep the answer as is)."""
    digit_ids = [tok.tok.token_to_id(str(d)) for d in range(10)]
    if None in digit_ids or not prompts:
        return [None] * len(prompts)
    emb, _, labels = molecule.embed_inputs(model, [list(p) + list(g) for p, g in zip(prompts, gens)], graphs,
                                           labels=[[IGNORE_INDEX] * len(p) + list(g) for p, g in zip(prompts, gens)])
    with torch.no_grad():
        logits = model(inputs_embeds=emb)                              # (B, T, V)
    probs = logits[:, :-1, digit_ids].float().softmax(-1)              # (B, T-1, 10): digit t+1 predicted at t
    values = torch.arange(10, dtype=torch.float64)
    out = []
    for b, g in enumerate(gens):
        cols = (labels[b, 1:] != IGNORE_INDEX).nonzero()[:, 0].tolist()  # answer token j is predicted at cols[j]
        pieces = [tok.tok.id_to_token(t) or "" for t in g]  # "": an id the tokenizer lacks (a model may emit one)
        start = next((j for j, s in enumerate(pieces) if len(s) == 1 and s in "0123456789"), None)
        if start is None:
            out.append(None)
            continue
        end = start
        while end < len(pieces) and len(pieces[end]) == 1 and pieces[end] in "0123456789.":
            end += 1
        run = pieces[start:end]
        if run.count(".") > 1 or run[-1] == ".":
            out.append(None)
            continue
        n_int = run.index(".") if "." in run else len(run)
        x = sum(float((probs[b, cols[j]].double() * values).sum()) * 10.0 ** (n_int - 1 - i + (i > n_int))
                for i, j in enumerate(range(start, end)) if pieces[j] != ".")
        sign = -1.0 if start > 0 and pieces[start - 1] == "-" else 1.0
        decimals = len(run) - n_int - 1 if "." in run else 0
        out.append(f"{sign * x:.{decimals}f}")
    return out


def generate_answers(model, tok, items, args, device, rank=0, bar=None, stats=None, groups=None, budgets=None,
                     sink=None):
    """items: [(user_text, graph or None)] -> decoded answers. Batched left-padded generation with the KV
    cache. groups (one key per item, e.g. its task) keep a batch to one group, whose budget (budgets[key],
    else --max-new-tokens) caps its new tokens; within a group longest prompts first, so a batch holds
    prompts of similar length. stats["tokens"] counts the generated tokens (end token excluded). sink(indices,
    texts) receives each batch's answers as soon as they are made."""
    ids = [tok.encode_chat(user)[0] for user, _ in items]
    groups = groups or [""] * len(items)
    order = sorted(range(len(items)), key=lambda i: (str(groups[i]), -len(ids[i])))
    batches, cur = [], []
    for i in order:  # consecutive runs of one group, at most batch_size long
        if cur and (len(cur) == args.batch_size or groups[cur[0]] != groups[i]):
            batches.append(cur)
            cur = []
        cur.append(i)
    batches += [cur] if cur else []
    gen = torch.Generator(device=device).manual_seed(args.seed + rank)
    preds = [None] * len(items)
    k_num = max(1, getattr(args, "numeric_samples", 1))
    for idx in batches:
        embeds, mask, _ = molecule.embed_inputs(model, [ids[i] for i in idx], [items[i][1] for i in idx],
                                                padding_side="left")
        numeric = numeric_task(str(groups[idx[0]]))  # groups are task keys ("" when the caller gave none)
        expect = numeric and getattr(args, "numeric_expectation", False)  # greedy + one teacher-forced pass
        k = k_num if numeric and k_num > 1 and not expect else 1
        temperature = 0.0 if expect else args.numeric_temperature if k > 1 else 0.0 if args.greedy else args.temperature
        out = model.generate(inputs_embeds=embeds, attention_mask=mask, num_samples=k,  # k answers, one prefill
                             max_new_tokens=(budgets or {}).get(groups[idx[0]], args.max_new_tokens),
                             temperature=temperature, top_p=args.top_p, top_k=args.top_k,
                             eos_token_ids=tok.eos_token_ids, generator=gen, pad_token_id=tok.pad_token_id)
        expected = [None] * len(idx)
        if expect:
            expected = digit_expectation(model, tok, [ids[i] for i in idx], [items[i][1] for i in idx], out)
        for j, i in enumerate(idx):
            texts = [tok.decode(seq) for seq in out[j * k:(j + 1) * k]]
            preds[i] = expected[j] or (texts[0] if k == 1 else median_answer(str(groups[i]), texts))
        if sink is not None:
            sink(idx, [preds[i] for i in idx])
        if stats is not None:
            stats["tokens"] = stats.get("tokens", 0) + sum(len(seq) for seq in out)
        if bar is not None:
            bar.update(len(idx))
    return preds


# ----------------------------------------------------------------------------- the model path

ROUNDTRIP_INSTRUCTION = "Based on the given reactants and reagents, suggest a possible product."  # Mol-Instructions


PARTIAL = "predictions.partial.rank{}.jsonl"  # answers as they are made, until predictions.jsonl is written


def _sharded_generate(model, tok, samples, args, device, rank, world, desc, stats=None, budgets=None, out_dir=None):
    """Generate for this rank's share of samples (every world-th), in batches of one task with that task's
    budget (budgets: {task key: max new tokens}), and gather (index, answer) on rank 0. With out_dir, each
    rank appends its answers to out_dir/PARTIAL as each batch is done, so a crash loses no finished answer."""
    mine = list(range(len(samples)))[rank::world]
    bar = tqdm(total=len(mine), desc=desc, unit="answer", disable=rank != 0, dynamic_ncols=True)
    items = [(samples[i].prompt, data.featurize(samples[i])) for i in mine]
    groups = [samples[i].task for i in mine]
    sink = None
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        partial = open(os.path.join(out_dir, PARTIAL.format(rank)), "w")

        def sink(idx, texts):
            for j, a in zip(idx, texts):
                s = samples[mine[j]]
                partial.write(json.dumps({"task": scored_as(s), "id": s.id, "prediction": a}) + "\n")
            partial.flush()
    texts = generate_answers(model, tok, items, args, device, rank, bar, stats, groups, budgets, sink)
    local = list(zip(mine, texts))
    bar.close()
    if sink is not None:
        partial.close()
    if world > 1:
        parts = [None] * world
        dist.all_gather_object(parts, local)
        local = [x for part in parts for x in part]
    preds = [None] * len(samples)
    for i, a in local:
        preds[i] = a
    return preds


def roundtrip(model, tok, rows, args, device, rank, world, mol_format="selfies", budgets=None):
    """Retrosynthesis verified by the model itself: ask it the forward question on its own proposed reactants;
    a hit is a predicted product with the InChI of the original product. Over all items (invalid = miss)."""
    fwd, jobs = TASKS["forward"], []
    for j, r in enumerate(rows):
        rec = {"instruction": ROUNDTRIP_INSTRUCTION, "input": answers.cut_answer(r["prediction"]), "output": "-"}
        try:
            if mol_format == "smiles":  # records hold SELFIES; the prompt is written back in SMILES
                rec["input"] = smiles_to_selfies(rec["input"])
            sample = data.make_sample(fwd, rec, "roundtrip", f"roundtrip:{r['id']}", mol_format=mol_format,
                                     text_only=getattr(args, "text_only", False))
        except (ValueError, KeyError):
            continue  # not a usable molecule: a miss
        if getattr(args, "text_only", False) or data.featurize(sample) is not None:  # make_sample parsed it
            jobs.append((j, sample))
    preds = _sharded_generate(model, tok, [s for _, s in jobs], args, device, rank, world, "round trip",
                                budgets=budgets)
    for (j, _), a in zip(jobs, preds):
        rows[j]["roundtrip"] = answers.cut_answer(a)  # verify.py's round-trip input
    hits = sum(answers.same_molecule(rows[j]["roundtrip"], answers.prompt_molecule(rows[j]["prompt"])) for j, _ in jobs)
    return {"Round trip (forward reproduces product)": hits / len(rows) if rows else 0.0,
            "Round trip: asked": len(jobs)}


def eval_dir(step_dir):
    """OUT/eval for OUT/checkpoints/step_N, else STEP/eval."""
    parent = os.path.dirname(os.path.normpath(step_dir))
    return os.path.join(os.path.dirname(parent) if os.path.basename(parent) == "checkpoints" else step_dir, "eval")


def run(args):
    ddp, rank, _, world, device = compute_init(args)
    log = print if rank == 0 else (lambda *a, **k: None)
    step_dir = checkpoint.resolve(args.ckpt)
    log(f"checkpoint {step_dir}")
    out_dir = args.out or eval_dir(step_dir)
    if rank == 0:
        report.check_writable(out_dir)  # before minutes of generation, not after
    # GPU: a bf16 base (autocast would re-cast frozen fp32 weights at every decode step) and bf16 A/B
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model, tok, meta = checkpoint.load_model(step_dir, device, dtype, log)
    tok.set_bos(args.bos or meta.get("args", {}).get("bos", 1))  # as the checkpoint was trained, unless given
    if device.type == "cuda":
        moge.cast_low_rank(model, torch.bfloat16)
    data_src = args.data or meta.get("args", {}).get("data", "demo")
    if data_src == "demo" and device.type != "cuda":  # on a GPU the whole demo test split fits easily
        args.limit = DEMO_EVAL["limit"] if args.limit is None else args.limit
        args.max_new_tokens = args.max_new_tokens or DEMO_EVAL["max_new_tokens"]
        log(f"demo data on CPU: --limit {args.limit} per task{' except --full ' + args.full if args.full else ''}, "
            f"--max-new-tokens {args.max_new_tokens} (pass them to change)")
    full = {t.strip() for t in args.full.split(",") if t.strip()}
    args.max_new_tokens = args.max_new_tokens or 512
    mol_format = meta.get("args", {}).get("mol_format", "selfies")  # prompts as the checkpoint was trained
    args.text_only = meta.get("args", {}).get("graph", "gin") == "none"  # train.py --graph none: no <mol>, no graph
    samples = data.load_tasks(args.tasks, split="test", data=data_src, seed=meta.get("args", {}).get("seed", 42),
                              tokenizer=tok, verbose=rank == 0, mol_format=mol_format, text_only=args.text_only)
    if args.limit is not None:  # the first N of each scored set
        kept, seen = [], {}
        for s in samples:
            seen[scored_as(s)] = seen.get(scored_as(s), 0) + 1
            if seen[scored_as(s)] <= args.limit or s.task in full or scored_as(s) in full:
                kept.append(s)
        samples = kept
    if not samples:
        raise ValueError(f"no test samples for --tasks {args.tasks} in {data_src}")
    seed = meta.get("args", {}).get("seed", 42)
    train_samples, train_items = [], []
    if not (args.no_baselines and args.fixed_budget) or args.few_shot:  # training split: budgets, baselines, shots
        train_samples, train_items = report.training_items(data_src, {scored_as(s) for s in samples}, seed, log,
                                                           mol_format, meta.get("args", {}).get("reasoning", False))
    budgets = None if args.fixed_budget else data.answer_budgets(tok, train_samples, args.max_new_tokens)
    decoding = "greedy" if args.greedy else f"sampling T={args.temperature} top_k={args.top_k} top_p={args.top_p}"
    if args.numeric_expectation:
        decoding += "; numeric tasks: greedy, each digit read as its expectation under the model"
    elif args.numeric_samples > 1:
        decoding += (f"; numeric tasks: median of {args.numeric_samples} samples at T={args.numeric_temperature} "
                     f"top_k={args.top_k} top_p={args.top_p}")
    log(f"{len(samples)} test items, {decoding}, {args.max_new_tokens} new tokens max"
        + (f" (per task: {', '.join(f'{t} {n}' for t, n in sorted(budgets.items()))})" if budgets else "")
        + f", batch {args.batch_size}, {world} rank(s) on {device}")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    nll, nll_untrained, nll_s, item_nll, item_nll0 = {}, {}, 0.0, {}, {}
    with torch.no_grad(), autocast:
        if not args.no_nll:  # teacher-forced, on the exact (unmerged) model, then on train.py's step-0 model
            t0 = time.time()
            nll = likelihood.heldout_nll(model, tok, samples, scored_as, rank, world, per_item=item_nll)
            if not args.no_untrained_nll:
                fresh, _ = checkpoint.build_model(meta, device, dtype)
                if device.type == "cuda":
                    moge.cast_low_rank(fresh, torch.bfloat16)
                nll_untrained = likelihood.heldout_nll(fresh, tok, samples, scored_as, rank, world,
                                                       per_item=item_nll0)
                del fresh
            nll_s = time.time() - t0
            log("held-out answer NLL (nats/token), untrained -> trained: "
                + ", ".join(f"{t} {nll_untrained.get(t, float('nan')):.3f} -> {nll[t]:.3f}" for t in nll))
        if not args.no_merge:
            log(f"generation: {moge.merge_adapters(model)} dense GAL adapters folded into the base weights")
        t0, cpu0, stats = time.time(), time.process_time(), {}
        shots = fewshot.with_examples(samples, train_samples, args.few_shot, seed)  # = samples for --few-shot 0
        preds = _sharded_generate(model, tok, shots, args, device, rank, world, "eval", stats, budgets, out_dir)
        gen_s, gen_cpu = time.time() - t0, time.process_time() - cpu0  # CPU time: stable on a shared machine
        rows = [{"task": scored_as(s), "id": s.id, "prompt": s.prompt, "prediction": a, "reference": s.answer}
                for s, a in zip(samples, preds)]
        for r in rows:  # per item, for comparisons of runs paired over the same items (learning.py)
            if r["id"] in item_nll:
                r["answer nats"], r["answer tokens"] = item_nll[r["id"]]
                if r["id"] in item_nll0:
                    r["answer nats untrained"] = item_nll0[r["id"]][0]
        retro = [r for r in rows if r["task"] == "retrosynthesis"]
        extra = (roundtrip(model, tok, retro, args, device, rank, world, mol_format, budgets)
                 if retro and not args.no_roundtrip else {})
    compute_cleanup(ddp)
    if rank != 0:
        return None
    tok_name = f"LLM tokenizer of {meta.get('base_model', meta['args']['model'])}"
    eos_text = tok.tok.id_to_token(tok.eot_id)
    tokenize = report.llm_tokens(tok.tok)
    if args.scoring == "molt5":  # MolT5's text metrics count WordPiece tokens (--tokenizer), not the LLM's
        tokenize, tok_name = report.text_tokenizer(args.tokenizer, "molt5")
    scorer = lambda rs: report.score_rows(rs, args.release_compat, tokenize, tok_name, eos_text,  # noqa: E731
                                   scoring=args.scoring)
    results = reasoning.add_counts(scorer(rows), rows)  # "Answers with a rationale" per task
    if extra:
        results["retrosynthesis"].update(extra)
    for task, res in results.items():
        if task in nll:
            res[NLL], res[NLL_UNTRAINED] = nll[task], nll_untrained.get(task)
    base_scores = None
    if not args.no_baselines:
        items = [{**r, "smiles": s.smiles} for r, s in zip(rows, samples)]
        base_rows = baselines.baseline_rows(train_items, items)  # made once: scored here and in add_significance
        base_scores = baselines.score(train_items, items, scorer, rows=base_rows)
        report.significance_for(results, rows, args.release_compat, train_items, items, base_scores, base_rows,
                                eos_text)
    else:
        report.significance_for(results, rows, args.release_compat, eos_text=eos_text)
    run_meta = {"checkpoint": os.path.abspath(step_dir), "step": meta.get("step"), "base model": meta.get("base_model"),
                "graph encoder": meta.get("gin"), "data": data_src, "items": len(rows), "decoding": decoding,
                "max_new_tokens": args.max_new_tokens,
                "answer budgets": "fixed" if budgets is None else f"longest training answer + {data.BUDGET_MARGIN}",
                "adapters merged for generation": not args.no_merge, "batch size": args.batch_size, "ranks": world,
                "device": str(device), "threads per rank": torch.get_num_threads(),
                "NLL seconds (both models)": round(nll_s, 2),
                "generation seconds": round(gen_s, 2), "answers/s": round(len(rows) / gen_s, 3),
                "new tokens/s (rank 0)": round(stats.get("tokens", 0) / gen_s, 1),
                "generation CPU seconds (rank 0)": round(gen_cpu, 2),
                "release_compat": args.release_compat, "scoring": args.scoring, "text tokens": tok_name,
                "mol_format": mol_format, "bos": tok.bos, "few-shot examples": args.few_shot,
                "graph": meta.get("args", {}).get("graph", "gin")}
    compat = (report.compat_scores(rows, args.release_compat, tokenize, tok_name, eos_text) if args.scoring == "release"
              else None)
    verified = verify.verify_rows(rows)
    verify.add_to_results(results, verified)
    print(write_results(results, out_dir, run_meta, rows, base_scores, compat, verified))
    for r in range(world):  # predictions.jsonl holds them all now
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(out_dir, PARTIAL.format(r)))
    print(f"wrote {out_dir}/results.json, predictions.jsonl, {'baselines.json, ' if base_scores else ''}results.md "
          "and verified.json\n")
    print(summary_table(results))  # the table a reader wants last on the screen
    return results


# ----------------------------------------------------------------------------- multiple choice

def mcq_main(args):
    """Accuracy on mcq.py build's questions: each option scored by the model's mean log-prob of it as
    the answer (mcq.option_scores); a checkpoint, or the bare base model with --ckpt none."""
    _, _, _, _, device = compute_init(args)
    questions = mcq.read(args.mcq)
    if args.limit is not None:  # the first N questions of each task and format
        kept, seen = [], {}
        for q in questions:
            key = (q["task"], q.get("format", "choice4"))  # N of each task's every format
            seen[key] = seen.get(key, 0) + 1
            if seen[key] <= args.limit:
                kept.append(q)
        questions = kept
    if args.ckpt == "none":
        model, tok = M.load_model(args.base, device=device)
        tok.set_bos(args.bos or 1)
        name, graphs, out_dir = f"base model {args.base} (no adapters, no graph)", False, None
    else:
        step_dir = checkpoint.resolve(args.ckpt)
        model, tok, meta = checkpoint.load_model(step_dir, device, torch.float32)
        tok.set_bos(args.bos or meta.get("args", {}).get("bos", 1))
        graphs = meta.get("args", {}).get("graph", "gin") != "none"  # train.py --graph none: prompts as it trained
        if not graphs:  # those lack "<mol>\n" (tasks.build_prompt text_only), not just the placeholder
            questions = [{**q, "prompt": q["prompt"].removeprefix(GRAPH)} for q in questions]
        name = f"checkpoint {os.path.abspath(step_dir)}" + ("" if graphs else " (text only: --graph none)")
        out_dir = eval_dir(step_dir)
    if args.few_shot:
        questions = fewshot.mcq_with_examples(questions, args.few_shot, args.data or "demo")
        name += f", {args.few_shot} in-context examples per question"
    out_dir = args.out or out_dir or os.path.dirname(os.path.abspath(args.mcq))
    t0 = time.time()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    with autocast:
        scores = mcq.option_scores(model, tok, questions, args.batch_size, graphs=graphs)
    acc = mcq.accuracy(questions, scores)
    meta = {"model": name, "questions": os.path.abspath(args.mcq), "items": len(questions),
            "seconds": round(time.time() - t0, 2), "device": str(device)}
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "mcq_results.json"), "w") as f:
        json.dump(report.json_safe({"_meta": meta, **acc, "_scores": [  # an option too long to score: -inf -> null
            {"id": q["id"], "task": q["task"], "format": q.get("format", "choice4"), "answer": q["answer"],
             "scores": sc}
            for q, sc in zip(questions, scores)]}), f, indent=1, allow_nan=False)
    print(f"# Multiple choice ({name})\n\n" + mcq.table(acc))
    print(f"wrote {out_dir}/mcq_results.json")
    return acc


# ----------------------------------------------------------------------------- main

def main(argv=None):
    args = parse_args(argv)
    if args.mcq:
        return mcq_main(args)
    return report.score_main(args) if args.score else run(args)


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as e:  # bad paths, checkpoints, data: the message, not a traceback
        raise SystemExit(f"eval.py: error: {e}") from None
