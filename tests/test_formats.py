"""True/false (truefalse.py) and numeric (numeric.py) questions: labels balanced and re-derived by check() from the
claim, thresholds shared by a Yes and a No question, exactly one numeric option right by verify.py with the others
outside tolerance and apart, value-only shortcuts at chance; mcq.accuracy per task and format with chance
1 / options."""
import json
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import selfies
from rdkit import Chem
from rdkit.Chem import Crippen

import mcq
import numeric
import shortcuts
import truefalse
import verify

sf = selfies.encoder
PHENOLS = ["Oc1ccccc1", "Oc1ccccc1C", "Oc1ccccc1CC", "Oc1ccc(C)cc1", "Oc1ccc(CC)cc1", "Oc1cccc(C)c1",
           "Oc1ccc(Cl)cc1", "Oc1ccc(Br)cc1"]
MOLECULES = ["O", "CO", "CCO", "CCCO", "CCCCO", "CCCCCCO", "c1ccccc1", "Cc1ccccc1", "CCc1ccccc1", "Clc1ccccc1",
             "OC(=O)CC(O)C(=O)O", "NCCN", "CCCCCCCCCC", "CCCCCCCCCCCCCC", "c1ccc2ccccc2c1", "OCC(O)CO",
             "CC(=O)Nc1ccc(O)cc1", "CCN(CC)CC", "CCOC(=O)C", "Brc1ccc(Br)cc1", "CC(C)(C)c1ccccc1", "OCCO"]


def sample(task, i, prompt, answer, smiles="CCO"):
    return SimpleNamespace(task=task, id=f"{task}:{i}", prompt=prompt, answer=answer, smiles=smiles)


def forward_samples():
    return [sample("forward", i, "<mol>\nBased on the given reactants and reagents, suggest a possible product. "
                   + sf(a) + "." + sf("CC(=O)Cl"), sf(a)) for i, a in enumerate(PHENOLS)]


def logp_samples():
    return [sample("logp", i, f"<mol>\nWhat is the LogP of this molecule? The molecule SELFIES sequence is: {sf(m)}",
                   f"{Crippen.MolLogP(Chem.MolFromSmiles(m)):.2f}", m) for i, m in enumerate(MOLECULES)]


def weight_samples():
    return [sample("weight", i, "<mol>\nWhat is the molecular weight of this molecule? The molecule SELFIES "
                   f"sequence is: {sf(m)}", "0.00", m) for i, m in enumerate(MOLECULES)]


def yield_samples(n=400, seed=0):
    ys = np.random.default_rng(seed).beta(0.8, 1.2, size=n) * 100
    return [sample("yield", i, "<mol>\nPredict the yield of this reaction (in percent). The reaction is "
                   f"[C][C][O].[C]>>[C][C][C][O] {i}", f"{y:.2f}") for i, y in enumerate(ys)]


# ----------------------------------------------------------------------------- true/false

def test_product_claims_are_balanced_and_verified():
    qs, skipped = mcq.build(forward_samples(), seed=0, formats=("truefalse",))
    assert len(qs) == len(PHENOLS) and not skipped
    assert Counter(q["answer"] for q in qs) == {0: len(PHENOLS) // 2, 1: len(PHENOLS) // 2}
    for q in qs:
        claim = q["claim"]
        assert q["format"] == "truefalse" and q["options"] == ["Yes", "No"]
        assert (verify.verify("forward", claim["prompt"], claim["option"], claim["reference"]).score == 1) == \
            (q["answer"] == 0)
        assert claim["option"] in q["prompt"] and claim["prompt"].split()[-1] in q["prompt"]  # product, reactants
    assert mcq.check(qs) == []
    flipped = [dict(q, answer=1 - q["answer"]) for q in qs]
    assert all("claim verified" in p for p in mcq.check(flipped)) and len(mcq.check(flipped)) == len(qs)
    assert qs == mcq.build(forward_samples(), seed=0, formats=("truefalse",))[0]


def test_property_thresholds_are_shared_by_a_yes_and_a_no():
    qs, skipped = mcq.build(logp_samples(), seed=0, formats=("truefalse",))
    assert len(qs) >= len(MOLECULES) - 4 and len(qs) % 2 == 0
    assert len(qs) + sum(skipped.get("logp", {}).values()) == len(MOLECULES)
    by_t = {}
    for q in qs:
        by_t.setdefault(q["claim"]["threshold"], []).append(q["answer"])
        assert f"above {q['claim']['threshold']:.2f}?" in q["prompt"] and q["prompt"].startswith("<mol>\nIs the LogP")
        truth = Crippen.MolLogP(Chem.MolFromSmiles(q["graph"]))
        assert abs(truth - q["claim"]["threshold"]) > truefalse.MARGIN * verify.LOGP_TOL
        assert (truth > q["claim"]["threshold"]) == (q["answer"] == 0)
    assert all(v.count(0) == v.count(1) for v in by_t.values())     # as many Yes as No per threshold
    assert mcq.check(qs) == []
    rep = shortcuts.report(qs)["logp (truefalse)"]
    assert rep["prior"] == rep["first"] == rep["second"] == 0.5     # the threshold alone tells nothing
    near = json.loads(json.dumps(qs[0]))
    near["claim"]["threshold"] = round(Crippen.MolLogP(Chem.MolFromSmiles(near["graph"])) + 0.2, 2)
    assert any("within tolerance" in p for p in mcq.check([near]))


def test_truefalse_shortcuts_on_claims():
    qs, _ = mcq.build(forward_samples(), seed=0, formats=("truefalse",))
    rep = shortcuts.report(qs)["forward (truefalse)"]
    assert {"similarity", "length", "first", "second"} <= set(rep) and rep["chance"] == 0.5


# ----------------------------------------------------------------------------- numeric

def test_numeric_options_one_right_others_outside_tolerance_and_apart():
    qs, skipped = mcq.build(weight_samples(), seed=0, formats=("numeric",))
    assert len(qs) + sum(skipped.get("weight", {}).values()) == len(MOLECULES) and len(qs) >= len(MOLECULES) - 2
    for q in qs:
        values = [float(o) for o in q["options"]]
        truth = verify.PROPERTIES["weight"][0](Chem.MolFromSmiles(q["graph"]))[0]
        assert abs(values[q["answer"]] - truth) <= verify.WEIGHT_TOL    # rdkit's value: the label "0.00" is wrong
        wrong = [v for j, v in enumerate(values) if j != q["answer"]]
        assert all(abs(v - truth) > numeric.GAP_TOL * verify.WEIGHT_TOL for v in wrong)
        assert min(abs(a - b) for i, a in enumerate(values) for b in values[i + 1:]) > verify.WEIGHT_TOL
    assert mcq.check(qs) == []
    two = json.loads(json.dumps(qs[0]))
    two["options"][(two["answer"] + 1) % 4] = f"{float(two['options'][two['answer']]) + 0.3:.2f}"
    assert any("verified right" in p for p in mcq.check([two]))
    assert qs == mcq.build(weight_samples(), seed=0, formats=("numeric",))[0]


def test_numeric_value_shortcuts_are_at_chance():
    qs, skipped = mcq.build(yield_samples(), seed=0, formats=("numeric",))
    assert len(qs) >= 380 and mcq.check(qs) == []
    rep = shortcuts.report(qs)["yield (numeric)"]
    for name in ("value", "middle", "prior", "length", "overlap"):
        assert rep[name] <= 0.25 + 0.1, (name, rep[name])
    ranks = Counter(sorted(map(float, q["options"])).index(float(q["options"][q["answer"]])) for q in qs)
    assert all(0.15 < ranks[r] / len(qs) < 0.35 for r in range(4)), ranks   # the answer's rank among the values
    assert qs == mcq.build(yield_samples(), seed=0, formats=("numeric",))[0]


def near_zero(n, seed, shift):
    """Yields piled up near 0: shift + an exponential of mean 25, at most 100."""
    return np.minimum(shift + np.random.default_rng(seed).exponential(25.0, size=n), 100.0)


def yields_near_zero(n=400, seed=1, shift=0.0):
    return [sample("yield", i, "<mol>\nPredict the yield of this reaction (in percent). The reaction is "
                   f"[C][C][O].[C]>>[C][C][C][O] {i}", f"{y:.2f}") for i, y in enumerate(near_zero(n, seed, shift))]


def answer_ranks(qs):
    return Counter(sorted(map(float, q["options"])).index(float(q["options"][q["answer"]])) for q in qs)


def test_bounded_yield_answer_rank_is_uniform_and_options_in_range_and_apart():
    train = {"yield": [float(y) for y in near_zero(1000, 2, 10.5)]}   # the labels' distribution, another draw
    qs, skipped = mcq.build(yields_near_zero(shift=10.5), seed=0, formats=("numeric",), population=train)
    assert len(qs) == 400 and not skipped and mcq.check(qs) == []
    ranks = answer_ranks(qs)   # above a gap from 0, every rank has room: each is right ~1/4 of the time
    assert all(0.18 < ranks[r] / len(qs) < 0.32 for r in range(4)), ranks
    for q in qs:
        vals = sorted(map(float, q["options"]))
        assert 0 <= vals[0] and vals[-1] <= 100
        assert all(b - a > numeric.GAP_TOL * verify.YIELD_TOL for a, b in zip(vals, vals[1:]))
    rep = shortcuts.report(qs)["yield (numeric)"]
    assert rep["value"] <= 0.25 + 0.1 and rep["middle"] <= 0.25 + 0.1 and rep["prior"] <= 0.25 + 0.15, rep
    assert qs == mcq.build(yields_near_zero(shift=10.5), seed=0, formats=("numeric",), population=train)[0]


def test_bounded_yield_ranks_compensate_the_forced_smallest():
    train = {"yield": [float(y) for y in near_zero(1000, 2, 0.0)]}
    qs, skipped = mcq.build(yields_near_zero(), seed=0, formats=("numeric",), population=train)
    assert len(qs) == 400 and not skipped and mcq.check(qs) == []
    forced = sum(float(q["options"][q["answer"]]) < numeric.GAP_TOL * verify.YIELD_TOL for q in qs)
    ranks = answer_ranks(qs)   # a yield within a gap of 0 is the smallest; the others make up for it
    assert abs(ranks[0] - max(forced, 100)) < 30 and ranks[0] / len(qs) < 0.42, (ranks, forced)
    assert all(0.18 < ranks[r] / len(qs) < 0.32 for r in (1, 2, 3)), ranks
    assert numeric.room(0.0, 0.0, 100.0, 10.02, 3) == [0] and numeric.room(100.0, 0.0, 100.0, 10.02, 3) == [3]
    assert numeric.room(50.0, 0.0, 100.0, 10.02, 3) == [0, 1, 2, 3] and numeric.room(15.0, 0.0, 40.0, 10.02, 3) == [1]
    assert numeric.room(15.0, 0.0, 30.0, 10.02, 3) == []


def test_numeric_population_from_training_labels_and_keys():
    assert numeric.population_key("homolumo", "Please provide the LUMO energy value") == "homolumo/lumo"
    assert numeric.population_key("homolumo", "the gap between HOMO and LUMO") == "homolumo/gap"
    assert numeric.population_key("logp", "What is the LogP") == "logp"
    pop = numeric.Population([1.0, 2.0, 3.0, 4.0])
    assert pop.z(2.5) == pytest.approx(0.0) and pop.value(0.0) == pytest.approx(2.5)
    train = {"yield": [float(y) for y in np.linspace(0, 100, 200)]}
    qs, _ = mcq.build(yield_samples(40), seed=0, formats=("numeric",), population=train)
    assert len(qs) == 40 and mcq.check(qs) == []


# ----------------------------------------------------------------------------- scoring per format

def test_accuracy_and_table_per_task_and_format():
    qs = (mcq.build(forward_samples(), seed=0, formats=("choice4", "truefalse"))[0]
          + mcq.build(yield_samples(20), seed=0, formats=("numeric",))[0])
    scores = [[1.0 if j == q["answer"] else 0.0 for j in range(len(q["options"]))] if q["format"] == "truefalse"
              else [1.0] + [0.0] * (len(q["options"]) - 1) for q in qs]          # right on true/false; "first" else
    acc = mcq.accuracy(qs, scores)
    assert set(acc) == {"forward", "forward (truefalse)", "yield (numeric)", "all (choice4)", "all (truefalse)",
                        "all (numeric)", "all"}
    assert acc["forward (truefalse)"]["accuracy"] == 1.0 and acc["forward (truefalse)"]["chance"] == 0.5
    assert acc["forward (truefalse)"]["format"] == "truefalse" and acc["forward (truefalse)"]["shortcut"] is None
    assert acc["yield (numeric)"]["chance"] == 0.25
    assert acc["yield (numeric)"]["accuracy"] == np.mean([q["answer"] == 0 for q in qs if q["format"] == "numeric"])
    assert acc["all"]["N"] == len(qs)
    assert acc["all"]["chance"] == pytest.approx(np.mean([1 / len(q["options"]) for q in qs]))
    name, value = acc["forward (truefalse)"]["strongest"]
    assert value == max(v for k, v in shortcuts.report(qs)["forward (truefalse)"].items() if k not in ("chance", "N"))
    table = mcq.table(acc)
    assert "| forward (truefalse) | 1.000 | 0.50 | n/a |" in table and "| all (numeric) |" in table
