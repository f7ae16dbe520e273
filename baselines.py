"""Trivial baselines for every scored task, from the training split of the same data.

A score means little without what a trivial guess gets on the same items. Per scored set (task key,
yield_BH / yield_SM for yield), each baseline answers every test item, and the answers are scored by
the same scorer as the model's (eval.py passes its own, so metric keys and text tokens are identical):

    mean, median          numeric tasks (weight, tpsa, logp, homolumo per HOMO/LUMO/gap bucket, yield):
                          the mean / median of the training answers
    majority              reagent, solvent, catalyst: the most frequent training answer (exact string)
    copy input            Mol2Mol tasks: the input molecule itself (for a reaction, its reactants), in
                          the prompt's format (SELFIES, or SMILES with --mol-format smiles)
    nearest neighbour     every task with a molecule input: the answer of the most similar training
                          input (Morgan bit vectors r=2, 2048 bits, Tanimoto; ties -> the earlier record)

    scores = baselines.score(train_items, test_rows)   # {task: {baseline: {metric: value}}}

Items are dicts: "task" (the scored name; training items of yield may say "yield"), "prompt",
"reference" (or "answer"), and optionally "smiles" (the graph-source SMILES, used for the fingerprint
when the prompt holds no SELFIES, e.g. experiment's $k$ placeholders). An input no fingerprint can be
made of gets an empty answer (a miss, counted in the denominators as the model's misses are).
"""
import collections
import re
import statistics

from rdkit import Chem, DataStructs, rdBase

import answers
import metrics

COPY_TASKS = ("forward", "reagent", "retrosynthesis", "solvent", "catalyst", "molediting")  # Mol2Mol
MAJORITY_TASKS = ("reagent", "solvent", "catalyst")  # small answer sets
NUMERIC_KINDS = ("number", "homolumo", "yield")
NAMES = ("mean", "median", "majority", "copy input", "nearest neighbour")

_TOKEN = r"\[[^\[\]\s]+\]"
_MOLECULE = re.compile(rf"(?:{_TOKEN})+(?:\.(?:{_TOKEN})+)*")  # SELFIES, fragments joined by '.'


def base_task(name):
    """The task key of a scored set: yield_BH / yield_SM -> yield."""
    return "yield" if name.startswith("yield_") else name


def _ref(item):
    return str(item.get("reference", item.get("answer")) or "").strip()


# ----------------------------------------------------------------------------- inputs

def input_molecules(prompt):
    """The SELFIES strings in a prompt, in order (a reaction 'A.B>>C' gives 'A.B' and 'C')."""
    return _MOLECULE.findall(prompt or "")


def _last_word(prompt):  # every template ends with its input ("... sequence is: [C][C][O]", "... is A>>B.")
    words = (prompt or "").split()
    return words[-1].rstrip(".") if words else ""


def copy_input(prompt):
    """The copy-the-input answer: the prompt's input molecule (SELFIES or SMILES, --mol-format), for a
    reaction its reactants (the part before '>>'); "" if there is none."""
    last = _last_word(prompt).split(">>")[0]
    if answers.mol_from_text(last)[0] is not None:
        return last
    mols = input_molecules((prompt or "").split(">>")[0])  # SELFIES not at the very end
    return mols[-1] if mols else ""


def fingerprint(prompt, smiles=None):
    """Morgan bit vector of the prompt's input as one (multi-fragment) molecule, a reaction's both sides
    included; else of all SELFIES in the prompt; else of `smiles`; None if none gives a molecule. Never raises."""
    mol = answers.mol_from_text(_last_word(prompt).replace(">>", "."))[0]
    mols = input_molecules(prompt) if mol is None else []
    if mols:
        mol, _ = answers.mol_from_selfies(".".join(mols))
    if mol is None and smiles:
        with rdBase.BlockLogs():
            mol = Chem.MolFromSmiles(smiles)
    return answers.MORGAN_BITS.GetFingerprint(mol) if mol is not None else None


# ----------------------------------------------------------------------------- predictors

def _number(kind, text):
    return answers.first_number(text) if kind == "number" else answers.strict_float(text)


def _bucket(prompt):  # homolumo: the prompt says which quantity (metrics.homolumo_metrics' rule)
    homo, lumo = "HOMO" in prompt, "LUMO" in prompt
    return "GAP" if homo and lumo else "HOMO" if homo else "LUMO" if lumo else None


def _fmt(x):
    return format(x, ".6g")


def _central(kind, pool, test, fn):
    """mean/median answers: one value per homolumo bucket, else one value for the task."""
    key = (lambda it: _bucket(it.get("prompt") or "")) if kind == "homolumo" else (lambda it: None)
    values = collections.defaultdict(list)
    for it in pool:
        v = _number(kind, _ref(it))
        if v is not None:
            values[key(it)].append(v)
    every = [v for vs in values.values() for v in vs]
    if not every:
        return None
    return [_fmt(fn(values.get(key(it)) or every)) for it in test]


def _nearest(pool, test):
    fps = [(fingerprint(it.get("prompt"), it.get("smiles")), _ref(it)) for it in pool]
    fps = [(fp, ans) for fp, ans in fps if fp is not None]
    if not fps:
        return None
    pool_fps, answers = [fp for fp, _ in fps], [a for _, a in fps]
    out = []
    for it in test:
        fp = fingerprint(it.get("prompt"), it.get("smiles"))
        if fp is None:
            out.append("")
            continue
        sims = DataStructs.BulkTanimotoSimilarity(fp, pool_fps)
        out.append(answers[max(range(len(sims)), key=sims.__getitem__)])  # first maximum: the earlier record
    return out


def predict(train, test):
    """-> {task: {baseline: [answer per test item of that task, in order]}} for the tasks in `test`."""
    test_by, train_by = collections.defaultdict(list), collections.defaultdict(list)
    for it in test:
        test_by[it["task"]].append(it)
    for it in train:
        train_by[it["task"]].append(it)
    out = {}
    for task, items in test_by.items():
        pool = train_by.get(task) or train_by.get(base_task(task)) or []
        if not pool:
            continue
        kind, key, preds = metrics.answer_kind(task), base_task(task), {}
        if kind in NUMERIC_KINDS:
            preds["mean"] = _central(kind, pool, items, statistics.fmean)
            preds["median"] = _central(kind, pool, items, statistics.median)
        if key in MAJORITY_TASKS:
            preds["majority"] = [collections.Counter(_ref(it) for it in pool).most_common(1)[0][0]] * len(items)
        if key in COPY_TASKS:
            preds["copy input"] = [copy_input(it.get("prompt")) for it in items]
        has_molecule = any(fingerprint(it.get("prompt"), it.get("smiles")) is not None for it in items[:8])
        if has_molecule:
            preds["nearest neighbour"] = _nearest(pool, items)
        out[task] = {k: v for k, v in preds.items() if v is not None}
    return out


def baseline_rows(train, test):
    """-> {baseline: rows}: the test rows with each baseline's answer as "prediction" (the predictions.jsonl
    schema), only for the tasks that baseline applies to."""
    preds, pos = predict(train, test), collections.Counter()
    rows = collections.defaultdict(list)
    for it in test:
        j = pos[it["task"]]
        pos[it["task"]] += 1
        for name, texts in preds.get(it["task"], {}).items():
            rows[name].append({"task": it["task"], "id": it.get("id"), "prompt": it.get("prompt"),
                               "prediction": texts[j], "reference": it.get("reference", it.get("answer"))})
    return dict(rows)


def _score_rows(rows):
    by = collections.defaultdict(list)
    for r in rows:
        by[r["task"]].append(r)
    return {t: metrics.score_task(t, rs) for t, rs in by.items()}


def score(train, test, score_rows=None, rows=None):
    """-> {task: {baseline: {metric: value}}}, scored by `score_rows(rows) -> {task: metrics}` (default:
    metrics.score_task per task with its defaults; eval.py passes its own scorer). rows: baseline_rows(train,
    test) when the caller already has them."""
    score_rows = score_rows or _score_rows
    out = collections.defaultdict(dict)
    for name, rows in (rows if rows is not None else baseline_rows(train, test)).items():
        for task, res in score_rows(rows).items():
            out[task][name] = res
    return {t: {n: out[t][n] for n in NAMES if n in out[t]} for t in out}
