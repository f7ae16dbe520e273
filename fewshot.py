"""In-context examples: the baseline an LLM paper is asked for first (eval.py --few-shot K).

Each test prompt gets K solved examples from the TRAINING split of its task, nearest by the input molecule
(Morgan bit vectors r=2, 2048 bits, Tanimoto: baselines.fingerprint, the nearest-neighbour baseline's), most
similar last, i.e. next to the question. Ties keep the earlier training record. A test item without a molecule
(iupac, textguidedmolgen) or whose task has no fingerprintable training input gets K seeded random examples
of its task. An example is written as its prompt text with the <mol> placeholder removed (its molecule stays
in the text: every graph task's prompt also writes the molecule as SELFIES / SMILES) and its reference answer;
only the test item keeps its <mol>, so the graph tokens are the test molecule's:

    Example 1:
    <training prompt>
    Answer: <training answer>

    ...
    Question:
    <test prompt with its <mol>>

Only the generation prompt changes: predictions.jsonl keeps the plain prompt, so scoring (e.g. homolumo's
bucket read from the prompt text), verify.py and the round trip see what they see without examples.
The Omni-Mol dev tree has an in-context baseline of its own (WillDreamer/Omni-Mol In-context/incontext_test.py);
this one is ours: the same training data the model was trained on, the same answer format.
"""
import dataclasses
import random

from rdkit import DataStructs

import answers
import baselines
import data
from tokenizer import MOL_PLACEHOLDER


def _example_text(sample) -> str:
    return sample.prompt.replace(MOL_PLACEHOLDER, "").strip()


def pick(test, pool, k, rng, fps=None):
    """The k training samples shown with `test` (most similar last). pool: training samples of its task;
    fps: their fingerprints (None where none can be made), computed once per task by the caller."""
    if fps is None:
        fps = [baselines.fingerprint(s.prompt, s.smiles) for s in pool]
    fp = baselines.fingerprint(test.prompt, test.smiles) if test.smiles is not None else None
    have = [i for i, f in enumerate(fps) if f is not None]
    if fp is None or not have:
        chosen = rng.sample(range(len(pool)), min(k, len(pool)))
    else:
        sims = DataStructs.BulkTanimotoSimilarity(fp, [fps[i] for i in have])
        ranked = sorted(range(len(have)), key=lambda j: (-sims[j], have[j]))  # ties: the earlier record
        chosen = [have[j] for j in ranked[:k]][::-1]                          # the most similar next to the question
    return [pool[i] for i in chosen]


def with_examples(samples, train_samples, k, seed=42):
    """samples (test) -> copies whose prompt holds k training examples of the same task before the question.
    Training samples are grouped by task key; a test item's own id never comes from this list, since every
    example is a training-split record."""
    if k <= 0:
        return list(samples)
    by_task = {}
    for s in train_samples:
        by_task.setdefault(s.task, []).append(s)
    fps = {t: [baselines.fingerprint(s.prompt, s.smiles) for s in pool] for t, pool in by_task.items()}
    rng = random.Random(seed)
    out = []
    for s in samples:
        pool = by_task.get(s.task, [])
        if not pool:
            out.append(s)
            continue
        shots = pick(s, pool, k, rng, fps[s.task])
        text = "".join(f"Example {i + 1}:\n{_example_text(e)}\nAnswer: {e.answer}\n\n" for i, e in enumerate(shots))
        out.append(dataclasses.replace(s, prompt=f"{text}Question:\n{s.prompt}"))
    return out


def mcq_with_examples(questions, k, data_src="demo", seed=42):
    """eval.py --mcq --few-shot K: each question (mcq.py's dict) gets K solved examples of its task from the
    TRAINING split of data_src, chosen as with_examples chooses them (nearest by the question's input molecule:
    the open-answer prompt and its reference answer), in the molecule format of the questions' own prompts."""
    first = answers.prompt_molecule(questions[0]["prompt"]) if questions else None
    mol_format = "selfies" if (first or "[").startswith("[") else "smiles"
    train = data.load_tasks(",".join(sorted({q["task"] for q in questions})), split="train", data=data_src,
                            verbose=False, mol_format=mol_format)
    plain = [data.Sample(q["task"], q["task"], q["id"], q["prompt"], "", q.get("graph")) for q in questions]
    return [{**q, "prompt": s.prompt} for q, s in zip(questions, with_examples(plain, train, k, seed))]
