"""Model-free shortcuts on multiple-choice questions: what a benchmark scores without any chemistry.

    scores(questions)   -> {shortcut: per question a list of option scores, or None where it does not apply}
    report(questions)   -> {group: {shortcut: accuracy, "chance", "N"}}   group = task, or "task (format)"
    group(q)            -> the name a question is reported under

A shortcut ranks the options by a surface feature; its accuracy is the better of picking the highest and the
lowest score (a feature that marks the answer by being small is as exploitable as one that marks it by being
large), ties going to the first option (positions are balanced, so a tie costs chance). The shortcuts:
- similarity: Morgan (r=2, 2048 bits) Tanimoto of a molecule option to the prompt's input molecule
- consensus:  mean Tanimoto of a molecule option to the other options (the centre of a set of edits)
- length:     characters of the option
- overlap:    the fraction of the option's tokens (SELFIES tokens, else words) that occur in the prompt
- majority:   condition tasks: how often the option is the right answer of the task's OTHER questions
- value:      numeric options: the value itself (the largest or the smallest option)
- middle:     numeric options: distance of the value from the median option value
- prior:      numeric options: distance of the value from the mean right answer of the task's other questions
- first / second: true/false questions: always the first ("Yes") / always the second option ("No")
- true/false questions with a claim: "similarity" (the claimed product's Tanimoto to the reactants), "length"
  (its characters), "prior" (the claimed threshold): Yes when the feature is above the group's median (or, the
  other direction, below it); a claim that is true more often when its product resembles the reactants, or when
  its threshold is low, is found this way
The benchmark's target: every shortcut within chance + 0.15 on every group.
"""
import re
from collections import Counter

import numpy as np
from rdkit import DataStructs

import answers

CONDITION_TASKS = ("reagent", "solvent", "catalyst")
_TOKENS = re.compile(r"\[[^\[\]]+\]|[^\s\[\]]+")


def group(q):
    fmt = q.get("format", "choice4")
    return q["task"] if fmt == "choice4" else f"{q['task']} ({fmt})"


def _fp(text):
    mol = answers.mol_from_text(str(text).strip())[0]
    return answers.MORGAN_BITS.GetFingerprint(mol) if mol is not None else None


def _number(text):
    return answers.first_number(str(text))


def _similarity(q, fps):
    src = _fp(answers.prompt_molecule(q["prompt"]) or "")
    if src is None or all(f is None for f in fps):
        return None
    return [DataStructs.TanimotoSimilarity(src, f) if f is not None else -1.0 for f in fps]


def _consensus(fps):
    if sum(f is not None for f in fps) < 2:
        return None
    out = []
    for i, f in enumerate(fps):
        others = [g for j, g in enumerate(fps) if j != i and g is not None]
        out.append(float(np.mean(DataStructs.BulkTanimotoSimilarity(f, others))) if f is not None else -1.0)
    return out


def _overlap(q):
    prompt = set(_TOKENS.findall(q["prompt"]))
    return [len(set(t) & prompt) / len(set(t)) if (t := _TOKENS.findall(str(o))) else 0.0 for o in q["options"]]


def _key(text):
    return answers.mol_from_text(str(text).strip())[1] or str(text).strip().lower()


def _claim_features(q):
    """{shortcut: value} of a true/false question's claim (see the module docstring); {} without a claim."""
    claim = q.get("claim") if q.get("format") == "truefalse" else None
    if not isinstance(claim, dict):
        return {}
    if "threshold" in claim:
        return {"prior": float(claim["threshold"])}
    option = str(claim.get("option", ""))
    sim = _similarity({"prompt": claim.get("prompt", "")}, [_fp(option)])
    return {"similarity": sim[0] if sim else None, "length": float(len(option))}


def _claim_scores(questions):
    """-> [per question: {shortcut: [Yes score, No score]}]: the feature minus the group's median, for Yes."""
    feats = [_claim_features(q) for q in questions]
    values = {}
    for q, f in zip(questions, feats):
        for k, v in f.items():
            if v is not None:
                values.setdefault((group(q), k), []).append(v)
    med = {gk: float(np.median(v)) for gk, v in values.items()}
    return [{k: [v - med[(group(q), k)], med[(group(q), k)] - v] for k, v in f.items() if v is not None}
            for q, f in zip(questions, feats)]


def scores(questions):
    """-> {shortcut: [per question: option scores or None]} (see the module docstring)."""
    out = {name: [] for name in ("similarity", "consensus", "length", "overlap", "majority", "value", "middle",
                                 "prior")}
    answer_counts, values = {}, {}
    for q in questions:
        answer_counts.setdefault(q["task"], Counter())[_key(q["options"][q["answer"]])] += 1
        x = _number(q["options"][q["answer"]])
        if q.get("format") == "numeric" and x is not None:
            values.setdefault(q["task"], []).append(x)
    for q in questions:
        fmt = q.get("format", "choice4")
        mol_options = fmt == "choice4"
        fps = [_fp(o) for o in q["options"]] if mol_options else [None] * len(q["options"])
        out["similarity"].append(_similarity(q, fps) if mol_options else None)
        out["consensus"].append(_consensus(fps) if mol_options else None)
        out["length"].append([float(len(str(o))) for o in q["options"]] if fmt != "truefalse" else None)
        out["overlap"].append(_overlap(q) if fmt != "truefalse" else None)
        if q["task"] in CONDITION_TASKS and fmt == "choice4":
            counts, own = answer_counts[q["task"]], _key(q["options"][q["answer"]])
            out["majority"].append([counts[_key(o)] - (_key(o) == own) for o in q["options"]])
        else:
            out["majority"].append(None)
        xs = [_number(o) for o in q["options"]]
        if fmt == "numeric" and None not in xs:
            out["value"].append([float(x) for x in xs])
            med = float(np.median(xs))
            out["middle"].append([abs(x - med) for x in xs])
            vals = values.get(q["task"], [])
            own = _number(q["options"][q["answer"]])
            prior = (sum(vals) - own) / (len(vals) - 1) if len(vals) > 1 else med  # leave this question out
            out["prior"].append([abs(x - prior) for x in xs])
        else:
            out["value"].append(None), out["middle"].append(None), out["prior"].append(None)
    for i, claim in enumerate(_claim_scores(questions)):
        for name, sc in claim.items():
            out[name][i] = sc
    return out


def _hit(sc, answer, lowest=False):
    a = np.asarray(sc, dtype=float)
    return int(np.argmin(a) if lowest else np.argmax(a)) == answer


def report(questions):
    """-> {group: {shortcut: accuracy (the better direction), "chance": 1 / options, "N": questions}}."""
    all_scores = scores(questions)
    out = {}
    for i, q in enumerate(questions):
        g = out.setdefault(group(q), {"chance": 1.0 / len(q["options"]), "N": 0, "_hits": {}})
        g["N"] += 1
        for name, per_q in all_scores.items():
            if per_q[i] is not None:
                hits = g["_hits"].setdefault(name, [[], []])
                hits[0].append(_hit(per_q[i], q["answer"])), hits[1].append(_hit(per_q[i], q["answer"], True))
        if q.get("format") == "truefalse":
            for name, pos in (("first", 0), ("second", 1)):
                g["_hits"].setdefault(name, [[], []])[0].append(q["answer"] == pos)
    for g in out.values():
        for name, (high, low) in g.pop("_hits").items():
            g[name] = max(float(np.mean(high)), float(np.mean(low)) if low else 0.0)
    return out


def worst(rep):
    """-> (group, shortcut, accuracy - chance) of the strongest shortcut, or None for an empty report."""
    cells = [(g, k, v - r["chance"]) for g, r in rep.items() for k, v in r.items() if k not in ("chance", "N")]
    return max(cells, key=lambda c: c[2]) if cells else None


def table(rep) -> str:
    names = [k for k in ("similarity", "consensus", "length", "overlap", "majority", "value", "middle", "prior",
                         "first", "second") if any(k in r for r in rep.values())]
    lines = ["| group | N | chance | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    for g, r in rep.items():
        cells = ["" if k not in r else f"{r[k]:.2f}" for k in names]
        lines.append(f"| {g} | {r['N']} | {r['chance']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
