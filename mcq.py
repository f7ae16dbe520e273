"""A verifiable benchmark: the test sets of the open-answer tasks as 4-option multiple choice.

    python mcq.py build --data demo|PATH --out mcq.jsonl     # the test records of --data -> questions
    python eval.py --mcq mcq.jsonl [--ckpt OUT | --ckpt none --base MODEL]   # accuracy per task, chance 0.25

Overlap metrics under-rate a correct caption worded differently, and one reference under-rates a correct
reaction answer; a question with one right option among four has a definite answer. Each test record of
molcap, dqa, experiment and the Mol2Mol tasks becomes one JSON line
    {"task", "id", "prompt", "options": [4 strings], "answer": index, "graph": graph-source SMILES or null}
("graph" is what eval needs to splice the molecule in for the prompt's <mol>).

How distractors are drawn (hard ones, so the benchmark separates models):
- They come from the answers of OTHER test records of the same task, distinct from the correct answer and
  from each other: by canonical molecule (stereo-free canonical SMILES, as the release compares molecules)
  for molecule answers, by normalised text (lower case, single spaces, no final '.') for text answers.
- Molecule answers: candidates ranked by Morgan (r=2, 2048 bits) Tanimoto of their answer molecule to the
  correct answer molecule. Text answers: ranked by the Tanimoto of the records' INPUT molecules (the text of
  a similar molecule), and for dqa the records asking the same question come first (an answer to another
  question is easy to rule out).
- Three are drawn from the HARD_POOL best-ranked candidates with a generator seeded by (seed, record id);
  the answer positions of a task are a seeded permutation of 0,1,2,3,0,1,... so each position holds the
  answer for a quarter of the questions (to within one). A record with fewer than 3 distinct other answers
  is skipped and counted.
Caveat, measured on the demo: the option most Morgan-similar to the prompt's input molecule is the right one
for forward and retrosynthesis 40/40 and molediting 39/40 (a product contains its reactants' atoms; other
records' answers do not), so accuracy() reports that model-free shortcut beside chance. Distractors made by
perturbing the right answer would close it; they are not drawn from other records, so not built here.
Scoring (eval.py --mcq): the model's log-likelihood of each option as the answer (teacher forced, one
forward per option, batched, no generation), averaged over the option's tokens (its end-of-turn included),
so long options are not penalised for their length; the best-scoring option is the model's choice.
"""
import argparse
import json
import os
import re
import time
from collections import Counter

import numpy as np
from rdkit import Chem, DataStructs, rdBase

import answers
import data
import distractors
import likelihood
import molecule
import numeric
import shortcuts
import significance
import truefalse
import verify
from chem import _hash
from readers import read_jsonl
from tasks import MOL_FORMATS
from tokenizer import MOL_PLACEHOLDER

MCQ_TASKS = ("forward", "reagent", "retrosynthesis", "solvent", "catalyst", "molediting", "molcap", "dqa", "experiment")
TEXT_ANSWER = ("molcap", "dqa", "experiment")
TRUEFALSE_TASKS = ("forward",) + truefalse.PROPERTY_TASKS   # "format": "truefalse" (truefalse.py)
NUMERIC_TASKS = numeric.TASKS                                  # "format": "numeric" (numeric.py)
FORMATS = ("choice4", "truefalse", "numeric")
ALL_TASKS = MCQ_TASKS + tuple(t for t in NUMERIC_TASKS if t not in MCQ_TASKS)
SAME_QUESTION_FIRST = ("dqa",)  # one question per record, of several kinds
N_OPTIONS = 4
HARD_POOL = 6   # distractors are drawn from this many most similar candidates
CHANCE = 1.0 / N_OPTIONS


def normalise_text(text: str) -> str:
    return re.sub(r"\s+", " ", str(text).lower()).strip().rstrip(".").strip()


def _fingerprint(smiles):
    if not smiles:
        return None
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    return answers.MORGAN_BITS.GetFingerprint(mol) if mol is not None else None


def _question(prompt: str) -> str:
    """The prompt without its input molecule: records asking the same question share it."""
    run = answers.prompt_molecule(prompt)
    return prompt.rsplit(run, 1)[0] if run else prompt


def _task_questions(task, samples, seed, skipped, limit=None):
    """Questions of one task; samples: objects with .id, .prompt, .answer, .smiles (data.Sample). limit: questions
    for the first `limit` records only, their distractors still drawn from all records."""
    text = task in TEXT_ANSWER
    keys, fps, kept = [], [], []
    for s in samples:
        if text:
            key, fp = normalise_text(s.answer), _fingerprint(s.smiles)
        else:
            mol, key = answers.mol_from_text(s.answer.strip())  # SELFIES, or SMILES with --mol-format smiles
            fp = answers.MORGAN_BITS.GetFingerprint(mol) if mol is not None else None
        if not key:
            skipped[task]["answer not a molecule" if not text else "empty answer"] += 1
            continue
        keys.append(key), fps.append(fp), kept.append(s)
    questions = [_question(s.prompt) for s in kept] if task in SAME_QUESTION_FIRST else None
    first_of = {}  # key -> index of the first record with that answer (its text is the option shown)
    for i, k in enumerate(keys):
        first_of.setdefault(k, i)
    valid = [j for j, f in enumerate(fps) if f is not None]
    counts = Counter(keys)
    frequent = [k for k, _ in counts.most_common(HARD_POOL * 2)]  # condition tasks: common answers as distractors
    out = []
    for i, s in enumerate(kept[:limit]):
        sims = np.zeros(len(kept))  # a record without a molecule is similar to nothing
        if fps[i] is not None and valid:
            sims[valid] = DataStructs.BulkTanimotoSimilarity(fps[i], [fps[j] for j in valid])
        best = {}  # candidate answer key -> rank of the best-ranked record holding that answer
        for j, k in enumerate(keys):
            if k == keys[i]:
                continue
            rank = (questions is not None and questions[j] == questions[i], float(sims[j]))
            if k not in best or rank > best[k]:
                best[k] = rank
        ranked = sorted(best, key=lambda k: (tuple(-x for x in best[k]), k))
        rng = np.random.default_rng([seed, _hash(f"{task}/{s.id}")])
        if text:
            picked = _pick_others(ranked, rng, N_OPTIONS - 1)
            wrong = [kept[first_of[k]].answer for k in picked]
        else:
            wrong = distractors.choose(task, s.prompt, s.answer, rng, N_OPTIONS - 1,
                                         [(k, kept[first_of[k]].answer) for k in ranked[:HARD_POOL * 4]
                                          + (frequent if task in shortcuts.CONDITION_TASKS else [])],
                                       counts if task in shortcuts.CONDITION_TASKS else None)
        if len(wrong) < N_OPTIONS - 1:
            skipped[task][f"fewer than {N_OPTIONS - 1} distinct distractors"] += 1
            continue
        out.append((s, s.answer, wrong))
    return _place(task, out, seed)


def _pick_others(ranked, rng, n):
    """n of the HARD_POOL best-ranked other-record answers, drawn without replacement ([] if there are too few)."""
    pool = ranked[:max(HARD_POOL, n)]
    if len(pool) < n:
        return []
    return [pool[j] for j in rng.choice(len(pool), n, replace=False)]


def _place(task, out, seed, fmt="choice4"):
    """(sample, right option, distractors) -> question lines; the answer positions of a task are a seeded
    permutation of 0,1,..,k-1,0,1,.. so each position holds the answer equally often (to within one)."""
    rng = np.random.default_rng([seed, _hash(f"positions/{task}/{fmt}")])
    k = len(out[0][2]) + 1 if out else N_OPTIONS
    positions = rng.permutation(np.resize(np.arange(k), len(out)))
    lines = []
    for (s, right, wrong), pos in zip(out, positions.tolist()):
        options = list(wrong)
        options.insert(pos, right)
        lines.append({"task": task, "id": s.id, "format": fmt, "prompt": s.prompt, "options": options,
                      "answer": pos, "graph": s.smiles})
    return lines


def _numeric_questions(task, samples, seed, skipped, population, limit=None):
    """Numeric multiple choice (numeric.py): the right value among N_OPTIONS - 1 drawn like the task's labels."""
    asked = {}  # the right values of every test record: the answers' ranks are balanced over these
    for s in samples:
        got = numeric.truths(task, s.prompt, s.answer)
        key = numeric.population_key(task, s.prompt)
        asked.setdefault(key, []).append(answers.first_number(got[1]) if got else None)
    asked = {k: numeric.Population(v) for k, v in asked.items()}
    pops = {k: numeric.Population(v) for k, v in population.items()} if population is not None else asked
    out = []
    for s in samples:
        got = numeric.truths(task, s.prompt, s.answer)
        key = numeric.population_key(task, s.prompt)
        rng = np.random.default_rng([seed, _hash(f"numeric/{task}/{s.id}")])
        wrong = (numeric.options(task, s.prompt, got[1], pops[key], rng, N_OPTIONS - 1, asked.get(key))
                 if got and key in pops else [])
        if not wrong:
            skipped[task]["numeric: no label or no distractors outside tolerance"] += 1
            continue
        out.append((s, got[1], wrong))
        if limit is not None and len(out) >= limit:
            break
    return _place(task, out, seed, fmt="numeric")


def build(samples, seed=0, tasks=ALL_TASKS, limit=None, population=None, formats=FORMATS):
    """Test samples (any order, any tasks) -> (questions, {task: {reason: skipped}}). Deterministic in seed.
    Per task every format it has: 4-option "choice4" (MCQ_TASKS), "truefalse" (TRUEFALSE_TASKS) and
    "numeric" (NUMERIC_TASKS). limit: at most this many questions per task and format (the first records;
    distractors still from all of them). population: {numeric.population_key: label values} the numeric
    distractors are drawn like (the training labels; default: the test labels). formats: those to build."""
    by_task, skipped = {}, {t: Counter() for t in tasks}
    for s in samples:
        if s.task in tasks:
            by_task.setdefault(s.task, []).append(s)
    questions = []
    for task in tasks:
        if task not in by_task:
            continue
        if task in MCQ_TASKS and "choice4" in formats:
            questions += _task_questions(task, by_task[task], seed, skipped, limit)
        if task == "forward" and "truefalse" in formats:
            questions += truefalse.product_questions(by_task[task], seed, skipped, limit)
        elif task in TRUEFALSE_TASKS and "truefalse" in formats:
            questions += truefalse.property_questions(task, by_task[task], seed, skipped, limit)
        if task in NUMERIC_TASKS and "numeric" in formats:
            pop = {k: v for k, v in population.items() if k.split("/")[0] == task} if population else None
            questions += _numeric_questions(task, by_task[task], seed, skipped, pop or None, limit)
    return questions, {t: dict(c) for t, c in skipped.items() if c}


def write(questions, path):
    with open(path, "w") as f:
        for q in questions:
            f.write(json.dumps(q) + "\n")


def read(path):
    """mcq.jsonl -> questions; a line without the keys or with a bad answer index is an error naming the line."""
    out = read_jsonl(path, ("task", "id", "prompt", "options", "answer"))
    for i, q in enumerate(out, 1):
        if not (isinstance(q["options"], list) and len(q["options"]) >= 2
                and isinstance(q["answer"], int) and 0 <= q["answer"] < len(q["options"])):
            raise ValueError(f"{path}: question {i} ({q['id']}): options must be a list of >= 2 strings and "
                             "answer an index into it")
        q.setdefault("format", "choice4" if len(q["options"]) == N_OPTIONS else "choice")
    return out


# ----------------------------------------------------------------------------- validity

def _option_key(q, option):
    fmt = q.get("format", "choice4")
    if fmt == "numeric":
        x = answers.first_number(str(option))
        return repr(x) if x is not None else normalise_text(option)
    if q["task"] in TEXT_ANSWER or fmt == "truefalse":
        return normalise_text(option)
    return answers.mol_from_text(str(option).strip())[1] or normalise_text(option)


def _problem(q):
    """The problem of one question's answer, or None: a true/false claim's verdict (truefalse.claim_problem);
    where verify.py has a verifier for the task, exactly one option verified right (score 1), the answer."""
    if q.get("format") == "truefalse":
        return truefalse.claim_problem(q)
    ref = q["options"][q["answer"]]
    if verify.verify(q["task"], q["prompt"], ref, ref).reason == "not verifiable":
        return None
    right = [j for j, o in enumerate(q["options"]) if verify.verify(q["task"], q["prompt"], o, ref).score == 1]
    return None if right == [q["answer"]] else f"options verified right {right}, answer {q['answer']}"


def check(questions):
    """-> problems, one line each ([] for a valid file): per question, distinct options (canonical molecule,
    number or normalised text), no option of a 4-option question the prompt's input molecule, and _problem's
    answer check; per task and format, answer positions balanced (counts within one of each other: for
    true/false, as many Yes as No)."""
    problems, positions = [], {}
    for q in questions:
        where = f"{q['task']} {q['id']}" + ("" if q.get("format", "choice4") == "choice4" else f" ({q['format']})")
        keys = [_option_key(q, o) for o in q["options"]]
        if len(set(keys)) < len(keys):
            problems.append(f"{where}: duplicate options")
        src = answers.mol_from_text(answers.prompt_molecule(q["prompt"]) or "")[1]
        if q.get("format", "choice4") == "choice4" and q["task"] not in TEXT_ANSWER and src and src in keys:
            problems.append(f"{where}: an option is the prompt's input molecule")
        if (why := _problem(q)) is not None:
            problems.append(f"{where}: {why}")
        positions.setdefault((q["task"], q.get("format", "choice4"), len(q["options"])), Counter())[q["answer"]] += 1
    for (task, fmt, k), c in positions.items():
        counts = [c.get(j, 0) for j in range(k)]
        if max(counts) - min(counts) > 1:
            problems.append(f"{task} ({fmt}): answer positions unbalanced {counts}")
    return problems


# ----------------------------------------------------------------------------- scoring

def option_scores(model, tok, questions, batch_size=16, graphs=True):
    """-> per question a list of length-normalised log-likelihoods, one per option: the mean log p of the
    option's tokens (end-of-turn included) after the question. graphs=False (a base model without the
    molecule encoder) drops the <mol> placeholder: the prompt's SELFIES text is the model's only view."""
    items, texts, owner = [], [], []
    for qi, q in enumerate(questions):
        g = molecule.smiles_to_graph(q["graph"]) if graphs and q.get("graph") else None
        prompt = q["prompt"] if graphs else q["prompt"].replace(MOL_PLACEHOLDER, "")
        for oi, opt in enumerate(q["options"]):
            if len(str(opt)) <= answers.MAX_CHARS:  # a longer option is never chosen, and costs no forward pass
                items.append((prompt, g)), texts.append(str(opt)), owner.append((qi, oi))
    lps = likelihood.answer_logprobs(model, tok, items, texts, batch_size=batch_size)
    scores = [[float("-inf")] * len(q["options"]) for q in questions]
    for (qi, oi), lp in zip(owner, lps):
        scores[qi][oi] = float(lp.mean())
    return scores


def shortcut_scores(questions):
    """A model-free floor: each molecule option's Morgan Tanimoto to the prompt's input molecule (None for text
    answers or a prompt without a molecule). The right product of a reaction, the reactants of a product and
    an edit of a molecule all resemble the input more than other records' answers do, so on forward,
    retrosynthesis and molediting this shortcut is strong; read a model's accuracy against it, not only chance."""
    out = []
    for q in questions:
        src = answers.mol_from_text(answers.prompt_molecule(q["prompt"]) or "")[0]
        if q["task"] in TEXT_ANSWER or src is None or q.get("format", "choice4") != "choice4":
            out.append(None)
            continue
        fp = answers.MORGAN_BITS.GetFingerprint(src)
        mols = [answers.mol_from_text(str(o).strip())[0] for o in q["options"]]
        out.append([DataStructs.TanimotoSimilarity(fp, answers.MORGAN_BITS.GetFingerprint(m)) if m is not None else -1.0
                    for m in mols])
    return out


def accuracy(questions, scores):
    """-> {group: {"accuracy", "chance", "shortcut", "strongest", "format", "N"}}, a group per task and format
    (shortcuts.group: "forward", "forward (truefalse)", "logp (numeric)"), then "all (FORMAT)" per format when
    there are several, and "all". The choice is the first best option. "chance": the mean of 1 / options;
    "shortcut": shortcut_scores' accuracy (4-option molecule questions, else None); "strongest": the best
    model-free shortcut of shortcuts.report on the group, [name, accuracy] (None where none applies)."""
    hits, cut, chance, fmts = {}, {}, {}, {}
    for q, sc, sh in zip(questions, scores, shortcut_scores(questions)):
        g = shortcuts.group(q)
        fmts[g] = q.get("format", "choice4")
        hits.setdefault(g, []).append(int(np.argmax(sc)) == q["answer"])
        chance.setdefault(g, []).append(1.0 / len(q["options"]))
        if sh is not None:
            cut.setdefault(g, []).append(int(np.argmax(sh)) == q["answer"])
    rep = shortcuts.report(questions)
    out = {}
    for g, h in hits.items():
        best = max(((k, v) for k, v in rep[g].items() if k not in ("chance", "N")), key=lambda kv: kv[1], default=None)
        out[g] = {"accuracy": float(np.mean(h)), "chance": float(np.mean(chance[g])),
                  "shortcut": float(np.mean(cut[g])) if g in cut else None,
                  "strongest": [best[0], best[1]] if best else None, "format": fmts[g], "N": len(h)}
    totals = {}
    for g in hits:
        totals.setdefault(fmts[g], []).append(g)
    rows = ([(f"all ({f})", gs) for f, gs in totals.items()] if len(totals) > 1 else []) + [("all", list(hits))]
    for name, gs in rows:
        every, ch = [x for g in gs for x in hits[g]], [c for g in gs for c in chance[g]]
        fmt = name[5:-1] if name != "all" else "all"
        out[name] = {"accuracy": float(np.mean(every)), "chance": float(np.mean(ch)), "shortcut": None,
                     "strongest": None, "format": fmt, "N": len(every)}
    return out


def bootstrap(hits, rounds=2000, seed=0, level=0.95):
    """-> (low, high): the percentile bootstrap interval of the mean of `hits` (0/1 per question), questions
    resampled with replacement `rounds` times from a generator seeded with `seed`; (nan, nan) for no hits."""
    hits = np.asarray(hits, dtype=float)
    if not len(hits):
        return float("nan"), float("nan")
    means = hits[np.random.default_rng(seed).integers(0, len(hits), size=(rounds, len(hits)))].mean(axis=1)
    return tuple(float(x) for x in np.quantile(means, [(1 - level) / 2, (1 + level) / 2]))


def intervals(questions, scores, rounds=2000, seed=0):
    """-> {group: (low, high)}: bootstrap intervals of accuracy() per group, per format ("all (FORMAT)") and
    overall ("all"); the choice is the first best option, as accuracy()'s."""
    hits = {}
    for q, sc in zip(questions, scores):
        hit = int(np.argmax(sc)) == q["answer"]
        for g in (shortcuts.group(q), f"all ({q.get('format', 'choice4')})", "all"):
            hits.setdefault(g, []).append(hit)
    return {g: bootstrap(h, rounds, seed) for g, h in hits.items()}


def table(acc) -> str:
    lines = ["| group | accuracy | chance | input-similarity shortcut | strongest shortcut | N |",
             "|---|---|---|---|---|---|"]
    for t, v in acc.items():
        best = v.get("strongest")
        lines.append(f"| {t} | {v['accuracy']:.3f} | {v['chance']:.2f} | "
                     f"{'n/a' if v.get('shortcut') is None else format(v['shortcut'], '.3f')} | "
                     f"{'n/a' if not best else f'{best[0]} {best[1]:.3f}'} | {v['N']} |")
    return "\n".join(lines)


def compare(a, b, rounds=2000, seed=0):
    """Two eval.py --mcq results (mcq_results.json contents) of the same questions -> {group: {"N", "a", "b",
    "diff", "CI"}}: accuracy per group (shortcuts.group, and "all") over the questions both scored, a - b and its
    95% paired bootstrap interval over the questions (significance.paired_diff; > 0: a better)."""
    hits = {}
    # a record gives one question per format under the same id: a question is (id, format)
    ra, rb = ({(s["id"], s.get("format", "choice4")): s for s in r["_scores"]} for r in (a, b))

    def hit(s):  # an option too long to score was written as null (-inf)
        return float(int(np.argmax([-np.inf if x is None else x for x in s["scores"]])) == s["answer"])
    for i, s in ra.items():
        if i not in rb:
            continue
        for g in (shortcuts.group(s), "all"):
            hits.setdefault(g, ([], []))
            hits[g][0].append(hit(s))
            hits[g][1].append(hit(rb[i]))
    out = {}
    for g, (ha, hb) in hits.items():
        d, lo, hi = significance.paired_diff(ha, hb, n_boot=rounds, seed=seed)
        out[g] = {"N": len(ha), "a": float(np.mean(ha)), "b": float(np.mean(hb)), "diff": d, "CI": (lo, hi)}
    return out


def compare_table(cmp, name_a="a", name_b="b") -> str:
    lines = [f"| group | N | {name_a} | {name_b} | {name_a} - {name_b} [95% paired CI] | better |",
             "|---|---|---|---|---|---|"]
    for g, v in cmp.items():
        lo, hi = v["CI"]
        better = name_a if lo > 0 else name_b if hi < 0 else "neither"
        lines.append(f"| {g} | {v['N']} | {v['a']:.3f} | {v['b']:.3f} | {v['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}] | "
                     f"{better} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI

def build_main(args):
    """`python mcq.py build`: the test records of --data -> questions in --out (JSON lines)."""
    tasks = list(data.parse_tasks(args.tasks)) if args.tasks else list(ALL_TASKS)
    if data.arith.KEY in tasks:
        raise SystemExit(f"mcq.py: {data.arith.KEY} is a generated training mix, not a benchmark task")
    root, left_out = data.resolve_data(args.data)
    samples, population = [], {}
    for key in tasks:
        if key in left_out or not data.task_files(root, data.TASKS[key], "test"):
            print(f"[mcq] {key}: no test records in {root}, left out")
            continue
        samples += data.load_tasks(key, split="test", data=args.data, verbose=False, mol_format=args.mol_format)
        if key in NUMERIC_TASKS and data.task_files(root, data.TASKS[key], "train"):  # the labels' distribution
            for s in data.load_tasks(key, split="train", data=args.data, verbose=False, mol_format=args.mol_format):
                population.setdefault(numeric.population_key(key, s.prompt), []).append(answers.first_number(s.answer))
    t0 = time.time()
    formats = tuple(f.strip() for f in args.formats.split(","))
    if set(formats) - set(FORMATS):
        raise ValueError(f"unknown format in --formats {args.formats!r}; known: {', '.join(FORMATS)}")
    questions, skipped = build(samples, seed=args.seed, tasks=tasks, limit=args.limit, population=population,
                               formats=formats)
    seconds = time.time() - t0
    write(questions, args.out)
    counts = Counter(shortcuts.group(q) for q in questions)
    print("[mcq] questions per task (format): " + ", ".join(f"{t} {n}" for t, n in counts.items()))
    for t, why in skipped.items():
        print(f"[mcq] {t}: skipped " + ", ".join(f"{n} ({r})" for r, n in why.items()))
    problems = check(questions)
    print(f"[mcq] validity: {len(problems)} problems" + "".join(f"\n  {p}" for p in problems[:20]))
    print("[mcq] model-free shortcuts (accuracy, the better direction; chance beside):\n" +
          shortcuts.table(shortcuts.report(questions)))
    print(f"wrote {len(questions)} questions to {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB, "
          f"built in {seconds:.1f} s)")
    return problems


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="the multiple-choice benchmark from the test records of --data")
    b.add_argument("--data", default="demo", help="demo or a data folder (default: demo)")
    b.add_argument("--out", default="mcq.jsonl", help="questions, one JSON object per line (default: mcq.jsonl)")
    b.add_argument("--tasks", default=None, help="comma list; default: molcap, dqa, experiment, the Mol2Mol tasks "
                   "(4 options) and weight, tpsa, logp, homolumo, yield (numeric; true/false for forward and the "
                   "rdkit properties)")
    b.add_argument("--formats", default=",".join(FORMATS), help="comma list of question formats to build "
                   f"(default: {','.join(FORMATS)})")
    b.add_argument("--seed", type=int, default=0, help="distractor draws and answer positions (default: 0)")
    b.add_argument("--limit", type=int, default=None, help="questions for the first N test records of each task "
                   "only (their distractors still drawn from all records); default: every record")
    b.add_argument("--mol-format", default="selfies", choices=MOL_FORMATS, help="molecules in prompts and options, "
                   "as the checkpoint to be scored was trained (default: selfies)")
    c = sub.add_parser("check", help="validity checks on a built file: exit 1 on any problem")
    c.add_argument("file")
    m = sub.add_parser("compare", help="two eval.py --mcq results of the same questions: accuracy per group, the "
                       "difference with its 95%% paired bootstrap interval (> 0: the first better)")
    m.add_argument("a", help="mcq_results.json of the first model")
    m.add_argument("b", help="mcq_results.json of the second")
    args = p.parse_args(argv)
    if args.cmd == "compare":
        a, b = (json.load(open(f)) for f in (args.a, args.b))
        cmp = compare(a, b)
        print(f"a: {a['_meta']['model']}\nb: {b['_meta']['model']}\n\n" + compare_table(cmp))
        return cmp
    if args.cmd == "check":
        problems = check(read(args.file))
        print("\n".join(problems) or "ok: every check passed")
        raise SystemExit(1 if problems else 0)
    build_main(args)


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as e:  # bad paths, tasks, data files: the message, not a traceback
        raise SystemExit(f"mcq.py: error: {e}") from None
