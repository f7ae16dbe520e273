"""arith.py, the generated general-reasoning mix: every answer is the prompt's own sum (re-read from the prompt
text and summed here with exact fractions), rounded as the prompt asks; every rationale passes reasoning.check and
a tampered one fails; the splits never share a prompt; `--tasks ...,arith:R` adds R x the other tasks' samples,
"all" leaves it out, eval.py refuses it, and train.py trains on it end to end."""
import json
import os
import random
import re
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

import pytest
import selfies
from rdkit import Chem
from rdkit.Chem import Descriptors

import arith
import data
import eval as E
import reasoning
import train
from tasks import TASKS

ITEM = re.compile(r"(\d+) \w+ at (-?\d+(?:\.\d+)?) each")


def _expected(prompt) -> str:
    """The answer computed from the prompt's words alone."""
    total = sum(Fraction(int(n)) * Fraction(v) for n, v in ITEM.findall(prompt))
    m = re.search(r"to (\d+) decimal place", prompt)
    places = int(m.group(1)) if m else 0
    assert m or "nearest whole number" in prompt
    exact = Decimal(total.numerator) / Decimal(total.denominator)
    out = str(exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN))
    return out[1:] if out.startswith("-") and Decimal(out) == 0 else out


def test_answers_are_the_prompts_sums_and_rationales_check():
    for i in range(400):
        prompt, answer = arith.problem(random.Random(i))
        assert 2 <= len(ITEM.findall(prompt)) <= 5
        assert answer == _expected(prompt), prompt
        prompt2, traced = arith.problem(random.Random(i), reasoning=True)
        assert prompt2 == prompt  # the same problem, the answer after its sum
        body, after = reasoning.split(traced)
        assert after == answer and body.startswith(f"{arith.HEADER}: ")
        assert reasoning.check(arith.KEY, prompt, traced) is None, traced


def test_hand_written_sums():
    right = "<think> total: 3 x flask 12.011 + 5 x stirrer 1.008 = 41.073 </think> 41.07"
    assert reasoning.check(arith.KEY, "", right) is None
    # terms that do not add up, and a sum that is not the answer, each fail with the rationale's own reason
    assert reasoning.check(arith.KEY, "", "<think> total: 3 x flask 12.011 = 36.000 </think> 36.00") \
        == "rationale inconsistent"
    assert reasoning.check(arith.KEY, "", "<think> total: 3 x flask 12.011 = 36.033 </think> 36.10") \
        == "rationale inconsistent"
    assert reasoning.check(arith.KEY, "", "<think> three flasks, about 36 </think> 36") == "rationale unreadable"


def test_seeded_and_the_splits_are_disjoint():
    train_set = arith.problems(3000, "train", seed=7)
    assert train_set == arith.problems(3000, "train", seed=7)
    assert train_set != arith.problems(3000, "train", seed=8)
    test = arith.problems(300, "test", seed=7)
    assert not {p for _, p, _ in train_set} & {p for _, p, _ in test}
    assert all(arith._split_of(p) == "test" for _, p, _ in test)
    assert len({p for _, p, _ in train_set}) == 3000  # no repeats within a split either


def test_load_tasks_sizes_and_all(tiny_data):
    forward = data.load_tasks("forward", "train", tiny_data, verbose=False)
    mixed = data.load_tasks("forward,arith:0.5", "train", tiny_data, verbose=False, reasoning=True)
    extra = [s for s in mixed if s.task == arith.KEY]
    assert len(extra) == round(0.5 * len(forward)) and len(mixed) == len(forward) + len(extra)
    assert all(s.smiles is None and reasoning.has_rationale(s.answer) for s in extra)
    assert len(data.load_tasks("arith:0.1", "train", tiny_data, verbose=False)) == round(0.1 * arith.ALONE)
    assert len(data.load_tasks("arith", "test", tiny_data, verbose=False)) == arith.TEST_PROBLEMS
    assert arith.KEY not in data.parse_tasks("all")
    with pytest.raises(ValueError, match="arith"):
        data.parse_tasks("arithmetic")


def test_eval_refuses_it():
    with pytest.raises(SystemExit):
        E.parse_args(["--tasks", "weight,arith:0.2"])


def test_train_py_on_a_mix_with_arith(smiles, train_args, read_log, tmp_path):
    folder = tmp_path / "data"
    for split, mols in (("train", smiles), ("test", ["CCCO", "c1ccccc1O"])):
        os.makedirs(folder / split)
        recs = [{"instruction": "What is the molecular weight of this molecule?", "input": selfies.encoder(s),
                 "output": f"{Descriptors.MolWt(Chem.MolFromSmiles(s)):.2f}", "metadata": {"split": split}}
                for s in mols]
        (folder / split / f"{TASKS['weight'].released['train']['train']}.json").write_text(json.dumps(recs))
    out = tmp_path / "out"
    train.main(train_args(str(folder), out, "--tasks", "weight,arith:0.5", "--batch-size", 4, "--max-steps", 3,
                          "--reasoning", "--prefetch", 0, "--curve-every", 3, "--max-len", 1024))
    seen = set().union(*(r["task_loss"] for r in read_log(out)))
    assert seen == {arith.KEY, "weight"}
    curve = [json.loads(line) for line in open(out / "heldout.jsonl")]  # held-out problems scored like a task
    assert len(curve) == 2 and all(arith.KEY in str(c) and "weight" in str(c) for c in curve)
