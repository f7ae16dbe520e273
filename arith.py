"""A general-reasoning mix generated offline: arithmetic word problems of the same shape as the rdkit rationales
(integer counts times decimal values, summed, rounded), for `train.py --tasks weight,tpsa,logp,arith:0.2`.

    A lab orders 3 flasks at 12.011 each and 5 stirrers at 1.008 each. What do they cost in total, to 2 decimal
    places?
    direct answer:        41.07
    with --reasoning:     <think> total: 3 x flask 12.011 + 5 x stirrer 1.008 = 41.073 </think> 41.07

The rationale is written by reasoning.write_sum, the writer of the weight / tpsa / logp sums, and checked by
reasoning.check like theirs (terms that add up to the stated sum, a sum that rounds to the answer), so the mix
trains exactly the skill those rationales use, on numbers no molecule gives. The seed's recipe for reasoning
traces mixes general reasoning data into the chemistry data (Omni-Mol, Future directions); no general reasoning
set ships in the installed packages (nothing like GSM8K is on the package list), so it is generated here.

`arith:R` adds round(R x the other tasks' training samples) problems (R x 1000 when arith is the only task).
Problems are drawn from a seeded stream per split and each prompt belongs to one split by its hash, so a
held-out curve on arith never scores a problem it trained on. It is a training mix only: eval.py
scores the 16 tasks and refuses arith.
"""
import random
from decimal import ROUND_HALF_EVEN, Decimal

from chem import _hash
from reasoning import join, write_sum

KEY = "arith"
ALONE = 1000            # problems per unit ratio when arith is the only task
TEST_PROBLEMS = 100     # the held-out problems (curve.py's per-task NLL)
HEADER = "total"

# (setting, what is counted, question): each item has its count and per-item value; the question asks the sum
SETTINGS = [
    ("A lab orders", "costs", "What do they cost in total"),
    ("A shelf holds", "weighs", "What do they weigh in total, in grams"),
    ("A shipment contains", "costs", "What is the shipment's total cost"),
    ("A student packs", "weighs", "What is the total mass, in grams"),
    ("A workshop buys", "costs", "How much does the workshop pay in total"),
]
ITEMS = ["flask", "stirrer", "beaker", "pipette", "vial", "funnel", "burette", "crucible", "spatula", "condenser",
         "cuvette", "desiccator", "dropper", "filter", "magnet", "stopper", "thermometer", "tube", "clamp", "jar"]
PLURAL = {"funnel": "funnels", "burette": "burettes", "crucible": "crucibles", "magnet": "magnets"}


def _plural(item, n) -> str:
    return item if n == 1 else PLURAL.get(item, item + ("es" if item.endswith(("sh", "ch", "x", "s")) else "s"))


def problem(rng: random.Random, reasoning: bool = False) -> tuple[str, str]:
    """One problem -> (prompt, answer): 2-5 items, counts 1-12, values with 1-4 decimals (as atomic weights,
    Ertl and Crippen contributions have 3, 2 and 4; some negative, as Crippen's are), the answer the exact sum
    rounded half-even to 0-2 decimals fewer than the values."""
    decimals = rng.randint(1, 4)
    answer_decimals = rng.randint(max(0, decimals - 2), decimals)
    negative = rng.random() < 0.25  # some negative values, as Crippen contributions have
    items = rng.sample(ITEMS, rng.randint(2, 5))
    terms = []
    for item in items:
        value = round(rng.uniform(-3 if negative else 0.1, 40 if decimals < 3 else 12), decimals) or 0.5
        terms.append((rng.randint(1, 12), item, value))
    setting, verb, question = rng.choice(SETTINGS)
    parts = [f"{n} {_plural(item, n)} at {Decimal(repr(v)).quantize(Decimal(1).scaleb(-decimals))} each"
             for n, item, v in terms]
    listed = ", ".join(parts[:-1]) + f" and {parts[-1]}"
    places = f"to {answer_decimals} decimal place{'s' if answer_decimals != 1 else ''}" if answer_decimals \
        else "to the nearest whole number"
    prompt = f"{setting} {listed} (values per item; a negative one is a refund or a tare). {question}, {places}?"
    body = write_sum(HEADER, terms, decimals)
    exact = Decimal(body.rpartition(" = ")[2])
    answer = str(exact.quantize(Decimal(1).scaleb(-answer_decimals), rounding=ROUND_HALF_EVEN))
    if answer.startswith("-") and Decimal(answer) == 0:
        answer = answer[1:]  # "-0.0" -> "0.0"
    return prompt, (join(body, answer) if reasoning else answer)


def _split_of(prompt: str) -> str:
    """Every tenth prompt (by its hash) is a test prompt, the others training prompts: the splits are disjoint
    by construction, whatever their sizes."""
    return "test" if _hash(f"{KEY}/split/{prompt}") % 10 == 0 else "train"


def problems(n: int, split: str, seed: int, reasoning: bool = False) -> list[tuple[str, str, str]]:
    """n problems of a split ("train", else the held-out one) -> [(id, prompt, answer)], the same for the same
    (n, split, seed), no prompt of one split in the other."""
    want = "train" if split == "train" else "test"
    out, i = [], 0
    while len(out) < n:
        prompt, answer = problem(random.Random(_hash(f"{KEY}/{seed}/{want}/{i}")), reasoning)
        i += 1
        if _split_of(prompt) == want:
            out.append((f"{KEY}-{want}:{len(out) + 1}", prompt, answer))
    return out


def count_for(ratio: float, n_other: int, split: str) -> int:
    """How many problems `arith:ratio` adds: ratio x the other tasks' training samples (x ALONE alone); the test
    split always has TEST_PROBLEMS."""
    if split != "train":
        return TEST_PROBLEMS
    return max(1, round(ratio * (n_other or ALONE)))
