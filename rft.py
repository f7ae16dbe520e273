"""Rejection-sampling fine-tuning data: sampled answers of a checkpoint to its training prompts, kept where
verify.py accepts them, written as a data folder that train.py reads.

    python rft.py --ckpt OUT --tasks weight,tpsa,logp --samples 8 --out rft_data/       # one round
    python train.py --data rft_data --tasks weight,tpsa,logp --init-from OUT/checkpoints/step_N --out OUT2
    python rl.py --ckpt OUT2 ...                                                         # optional, after

Reads top to bottom: arguments -> the checkpoint (checkpoint.load_model) -> the TRAINING prompts of --tasks
(data.load_tasks(split="train"): a round never reads the test split) and their raw records -> K answers per
prompt, several prompts per batched KV-cache generate call (model.generate(num_samples=K), one seeded
torch.Generator) -> verify.verify on each answer -> the kept answers -> OUT/train/<stem>.json + manifest.json.

The recipe is STaR's (Zelikman et al., NeurIPS 2022: keep the model's own rationales that reach a correct
answer, fine-tune on them, repeat) and rejection-sampling fine-tuning's (Yuan et al. 2023: K samples per
training question, distinct correct reasoning paths kept), with verify.py as the judge instead of a reference
answer. An answer is accepted when its verdict scores 1 (a rationale before it must pass verify.py's
rationale check too: an inconsistent one scores 0), except retrosynthesis's "ok (atom balance only)", a
plausibility verdict that no model confirmed (an answer equal to the reference reactants is "ok" and kept).
Per prompt, the first --keep-per-prompt distinct accepted answers (in sampling order) are written.

Output, the release's record format in the published layout (data.py reads it as any data folder):
    OUT/train/<the task's published file stem>.json   [{"instruction", "input", ..., "output": the accepted
        answer, "metadata": {"split": "train", "source": "rft", "checkpoint", "round", "sample": k,
        "original_output": the record's label, "source_id": the record's data.Sample id}}]
    OUT/manifest.json   provenance (checkpoint, data, seed, samples, temperature, budgets, verifier) and the
        round's counts per task; "left_out" names the tasks without an accepted answer, which data.py skips.
Every other field of the source record is copied, so the prompt train.py builds is the prompt that was sampled.
"""
import argparse
import collections
import json
import os
import shutil
import time

import numpy as np
import torch

import answers
import checkpoint
import data
import moge
import molecule
import verify
from chem import _hash, smiles_to_selfies
from ddp import add_device_arguments, check_device
from readers import read_records, task_files
from reasoning import has_rationale, join, split, with_rationale
from tasks import TASKS

WEAK = ("ok (atom balance only)",)  # score-1 verdicts that are not kept: plausible, not verified


# ----------------------------------------------------------------------------- arguments

def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", required=True, help="the checkpoint that samples: a step folder "
                   "(OUT/checkpoints/step_NNNNNN) or an OUT folder (its newest)")
    p.add_argument("--tasks", default="weight,tpsa,logp", help="comma list of task keys whose training prompts "
                   "are sampled (answers must be verifiable, see verify.py); key:ratio takes a seeded subset")
    p.add_argument("--data", default=None, help="demo or a data folder; default: the checkpoint's data (for a "
                   "checkpoint trained on an rft.py folder, the data that folder was sampled from)")
    p.add_argument("--out", default="rft_data", help="the data folder to write (train/<stem>.json, manifest.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier rft.py folder in --out")
    p.add_argument("--samples", type=int, default=8, help="answers sampled per prompt (K)")
    p.add_argument("--keep-per-prompt", type=int, default=1, help="distinct accepted answers written per prompt")
    p.add_argument("--max-prompts", type=int, default=None, help="at most N training prompts per task (a seeded "
                   "choice); default: all")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (> 0)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus cut of the sampler")
    p.add_argument("--top-k", type=int, default=0, help="keep the k largest logits in the sampler (0: off)")
    p.add_argument("--max-new-tokens", type=int, default=512, help="answer budget cap; each task's budget is its "
                   f"longest training answer (with its rationale for a --reasoning checkpoint) + {data.BUDGET_MARGIN}")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per generate call (each gives --samples "
                   "answers: batch-size x samples rows)")
    p.add_argument("--round", type=int, default=None, help="the round recorded in the records; default: one more "
                   "than the round of the checkpoint's training data when that is an rft.py folder, else 1")
    p.add_argument("--seed", type=int, default=42, help="prompt choice and sampling")
    add_device_arguments(p)
    return p


def parse_args(argv=None):
    parser = get_parser()
    args = parser.parse_args(argv)
    try:
        args.task_ratios = verify.verifiable(data.parse_tasks(args.tasks))
    except ValueError as e:
        parser.error(str(e))
    if not args.temperature > 0:
        parser.error("--temperature must be > 0: rejection sampling needs different answers")
    for k in ("samples", "keep_per_prompt", "max_prompts", "max_new_tokens", "batch_size", "round"):
        if getattr(args, k) is not None and getattr(args, k) < 1:
            parser.error(f"--{k.replace('_', '-')} must be >= 1")
    if not 0 < args.top_p <= 1 or args.top_k < 0:
        parser.error("--top-p must be in (0, 1] and --top-k >= 0")
    check_device(parser, args)
    return args


# ----------------------------------------------------------------------------- pieces

def accepted(verdict) -> bool:
    """The verifier's full score, and not a plausibility-only verdict (WEAK)."""
    return float(verdict.score) >= 1.0 and verdict.reason not in WEAK


def clean(text) -> str:
    """A decoded answer as a training answer: the text before the first end marker, stripped."""
    return answers.until_end(answers.as_text(text)).strip()


def as_release_answer(task_key, text, mol_format):
    """A molecule answer sampled in SMILES (a --mol-format smiles checkpoint) back to the release's SELFIES, the
    rationale kept before it; None where it does not encode. Other answers unchanged."""
    if mol_format != "smiles" or TASKS[task_key].answer != "molecule":
        return text
    body, ans = split(text)
    try:
        return join(body, smiles_to_selfies(ans))
    except ValueError:
        return None


def raw_records(root, task_keys) -> dict:
    """{(task, data.Sample id): the record it was made from}: the same files and numbering as data.load_tasks."""
    out = {}
    for key in task_keys:
        for path, _, _ in task_files(root, TASKS[key], "train"):
            stem = os.path.basename(path)
            for i, rec in enumerate(read_records(path, key)):
                out[(key, f"{stem}:{i + 1}")] = rec
    return out


def choose(samples, max_prompts, seed) -> list:
    """Per task, at most max_prompts samples, a seeded choice in the data's order; tasks in sorted order."""
    by_task = collections.defaultdict(list)
    for s in samples:
        by_task[s.task].append(s)
    out = []
    for task in sorted(by_task):
        group = by_task[task]
        if max_prompts is not None and len(group) > max_prompts:
            rng = np.random.default_rng([seed, _hash(f"rft/{task}") % 2**32])
            group = [group[i] for i in sorted(rng.permutation(len(group))[:max_prompts].tolist())]
        out += group
    return out


def sample_answers(model, tok, prompts, k, budget, args, gen, device) -> list:
    """prompts: data.Samples of one task -> k decoded answers per prompt (prompt-major), in batches of
    --batch-size prompts, each batch one generate call from one prefill."""
    texts = []
    for b in range(0, len(prompts), args.batch_size):
        chunk = prompts[b:b + args.batch_size]
        ids = [tok.encode_chat(s.prompt)[0] for s in chunk]
        with torch.no_grad():
            emb, mask, _ = molecule.embed_inputs(model, ids, [data.featurize(s) for s in chunk], padding_side="left")
            out = model.generate(inputs_embeds=emb, attention_mask=mask, num_samples=k, max_new_tokens=budget,
                                 temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, generator=gen,
                                 eos_token_ids=tok.eos_token_ids, pad_token_id=tok.pad_token_id)
        texts += [tok.decode(seq) for seq in out]
    return texts


def rft_origin(data_src):
    """(round, the data it sampled) of an rft.py data folder, from its manifest; (0, None) for any other data."""
    try:
        with open(os.path.join(str(data_src), "manifest.json")) as f:
            m = json.load(f)
        return (int(m["round"]), m["data"]) if m.get("source") == "rft" else (0, None)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return 0, None


def write_folder(out, files, manifest) -> None:
    """out/train/<stem>.json per task and out/manifest.json, written into a temporary folder and renamed."""
    tmp = f"{os.path.abspath(out).rstrip(os.sep)}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "train"))
    for rel, recs in files.items():
        with open(os.path.join(tmp, rel), "w") as f:
            json.dump(recs, f, indent=1)
    with open(os.path.join(tmp, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    if os.path.exists(out):
        shutil.rmtree(out)
    os.rename(tmp, out)


def _name(fn) -> str:
    """module.name of a function (the manifest's verifier)."""
    return f"{getattr(fn, '__module__', None) or '?'}.{getattr(fn, '__qualname__', type(fn).__name__)}"


def table(counts) -> str:
    cols = ("prompts", "samples", "accepted", "prompts_accepted", "distinct", "written", "with_rationale")
    lines = [f"{'task':<15}" + "".join(f"{c:>17}" for c in cols)]
    for task, c in counts.items():
        lines.append(f"{task:<15}" + "".join(f"{c[k]:>17}" for k in cols))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main

def main(argv=None, verifier=None):
    """verifier(task, prompt, prediction, reference) -> a verdict with .score and .reason; default
    verify.verify. -> the manifest (a dict)."""
    args = parse_args(argv)
    verifier = verifier or verify.verify
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()

    # ---------------------------------------------------------------- the checkpoint and the output folder
    step_dir = os.path.abspath(checkpoint.resolve(args.ckpt))
    meta = checkpoint.read_meta(step_dir)
    margs = meta.get("args", {})
    # a checkpoint trained on an rft.py folder: the next round samples that folder's own source data again
    done, origin = rft_origin(margs.get("data") or "demo")
    data_src = args.data or origin or margs.get("data") or "demo"
    root, _ = data.resolve_data(data_src)
    out = os.path.abspath(args.out)
    if os.path.commonpath([out, os.path.abspath(root)]) in (out, os.path.abspath(root)):
        raise SystemExit(f"rft.py: --out {args.out} and the data it samples ({root}) must not contain each other")
    used = os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out))
    if used and not rft_origin(out)[0]:
        raise SystemExit(f"rft.py: --out {args.out} exists and is not an rft.py folder: choose another")
    if used and not args.overwrite:
        raise SystemExit(f"rft.py: --out {args.out} holds an earlier round: pass --overwrite to replace it")
    model, tok, meta = checkpoint.load_model(step_dir, device, torch.float32)
    # the model only samples here: the dense adapters fold into the base weights (eval.py does the same)
    print(f"sampling: {moge.merge_adapters(model)} dense GAL adapters folded into the base weights")
    mol_format = margs.get("mol_format", "selfies")
    round_ = args.round or done + 1

    # ---------------------------------------------------------------- the training prompts and their records
    samples = data.load_tasks(args.task_ratios, split="train", data=data_src, seed=args.seed, tokenizer=tok,
                              max_len=margs.get("max_len", data.MAX_LEN), mol_format=mol_format)  # as trained
    recs = raw_records(root, sorted({s.task for s in samples}))
    prompts = choose(samples, args.max_prompts, args.seed)
    # a --reasoning checkpoint answers with its rationale: budget its length too
    answer = ((lambda s: with_rationale(s.task, recs[(s.task, s.id)], s.answer)) if margs.get("reasoning")
              else (lambda s: s.answer))
    budget = data.answer_budgets(tok, samples, args.max_new_tokens, answer=answer)
    print(f"rft round {round_} from {step_dir}: {len(prompts)} training prompts of {len(samples)}, "
          f"{args.samples} answers each, T={args.temperature}, budgets {budget}")

    # ---------------------------------------------------------------- sample, verify, keep
    gen = torch.Generator(device=device).manual_seed(args.seed)
    keys = ("prompts", "samples", "accepted", "prompts_accepted", "distinct", "written", "with_rationale")
    counts = {t: dict.fromkeys(keys, 0) for t in sorted({s.task for s in prompts})}
    reasons = {t: collections.Counter() for t in counts}
    files, K = {}, args.samples
    for task in counts:
        group = [s for s in prompts if s.task == task]
        texts = sample_answers(model, tok, group, K, budget[task], args, gen, device)
        stem = TASKS[task].released["train"]["train"]
        for j, s in enumerate(group):
            c, seen = counts[task], {}
            for k, text in enumerate(texts[j * K:(j + 1) * K]):
                v = verifier(task, s.prompt, text, s.answer)
                reasons[task][v.reason] += 1
                answer = as_release_answer(task, clean(text), mol_format)
                if accepted(v) and answer:
                    c["accepted"] += 1
                    seen.setdefault(answer, k)
            c["prompts"] += 1
            c["samples"] += K
            c["prompts_accepted"] += bool(seen)
            c["distinct"] += len(seen)
            for answer, k in list(seen.items())[:args.keep_per_prompt]:
                rec = recs[(task, s.id)]
                files.setdefault(f"train/{stem}.json", []).append({
                    **rec, "output": answer,
                    "metadata": {"split": "train", "source": "rft", "checkpoint": step_dir, "round": round_,
                                 "sample": k, "original_output": rec.get("output"), "source_id": s.id}})
                c["written"] += 1
                c["with_rationale"] += has_rationale(answer)

    # ---------------------------------------------------------------- the folder and the round's report
    total = {k: sum(c[k] for c in counts.values()) for k in keys}
    manifest = {
        "source": "rft", "round": round_, "checkpoint": step_dir, "checkpoint_step": meta.get("step"),
        "data": os.path.abspath(root) if data_src != "demo" else "demo", "tasks": args.tasks, "seed": args.seed,
        "samples": K, "temperature": args.temperature, "top_p": args.top_p, "top_k": args.top_k,
        "max_new_tokens": budget, "keep_per_prompt": args.keep_per_prompt, "max_prompts": args.max_prompts,
        "mol_format": mol_format, "verifier": _name(verifier),
        "accepted_when": f"score 1 and reason not in {list(WEAK)}",
        "counts": counts, "total": total, "reasons": {t: dict(r.most_common()) for t, r in reasons.items()},
        "files": {t: f"train/{TASKS[t].released['train']['train']}.json" for t in counts if counts[t]["written"]},
        "left_out": {t: f"no accepted answer in rft round {round_}" for t in counts if not counts[t]["written"]},
    }
    write_folder(out, files, manifest)
    print(table(counts))
    print(f"wrote {total['written']} records ({total['accepted']} of {total['samples']} answers accepted, "
          f"{total['distinct']} distinct) to {out} in {time.time() - t0:.0f}s; next: python train.py --data {out} "
          f"--tasks {','.join(manifest['files']) or '...'} --init-from {step_dir}")
    return manifest


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"rft.py: error: {e}") from None
