"""True/false questions, each with a claim that verify.py decides, and labels that give nothing away.

    product_questions(samples, seed, skipped)      forward: "Is this molecule the product of these reactants?"
    property_questions(task, samples, seed, skipped)   weight / tpsa / logp: "Is the LogP of this molecule above t?"
    claim_problem(q)   -> None when the claim's verdict is the question's answer, else the problem in words

Options are always ("Yes", "No"), the answer index 0 or 1, and every line carries
    "claim": {"prompt": the record's own prompt, "option": a product, "reference": the record's answer}   or
    "claim": {"prompt": the record's own prompt, "threshold": t}
so check() re-derives the label: the product is right iff verify.verify("forward", prompt, option, reference)
passes; "above t" is true iff every value verify.py accepts for the property (rdkit's, for the prompt's
molecule; tpsa has two) is above t + tolerance, false iff every one is below t - tolerance, and neither
(ambiguous) is a problem.

Products: a seeded half of the records (a balanced permutation) ask about their own product, the other half
about a distractor of it, one chemical edit chosen by distractors.choose (so its similarity to the reactants,
length and token overlap are on either side of the right product's at random).
Properties: records are paired, and both questions of a pair ask about the SAME threshold t, between their two
values and more than MARGIN tolerances from each: one pair member's answer is Yes, the other's No. So t alone
(e.g. "a threshold above the task's mean is usually No") predicts nothing; each pair's partner is the nearest
record in value that is far enough (hard questions, not a split at the median).
"""
import numpy as np

import answers
import distractors
import verify
from chem import _hash

YES_NO = ("Yes", "No")
PROPERTY_TASKS = ("weight", "tpsa", "logp")
MARGIN = 1.5      # the threshold is at least this many verify.py tolerances from either value of its pair
QUESTION = {"weight": "Is the molecular weight of this molecule above {t} g/mol?",
            "tpsa": "Is the topological polar surface area (TPSA) of this molecule above {t}?",
            "logp": "Is the LogP of this molecule above {t}?"}
PRODUCT_QUESTION = ("Based on the given reactants and reagents, is the proposed molecule the product of the "
                    "reaction? Answer Yes or No. Reactants and reagents: {reactants} Proposed product: {product}")


def _line(task, s, prompt, label, claim):
    return {"task": task, "id": s.id, "format": "truefalse", "prompt": prompt, "options": list(YES_NO),
            "answer": label, "graph": s.smiles, "claim": claim}


def _head(prompt):
    """The text before the instruction ("<mol>\\n" where the graph goes), or "" without a newline."""
    return prompt[:prompt.index("\n") + 1] if "\n" in prompt else ""


def product_questions(samples, seed, skipped, limit=None):
    """forward records -> true/false lines (see the module docstring); a record without a wrong candidate is
    skipped and counted in skipped["forward"] (a Counter)."""
    kept = []
    for s in samples:
        reactants = answers.prompt_molecule(s.prompt)
        rng = np.random.default_rng([seed, _hash(f"truefalse/forward/{s.id}")])
        wrong = distractors.choose("forward", s.prompt, s.answer, rng, 1) if reactants else []
        if not wrong:
            skipped["forward"]["truefalse: no wrong product"] += 1
            continue
        kept.append((s, reactants, wrong[0]))
        if limit is not None and len(kept) >= limit:
            break
    rng = np.random.default_rng([seed, _hash("truefalse/forward/labels")])
    labels = rng.permutation(np.resize(np.arange(2), len(kept))).tolist()
    out = []
    for (s, reactants, wrong), label in zip(kept, labels):
        product = s.answer.strip() if label == 0 else wrong
        prompt = _head(s.prompt) + PRODUCT_QUESTION.format(reactants=reactants, product=product)
        out.append(_line("forward", s, prompt, label,
                         {"prompt": s.prompt, "option": product, "reference": s.answer}))
    return out


def _values(task, prompt):
    mol, _ = answers.parse_molecule(answers.prompt_molecule(prompt) or "")
    return [float(v) for v in verify.PROPERTIES[task][0](mol)] if mol is not None else None


def property_prompt(task, prompt, t):
    """The record's prompt with its question ("What is the LogP of this molecule?") replaced by the claim's."""
    if "?" not in prompt:
        return None
    head, rest = prompt.split("?", 1)
    keep = head[:head.rindex("\n") + 1] if "\n" in head else ""
    return keep + QUESTION[task].format(t=t) + " Answer Yes or No." + rest


def property_questions(task, samples, seed, skipped, limit=None):
    """weight / tpsa / logp records -> paired true/false lines (see the module docstring)."""
    tol = verify.PROPERTIES[task][1]
    rows = []
    for s in samples:
        v = _values(task, s.prompt)
        if v is None or "?" not in s.prompt:
            skipped[task]["truefalse: no molecule or question"] += 1
            continue
        rows.append((min(v), max(v), s))
    rows.sort(key=lambda r: (r[0], r[2].id))
    rng = np.random.default_rng([seed, _hash(f"truefalse/{task}/pairs")])
    used, out = set(), []
    for i, (lo_i, hi_i, s_i) in enumerate(rows):
        if i in used:
            continue
        j = next((j for j in range(i + 1, len(rows)) if j not in used
                  and rows[j][0] - hi_i > 2 * MARGIN * tol + 0.02), None)  # 0.02: room for 2-decimal rounding
        if j is None:
            continue
        used |= {i, j}
        lo_j, s_j = rows[j][0], rows[j][2]
        t = round(float(rng.uniform(hi_i + MARGIN * tol + 0.01, lo_j - MARGIN * tol - 0.01)), 2)
        pair = [(s_i, 1), (s_j, 0)]  # "above t?": the lower value No, the higher Yes
        for s, label in (pair if rng.random() < 0.5 else pair[::-1]):
            out.append(_line(task, s, property_prompt(task, s.prompt, f"{t:.2f}"), label,
                             {"prompt": s.prompt, "threshold": t}))
    if len(used) < len(rows):
        skipped[task]["truefalse: no partner far enough in value"] += len(rows) - len(used)
    order = rng.permutation(len(out) // 2)  # pairs in random order, not by value
    out = [out[2 * k + m] for k in order.tolist() for m in (0, 1)]
    return out[:limit] if limit is not None else out


def claim_problem(q):
    """None if the claim's verdict (see the module docstring) is the question's answer, else the problem."""
    claim = q.get("claim")
    if not isinstance(claim, dict) or list(q["options"]) != list(YES_NO):
        return "a true/false question needs options Yes, No and a claim"
    if "threshold" in claim:
        if q["task"] not in verify.PROPERTIES:
            return f"no property verifier for {q['task']}"
        values, t = _values(q["task"], claim.get("prompt", "")), claim["threshold"]
        tol = verify.PROPERTIES[q["task"]][1]
        if not values:
            return "the claim's molecule does not parse"
        right = 0 if min(values) > t + tol else 1 if max(values) < t - tol else None
        if right is None:
            return f"threshold {t} within tolerance of the true value {values}"
    else:
        v = verify.verify(q["task"], claim.get("prompt", ""), claim.get("option", ""), claim.get("reference", ""))
        if v.reason == "not verifiable":
            return "the claim is not verifiable"
        right = 0 if v.score == 1 else 1
    return None if right == q["answer"] else f"claim verified {YES_NO[right]}, answer {YES_NO[q['answer']]}"
