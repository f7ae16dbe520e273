"""distractors.py: each edit kind gives valid molecules different from the input by InChI (the regioisomer and
stereo edits keeping the formula), the reactant-atom constraint, and choose()'s distractors (wrong by verify.py,
distinct, deterministic under the seed)."""
import numpy as np
import pytest
import selfies
from rdkit import Chem
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
    pool = D.heavy_atoms(Chem.MolFromSmiles("CC(=O)Cl.Nc1ccccc1"))
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
