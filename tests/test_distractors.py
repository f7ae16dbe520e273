"""distractors.py: each edit kind gives valid molecules different from the input by InChI (the regioisomer and
stereo edits keeping the formula), the reactant-atom constraint, and choose()'s distractors (wrong by verify.py,
distinct, deterministic under the seed)."""
import numpy as np
import pytest
import selfies
from rdkit import Chem, DataStructs
from rdkit.Chem.rdMolDescriptors import CalcMolFormula

import answers
import distractors as D
import verify

CASES = {"move": "Cc1ccc(Cl)cc1O", "halogen": "Clc1ccccc1", "bond": "CCC(=O)OC", "stereo": "C[C@H](N)C(=O)O",
         "ch2": "CCOC(=O)CC", "isostere": "COc1ccccc1O"}
SAME_FORMULA = ("move", "stereo")


@pytest.mark.parametrize("kind", D.KINDS)
def test_each_edit_is_valid_and_different(kind):
    mol = Chem.MolFromSmiles(CASES[kind])
    got = D.edits(mol, kinds=(kind,))
    assert got and all(k == kind for k, _ in got)
    keys = [answers.inchi(m) for _, m in got]
    assert None not in keys and answers.inchi(mol) not in keys and len(set(keys)) == len(keys)
    for _, m in got:
        assert Chem.MolFromSmiles(Chem.MolToSmiles(m)) is not None   # sanitises after a round trip
        if kind in SAME_FORMULA:
            assert CalcMolFormula(m) == CalcMolFormula(mol)
        else:
            assert CalcMolFormula(m) != CalcMolFormula(mol)


def test_specific_edits():
    smi = {Chem.MolToSmiles(m) for _, m in D.edits(Chem.MolFromSmiles("Clc1ccccc1"), kinds=("halogen",))}
    assert smi == {"Fc1ccccc1", "Brc1ccccc1", "Ic1ccccc1"}
    moved = {Chem.MolToSmiles(m) for _, m in D.edits(Chem.MolFromSmiles("Cc1ccccc1O"), kinds=("move",))}
    assert "Cc1cccc(O)c1" in moved and "Cc1ccc(O)cc1" in moved
    iso = {Chem.MolToSmiles(m) for _, m in D.edits(Chem.MolFromSmiles("COC"), kinds=("isostere",))}
    assert {"CSC", "CNC"} <= iso


def test_within_atoms():
    pool = verify.heavy_atoms(Chem.MolFromSmiles("CC(=O)Cl.Nc1ccccc1"))
    assert D.within_atoms(Chem.MolFromSmiles("CC(=O)Nc1ccccc1"), pool)
    assert not D.within_atoms(Chem.MolFromSmiles("CC(=O)Nc1ccccc1Br"), pool)


def test_choose_gives_wrong_distinct_options_deterministically():
    sf = selfies.encoder
    prompt = "<mol>\nProduct? " + sf("CC(=O)Cl.Nc1ccc(O)cc1C")
    answer = sf("CC(=O)Nc1ccc(O)cc1C")
    a = D.choose("forward", prompt, answer, np.random.default_rng(0), 3)
    assert a == D.choose("forward", prompt, answer, np.random.default_rng(0), 3) and len(a) == 3
    keys = {answers.mol_from_text(o)[1] for o in a}
    assert len(keys) == 3 and answers.mol_from_text(answer)[1] not in keys
    assert all(verify.verify("forward", prompt, o, answer).score == 0 for o in a)
    assert all(answers.looks_like_selfies(o) for o in a)          # written as the answer is


def test_forward_candidates_include_the_unreacted_starting_material():
    sf = selfies.encoder
    prompt = "<mol>\nProduct? " + sf("CC(=O)Cl.Nc1ccc(O)cc1C")
    answer = sf("CC(=O)Nc1ccc(O)cc1C")
    cands = D.candidates("forward", prompt, answer, np.random.default_rng(0), 3)
    keys = [k for k, _ in cands]
    assert answers.mol_from_text(sf("Nc1ccc(O)cc1C"))[1] in keys        # no reaction: the amine itself
    assert len(set(keys)) == len(keys) and answers.mol_from_text(answer)[1] not in keys
    assert all(verify.verify("forward", prompt, o, answer).score == 0 for _, o in cands)


def test_retrosynthesis_candidates_include_edited_products_that_fail_the_atom_balance():
    sf = selfies.encoder
    product = "CC(=O)Nc1ccc(Cl)cc1"
    prompt = "<mol>\nReactants? " + sf(product)
    answer = sf("CC(=O)Cl.Nc1ccc(Cl)cc1")
    cands = D.candidates("retrosynthesis", prompt, answer, np.random.default_rng(0), 3)
    reasons = [verify.verify("retrosynthesis", prompt, o, answer).reason for _, o in cands]
    assert "ok" not in reasons and "ok (atom balance only)" not in reasons   # every candidate wrong by verify.py
    assert answers.mol_from_text(sf("CC(=O)Nc1ccc(Br)cc1"))[1] in {k for k, _ in cands}   # Cl needed, Br given
    assert "atoms unbalanced" in reasons


def test_condition_candidates_include_the_frequent_answers():
    sf = selfies.encoder
    others = [(answers.mol_from_text(sf(s))[1], sf(s)) for s in
              ["CCO", "CCCO", "CCCCO", "CO", "OCCO", "CC(C)O", "CCOCC", "C1CCOC1", "ClCCl", "CS(C)=O", "CC#N"]]
    counts = {k: 1 for k, _ in others}
    counts[others[-1][0]] = 50                                            # acetonitrile: the usual answer
    prompt = "<mol>\nSolvent? " + sf("CC(=O)Cl.Nc1ccccc1") + ">>" + sf("CC(=O)Nc1ccccc1")
    cands = D.candidates("solvent", prompt, sf("ClC(Cl)Cl"), np.random.default_rng(0), 3, others, counts)
    assert others[-1][0] in {k for k, _ in cands}
    assert others[-1][0] not in {k for k, _ in D.candidates("solvent", prompt, sf("ClC(Cl)Cl"),
                                                             np.random.default_rng(0), 3, others)}


def test_the_answer_is_not_always_the_option_most_similar_to_the_reactants():
    sf = selfies.encoder
    prompt = "<mol>\nProduct? " + sf("CC(=O)Cl.Nc1ccc(O)cc1C")
    answer = sf("CC(=O)Nc1ccc(O)cc1C")
    src = answers.MORGAN_BITS.GetFingerprint(answers.mol_from_text(sf("CC(=O)Cl.Nc1ccc(O)cc1C"))[0])
    top = 0
    for seed in range(12):
        opts = [answer] + D.choose("forward", prompt, answer, np.random.default_rng(seed), 3)
        sims = [DataStructs.TanimotoSimilarity(src, answers.MORGAN_BITS.GetFingerprint(answers.mol_from_text(o)[0]))
                for o in opts]
        top += int(np.argmax(sims) == 0)
    assert top <= 8
