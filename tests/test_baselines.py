"""baselines.py against direct computations on hand-made records: each baseline's answers, and its
scores equal to scoring those answers by hand-computed values (MAE, exact match, R^2)."""
import statistics

import pytest
import selfies
from rdkit import Chem, DataStructs
from rdkit.Chem import AllChem

import baselines as B

sf = selfies.encoder


def item(task, prompt, ref, smiles=None):
    return {"task": task, "prompt": prompt, "reference": ref, "smiles": smiles}


def mw(s):
    return item("weight", f"<mol>What is the molecular weight? The molecule SELFIES sequence is: {sf(s)}", "0")


def test_mean_and_median_of_numeric_tasks():
    train = [dict(mw("C"), reference="1.0"), dict(mw("CC"), reference="2"), dict(mw("CCC"), reference="6 g/mol")]
    test = [dict(mw("CCO"), reference="3"), dict(mw("CCN"), reference="5")]
    pred = B.predict(train, test)["weight"]
    assert [float(x) for x in pred["mean"]] == [3.0, 3.0] and [float(x) for x in pred["median"]] == [2.0, 2.0]
    res = B.score(train, test)["weight"]
    assert res["mean"]["Average MAE"] == pytest.approx((0 + 2) / 2)
    assert res["median"]["Average MAE"] == pytest.approx((1 + 3) / 2)
    assert set(res) == {"mean", "median", "nearest neighbour"}   # no majority / copy for a number task


def test_homolumo_means_per_bucket_and_yield_pools_its_sets():
    q = "<mol>Please provide the {} value for this molecule. The compound SELFIES sequence is: [C]"
    train = [item("homolumo", q.format("HOMO energy"), r) for r in ("-0.2", "-0.3")]
    train += [item("homolumo", q.format("LUMO energy"), "0.1"), item("homolumo", q.format("HOMO-LUMO gap"), "0.5")]
    test = [item("homolumo", q.format("HOMO energy"), "-0.25"), item("homolumo", q.format("LUMO energy"), "0.0")]
    assert [float(x) for x in B.predict(train, test)["homolumo"]["mean"]] == [pytest.approx(-0.25), 0.1]
    # the yield test sets draw on the one "yield" training pool
    ytrain = [item("yield", "yield? The reaction is [C]>>[O]", r) for r in ("10", "20", "60")]
    ytest = [item("yield_BH", "yield? The reaction is [C]>>[N]", r) for r in ("10", "50")]
    res = B.score(ytrain, ytest)["yield_BH"]
    y, m = [10.0, 50.0], 30.0
    r2 = 1 - sum((a - m) ** 2 for a in y) / sum((a - statistics.fmean(y)) ** 2 for a in y)
    assert res["mean"]["R2 Score"] == pytest.approx(r2)


def test_majority_copy_input_and_nearest_neighbour():
    rxn = lambda r, p: f"<mol>Please suggest a solvent for this reaction. The reaction is {sf(r)}>>{sf(p)}."  # noqa: E731
    water, thf = sf("O"), sf("C1CCOC1")
    train = [item("solvent", rxn("CCO", "CC=O"), water), item("solvent", rxn("c1ccccc1", "Oc1ccccc1"), thf),
             item("solvent", rxn("CCCCCC", "CCCCCCO"), water)]
    test = [item("solvent", rxn("CCCO", "CCC=O"), water), item("solvent", rxn("c1ccccc1C", "Oc1ccccc1C"), water)]
    pred = B.predict(train, test)["solvent"]
    assert pred["majority"] == [water, water]
    assert pred["copy input"] == [sf("CCCO"), sf("c1ccccc1C")]                    # the reactants
    # nearest neighbour by a direct rdkit computation over the whole reaction (reactants + product)
    fp = lambda it: AllChem.GetMorganFingerprintAsBitVect(Chem.MolFromSmiles(  # noqa: E731
        ".".join(selfies.decoder(m) for m in B.input_molecules(it["prompt"]))), 2, nBits=2048)
    want = []
    for t in test:
        sims = [DataStructs.TanimotoSimilarity(fp(t), fp(s)) for s in train]
        want.append(train[sims.index(max(sims))]["reference"])
    assert pred["nearest neighbour"] == want == [water, thf]
    res = B.score(train, test)["solvent"]
    assert res["majority"]["Exact Match (InChI, all items)"] == 1.0
    assert res["nearest neighbour"]["Exact Match (InChI, all items)"] == 0.5
    assert res["copy input"]["Exact Match (InChI, all items)"] == 0.0
    assert list(res) == ["majority", "copy input", "nearest neighbour"]


def test_copy_input_of_a_retrosynthesis_is_exact_when_the_answer_is_the_input():
    p = f"<mol>Please suggest potential reactants for the given product. The product is: {sf('CC(=O)Nc1ccc(O)cc1')}"
    res = B.score([item("retrosynthesis", p, sf("CCO"))], [item("retrosynthesis", p, sf("CC(=O)Nc1ccc(O)cc1"))])
    assert res["retrosynthesis"]["copy input"]["Exact Match (InChI)"] == 1.0
    assert res["retrosynthesis"]["nearest neighbour"]["Exact Match (InChI)"] == 0.0   # the training answer, CCO


def test_fingerprint_falls_back_to_smiles_and_bad_inputs_are_misses():
    exp = "<mol>Predict the action sequence for the reaction: $1$.$2$>>$-1$. The Action Sequence: "
    train = [item("experiment", exp, "ADD $1$ ; STIR ;", "CCO.O"), item("experiment", exp, "ADD $2$ ;", "c1ccccc1")]
    test = [item("experiment", exp, "ADD $1$ ; STIR ;", "CCCO.O"), item("experiment", exp, "ADD $1$ ;", "not a smiles")]
    assert B.predict(train, test)["experiment"]["nearest neighbour"] == ["ADD $1$ ; STIR ;", ""]
    # a text-only task (no molecule in the prompt, none given) has no nearest-neighbour baseline
    iupac = [item("iupac", "The IUPAC name is: ethanol", sf("CCO"))]
    assert B.predict(iupac, iupac) == {"iupac": {}}
    assert B.fingerprint("[C][invalid]]") is None and B.copy_input("no molecule") == ""


def test_smiles_prompts():  # --mol-format smiles: the input is the prompt's last word, a SMILES
    p = "<mol>\nPlease suggest a solvent for this reaction. The reaction is CCO.CC(=O)O>>CCOC(C)=O."
    assert B.copy_input(p) == "CCO.CC(=O)O"
    want = AllChem.GetMorganFingerprintAsBitVect(Chem.MolFromSmiles("CCO.CC(=O)O.CCOC(C)=O"), 2, nBits=2048)
    assert DataStructs.TanimotoSimilarity(B.fingerprint(p), want) == 1.0
    res = B.score([item("solvent", p, "O")], [item("solvent", p, "O")])["solvent"]
    assert res["majority"]["Exact Match (InChI)"] == 1.0 and res["nearest neighbour"]["Exact Match (InChI)"] == 1.0
