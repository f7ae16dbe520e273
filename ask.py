"""Ask a trained checkpoint: one molecule (or text) for one task, or a file of them, with the task's release
prompt and the molecule's graph; each answer with its verdict where a verifier can judge it without a reference.

    python ask.py --ckpt out/ --task weight --smiles "CCO"
    python ask.py --ckpt out/ --task logp --selfies "[C][C][O]"
    python ask.py --ckpt out/ --task iupac --text "2-methylpropan-1-ol"
    python ask.py --ckpt out/ --task weight --file molecules.smi --out answers.jsonl   # SMILES [id] per line
    python ask.py --ckpt out/ --file questions.jsonl   # {"task", "smiles"|"selfies"|"text", "id", "reference"}

A molecule task takes --smiles or --selfies (reagent, solvent, catalyst, yield and experiment a reaction
"reactants>>product"); iupac and textguidedmolgen take --text. The prompt is tasks.build_prompt on a record
written as the data's (SELFIES inside, SMILES in the prompt when the run trained with --mol-format smiles),
the instruction from INSTRUCTIONS unless --instruction. Verdicts (verify.py): weight / tpsa / logp beside
rdkit's value, molediting and retrosynthesis as they stand; any task given a reference (--reference, or
"reference" in a .jsonl line).

Output: one item: its answer (and verdict, rdkit value) on stdout, or one line on stderr and exit code 2. --file:
one JSON line per input line, in order: {"id", "task", "input", "prompt", "answer", "verdict": {"score",
"reason"} | null, "rdkit": number | null}, or {"id", "task", "input", "error"}.
"""
import argparse
import contextlib
import json
import sys

import torch
from tqdm import tqdm

import checkpoint
import data
import molecule
import verify
from answers import cut_answer, parse_molecule, prompt_molecule
from chem import canonical, selfies_to_smiles, smiles_to_selfies
from reactions import INSTRUCTIONS as REACTION_INSTRUCTIONS
from tasks import TASKS, build_prompt

# the instruction texts of the demo data (demo_data.py; the reaction tasks' from reactions.py): what a demo run
# trained on. The published data's records carry their own; --instruction gives any other.
INSTRUCTIONS = {**REACTION_INSTRUCTIONS,
                "molediting": "Can you make this molecule more drug-like, i.e. raise its QED value, while keeping it "
                              "similar? Give the edited molecule.",
                "homolumo": "Please provide the gap between HOMO and LUMO of this molecule.",
                "weight": "What is the molecular weight of this molecule?",
                "logp": "What is the LogP of this molecule?",
                "tpsa": "What is the topological polar surface area (TPSA) of this molecule?",
                "yield": "Predict the yield of this reaction (in percent).",
                "molcap": "",  # molcap's prompt is one of tasks.MOLCAP_QUESTIONS, drawn from the input
                "dqa": "Which functional groups does this molecule contain?",
                "iupac": "Please translate the given IUPAC name into its SELFIES representation.",
                "textguidedmolgen": "Create a molecule that fits the following description."}
NO_REFERENCE = ("weight", "tpsa", "logp", "molediting", "retrosynthesis")  # verified against the input alone
KINDS = ("smiles", "selfies", "text")


class BadInput(ValueError):
    """An item that cannot be asked: its one-line reason."""


def get_parser():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="a run folder (its newest checkpoint) or a step folder")
    ap.add_argument("--task", default=None, help=f"task key: {', '.join(TASKS)} (a .jsonl line may name its own)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--smiles", help="the input molecule (a reaction: reactants>>product)")
    src.add_argument("--selfies", help="the input molecule as SELFIES")
    src.add_argument("--text", help="the input text of iupac (a name) or textguidedmolgen (a description)")
    src.add_argument("--file", help="many inputs: .smi (SMILES [id] per line) or .jsonl "
                                    '({"task", "smiles"|"selfies"|"text", "id", "instruction", "reference"})')
    ap.add_argument("--instruction", default=None, help="the instruction text (None: INSTRUCTIONS[task])")
    ap.add_argument("--reference", default=None, help="the true answer, for a verdict on tasks that need one")
    ap.add_argument("--out", default=None, help="--file: write the JSON lines here (None: stdout)")
    ap.add_argument("--batch-size", type=int, default=16, help="prompts generated together")
    ap.add_argument("--max-new-tokens", type=int, default=128, help="tokens generated per answer at most")
    ap.add_argument("--max-len", type=int, default=None, help="most prompt tokens, atoms included (None: the run's)")
    ap.add_argument("--temperature", type=float, default=0.0, help="0: greedy; > 0: sampling")
    ap.add_argument("--top-p", type=float, default=1.0, help="nucleus cut when sampling")
    ap.add_argument("--top-k", type=int, default=50, help="top-k cut when sampling (0: off)")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    return ap


# ----------------------------------------------------------------------------- inputs -> samples

def _smiles_to_selfies(smi: str) -> str:
    """A molecule or reaction SMILES -> SELFIES per side, each component checked by rdkit first."""
    sides = smi.strip().split(">>")
    for comp in (c for side in sides for c in side.split(".")):
        if not comp or canonical(comp) is None:
            raise BadInput(f"rdkit cannot parse SMILES {comp!r}")
    return ">>".join(smiles_to_selfies(side) for side in sides)  # ValueError where SELFIES refuses


def _experiment_input(smiles: str):
    """A reaction SMILES -> the experiment record's "$1$.$2$>>$-1$" and its extracted_molecules."""
    reac, _, prod = smiles.partition(">>")
    ph = {m: f"${k + 1}$" for k, m in enumerate(dict.fromkeys(m for m in reac.split(".") if m))}
    return ".".join(ph.values()) + ">>$-1$", {**ph, **({prod: "$-1$"} if prod else {})}


def make_item(task_key, kind, value, sid, instruction=None, mol_format="selfies") -> data.Sample:
    """One input -> a Sample (prompt, graph-source SMILES, atoms); BadInput with the reason if it cannot be asked."""
    if task_key not in TASKS:
        raise BadInput(f"unknown task {task_key!r}; valid tasks: {', '.join(TASKS)}")
    task = TASKS[task_key]
    if not isinstance(value, str) or not value.strip():
        raise BadInput(f"empty {kind} input")
    if task.graph is None and kind != "text":
        raise BadInput(f"task {task_key} takes text (--text), not a molecule")
    if task.graph is not None and kind == "text":
        raise BadInput(f"task {task_key} takes a molecule (--smiles or --selfies), not text")
    rec = {"instruction": INSTRUCTIONS[task_key] if instruction is None else instruction, "output": "-"}
    try:
        if kind == "selfies":
            smiles = ">>".join(selfies_to_smiles(s) for s in value.strip().split(">>"))
            _smiles_to_selfies(smiles)  # the decoded molecule must parse too
            rec["input"] = value.strip()
        elif kind == "smiles":
            smiles, rec["input"] = value.strip(), _smiles_to_selfies(value)
        else:
            rec["input"] = value.strip()
        if task.graph == "placeholders":
            rec["input"], rec["extracted_molecules"] = _experiment_input(smiles)
        graph = data.graph_info(task, rec)
        if isinstance(graph, str):
            raise BadInput(graph)
        prompt = build_prompt(task, rec, mol_format=mol_format)
    except ValueError as e:  # BadInput, undecodable SELFIES, a molecule SELFIES cannot write
        raise BadInput(str(e)) from None
    return data.Sample(task_key, task_key, sid, prompt, "", *graph)


def item(sid, task, kind=None, value=None, instruction=None, reference=None, error=None) -> dict:
    """One input as answer_all takes it; error: why it cannot be asked (read before any model runs)."""
    return dict(id=sid, task=task, kind=kind, value=value, instruction=instruction, reference=reference, error=error)


def read_file(path, task=None) -> list:
    """A .smi (SMILES, then an optional id, per line) or .jsonl file -> items in file order (blank lines skipped)."""
    items = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            if not path.endswith(".jsonl"):
                parts = line.split()
                items.append(item(parts[1] if len(parts) > 1 else f"line {n}", task, "smiles", parts[0]))
                continue
            try:
                rec = json.loads(line)
            except ValueError as e:
                rec = {"_error": f"line {n} is not JSON: {e}"}
            if not isinstance(rec, dict):
                rec = {"_error": f"line {n} is a JSON {type(rec).__name__}, not an object"}
            kinds = [k for k in KINDS if k in rec]
            err = rec.get("_error") or (None if len(kinds) == 1 else f"line {n} needs one of {', '.join(KINDS)}")
            kind, value = (None, line.strip()) if err else (kinds[0], rec[kinds[0]])
            items.append(item(str(rec.get("id", f"line {n}")), rec.get("task", task), kind, value,
                              rec.get("instruction"), rec.get("reference"), err))
    return items


# ----------------------------------------------------------------------------- answers

def generate(model, tok, samples, graphs, args, generator) -> list:
    """Answers of samples generated together (left-padded, one prefill, the KV cache)."""
    ids = [data.encode(s, tok, with_answer=False)[0] for s in samples]
    embeds, mask, _ = molecule.embed_inputs(model, ids, graphs, padding_side="left")
    out = model.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=args.max_new_tokens,
                         temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                         eos_token_ids=tok.eos_token_ids, generator=generator, pad_token_id=tok.pad_token_id)
    return [cut_answer(tok.decode(seq)) for seq in out]


def _alone(model, tok, r, args, gen):
    try:
        return generate(model, tok, [r[1]], [r[2]], args, gen)[0]
    except (RuntimeError, ValueError) as e:
        return e


def judge(sample, answer, reference=None) -> dict:
    """{"verdict": {"score", "reason"} | None, "rdkit": rdkit's value of weight / tpsa / logp | None}."""
    res = {"verdict": None, "rdkit": None}
    if sample.task in NO_REFERENCE or reference is not None:
        v = verify.verify(sample.task, sample.prompt, answer, reference)
        res["verdict"] = {"score": v.score, "reason": v.reason}
    if sample.task in verify.PROPERTIES:  # the molecule the verifier reads: the prompt's
        mol, _ = parse_molecule(prompt_molecule(sample.prompt) or "")
        res["rdkit"] = round(float(verify.PROPERTIES[sample.task][0](mol)[0]), 4) if mol is not None else None
    return res


def prepare(items, mol_format) -> None:
    """Each item's Sample (item["sample"]) or why it cannot be asked (item["error"]): no model needed."""
    for it in items:
        try:
            if not it["error"]:
                it["sample"] = make_item(it["task"], it["kind"], it["value"], it["id"], it["instruction"], mol_format)
        except BadInput as e:
            it["error"] = str(e)


def answer_all(model, tok, items, args, max_len, bar) -> list:
    """Prepared items -> one result dict per item, in order; a bad item's is {"id", "task", "input", "error"}."""
    ctx = model.config.max_position_embeddings
    results, ready = [], []
    for i, it in enumerate(items):
        results.append({"id": it["id"], "task": it["task"], "input": it["value"]})
        try:
            if it["error"]:
                raise BadInput(it["error"])
            s = it["sample"]
            s.length = data.sample_length(s, tok, with_answer=False)
            if s.length > max_len:
                raise BadInput(f"the prompt is {s.length} tokens ({s.n_atoms} atoms), over --max-len {max_len}")
            if s.length + args.max_new_tokens > ctx:
                raise BadInput(f"the prompt is {s.length} tokens ({s.n_atoms} atoms): with --max-new-tokens "
                               f"{args.max_new_tokens} it exceeds the model's context of {ctx}")
            g = data.featurize(s)
            if s.smiles is not None and g is None:
                raise BadInput(f"rdkit cannot featurize {s.smiles!r}")
            ready.append((i, s, g, it["reference"]))
            results[i]["prompt"] = s.prompt
        except BadInput as e:
            results[i]["error"] = str(e)
            bar.update(1)
    gen = torch.Generator(device=args.device).manual_seed(args.seed)
    ready.sort(key=lambda r: -r[1].length)  # similar lengths together: less padding
    for b in range(0, len(ready), args.batch_size):
        batch = ready[b:b + args.batch_size]
        try:
            texts = generate(model, tok, [r[1] for r in batch], [r[2] for r in batch], args, gen)
        except (RuntimeError, ValueError):  # e.g. out of memory: each item alone, so only a failing one fails
            texts = [_alone(model, tok, r, args, gen) for r in batch]
        for (i, s, _, ref), t in zip(batch, texts):
            if isinstance(t, Exception):
                del results[i]["prompt"]
                results[i]["error"] = f"generation failed: {(str(t).splitlines() or [type(t).__name__])[0]}"
            else:
                results[i].update({"answer": t, **judge(s, t, ref)})
        bar.update(len(batch))
    return results


def main(argv=None) -> int:
    ap = get_parser()
    args = ap.parse_args(argv)
    if args.batch_size < 1 or args.max_new_tokens < 1:
        ap.error("--batch-size and --max-new-tokens must be at least 1")  # exit code 2
    single = args.file is None
    if single:
        kind = next(k for k in KINDS if getattr(args, k) is not None)
        items = [item("input", args.task, kind, getattr(args, kind), args.instruction, args.reference,
                      "--task is required" if args.task is None else None)]
    else:
        try:
            items = read_file(args.file, args.task)
        except OSError as e:
            print(f"error: cannot read {args.file}: {e.strerror or e}", file=sys.stderr)
            return 2
        for it in items:  # the flags fill what a line leaves out
            for k in ("instruction", "reference"):
                it[k] = getattr(args, k) if it[k] is None else it[k]
    try:
        step_dir = checkpoint.resolve(args.ckpt)
        margs = checkpoint.read_meta(step_dir).get("args", {})
        prepare(items, margs.get("mol_format", "selfies"))
        if single and items[0]["error"]:  # said before the model loads
            raise BadInput(items[0]["error"])
        model, tok, _ = checkpoint.load_model(step_dir, args.device, torch.bfloat16 if args.device.startswith(
            "cuda") else torch.float32, log=lambda m: print(m, file=sys.stderr))
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    max_len = args.max_len or margs.get("max_len") or data.MAX_LEN
    bar = tqdm(total=len(items), desc="answers", unit="item", file=sys.stderr, dynamic_ncols=True, disable=single)
    results = answer_all(model, tok, items, args, max_len, bar)
    bar.close()
    if single:
        r = results[0]
        if "error" in r:
            print(f"error: {r['error']}", file=sys.stderr)
            return 2
        v, x = r["verdict"], r["rdkit"]
        print(f"answer: {r['answer']}" + (f"\nverdict: {v['reason']} (score {v['score']:g})" if v else "")
              + (f"\nrdkit: {x}" if x is not None else ""))
        return 0
    with open(args.out, "w", encoding="utf-8") if args.out else contextlib.nullcontext(sys.stdout) as f:
        f.writelines(json.dumps(r) + "\n" for r in results)
    n_bad = sum("error" in r for r in results)
    print(f"{len(results) - n_bad} answered, {n_bad} error(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
