"""verify.py on hand-made cases: for every verifier a correct answer written another way passes, and wrong,
invalid, out-of-tolerance, constraint-violating and garbage answers each get their own reason; nothing raises."""
import json
import os
import random
import subprocess
import sys

import pytest
import selfies
from rdkit import Chem, DataStructs
from rdkit.Chem import QED, rdFingerprintGenerator

import answers
import eval as E
import verify as V

sf = selfies.encoder
ETHANOL = sf("CCO")
PARACETAMOL = "CC(=O)Nc1ccc(O)cc1"


def reason(task, prompt, pred, ref, roundtrip=None):
    v = V.verify(task, prompt, pred, ref, roundtrip)
    assert v.reason in V.REASONS and 0.0 <= v.score <= 1.0
    assert (v.score == 1.0) == v.reason.startswith("ok")
    return v.reason


# ----------------------------------------------------------------------------- molecule answers

@pytest.mark.parametrize("task", V.MOLECULE_TASKS)
@pytest.mark.parametrize("answer", [
    sf("OCC"),                      # another SELFIES of ethanol (atoms in another order)
    "OCC", "C(O)C", "[CH3][CH2][OH]",  # SMILES, written three ways
    ETHANOL + "<|im_end|>",         # the end token is cut
    "  " + ETHANOL + "\n",
])
def test_same_molecule_written_another_way_passes(task, answer):
    assert reason(task, "prompt", answer, ETHANOL) == "ok"


def test_stereo_is_ignored_and_component_order_does_not_matter():
    assert reason("forward", "p", sf("C[C@H](N)C(=O)O"), sf("C[C@@H](N)C(=O)O")) == "ok"   # release strips stereo
    assert reason("reagent", "p", sf("O.CCO"), sf("CCO.O")) == "ok"
    assert reason("reagent", "p", "O.OCC", sf("CCO.O")) == "ok"
    assert reason("reagent", "p", sf("CCO"), sf("CCO.O")) == "wrong molecule"  # a component missing


@pytest.mark.parametrize("answer,why", [
    (sf("CCC"), "wrong molecule"), ("CC=O", "wrong molecule"),
    ("C(C)(C)(C)(C)C", "invalid molecule"),      # pentavalent carbon: parses, fails sanitization
    ("c1cccc1", "invalid molecule"),             # five aromatic carbons cannot be kekulized
    ("C1CC", "unparsable"),                      # unclosed ring
    ("hello world", "unparsable"), ("[C][Xyz]", "unparsable"), ("[nop]", "unparsable"), (".", "unparsable"),
    ("", "empty"), ("   ", "empty"), (None, "empty"), ("<|im_end|>", "empty"),
    ("[C]" * 4000, "too long"),                  # more than MAX_CHARS
    ("C" * (answers.MAX_ATOMS + 1), "too long"),  # more than MAX_ATOMS heavy atoms
])
def test_wrong_invalid_and_garbage_molecules_get_their_reason(answer, why):
    assert reason("forward", "p", answer, ETHANOL) == why


def test_an_unusable_reference_is_not_the_models_fault():
    assert reason("forward", "p", ETHANOL, "[C][Xyz]") == "bad reference"
    assert reason("forward", "p", ETHANOL, None) == "bad reference"


# ----------------------------------------------------------------------------- retrosynthesis

RETRO_PROMPT = "<mol>Please suggest potential reactants for the given product. The product is: " + sf(PARACETAMOL)
RETRO_REF = sf("CC(=O)Cl.Nc1ccc(O)cc1")


def test_retrosynthesis_the_reference_and_other_plausible_reactants_pass():
    # the reference, as SMILES
    assert reason("retrosynthesis", RETRO_PROMPT, "Nc1ccc(O)cc1.ClC(C)=O", RETRO_REF) == "ok"
    # acetic anhydride instead of acetyl chloride: not the reference, balanced -> plausible without a model
    anhydride = sf("CC(=O)OC(C)=O.Nc1ccc(O)cc1")
    assert reason("retrosynthesis", RETRO_PROMPT, anhydride, RETRO_REF) == "ok (atom balance only)"
    # ... and confirmed when the model's own forward prediction gives the product (a by-product may come along)
    assert reason("retrosynthesis", RETRO_PROMPT, anhydride, RETRO_REF, roundtrip=sf(PARACETAMOL)) == "ok"
    assert reason("retrosynthesis", RETRO_PROMPT, anhydride, RETRO_REF, roundtrip="CC(O)=O.Oc1ccc(NC(C)=O)cc1") == "ok"


@pytest.mark.parametrize("answer,roundtrip,why", [
    (sf("CC(=O)OC(C)=O.Nc1ccc(O)cc1"), sf("CC(=O)Oc1ccc(N)cc1"), "round trip failed"),  # O- instead of N-acylation
    (sf("CC(=O)OC(C)=O.Nc1ccc(O)cc1"), "garbage <|im_end|>", "round trip failed"),
    (sf("CC(=O)Cl.c1ccc(O)cc1"), None, "atoms unbalanced"),          # no nitrogen among the reactants
    (sf("O=CCl.Nc1ccc(O)cc1"), None, "atoms unbalanced"),            # 7 carbons for a product with 8
    (sf("CC(=O)Nc1ccc(O)cc1.O"), None, "product among reactants"),   # "reactants" = product + water
    (sf(PARACETAMOL), None, "product among reactants"),
    ("CC(=O)Cl.N1ccc(O)cc1(", None, "unparsable"),
    ("CC(=O)Cl.c1cccc1N", None, "invalid molecule"),
    ("", None, "empty"),
])
def test_retrosynthesis_failures_get_their_reason(answer, roundtrip, why):
    assert reason("retrosynthesis", RETRO_PROMPT, answer, RETRO_REF, roundtrip) == why


def test_retrosynthesis_without_a_product_in_the_prompt():
    assert reason("retrosynthesis", "Suggest reactants.", RETRO_REF, RETRO_REF) == "bad reference"


# ----------------------------------------------------------------------------- weight / tpsa / logp (rdkit truth)

def prop_prompt(smiles):
    return "<mol>What is it? The molecule SELFIES sequence is: " + sf(smiles)


def test_weight_is_checked_against_the_molecule_not_the_label():
    # ethanol C2H6O by hand: 2 * 12.011 + 6 * 1.008 + 15.999 = 46.069 g/mol
    p = prop_prompt("CCO")
    assert reason("weight", p, "46.07", "999") == "ok"                 # a wrong label does not matter
    assert reason("weight", p, "The molecular weight is 46.5 g/mol.", "46.07") == "ok"   # 0.43 off: within 0.5
    assert reason("weight", p, "47.08", "46.07") == "out of tolerance"  # one hydrogen too many
    assert reason("weight", p, "45.0", "46.07") == "out of tolerance"
    assert reason("weight", p, "about forty", "46.07") == "unparsable"
    assert reason("weight", p, "1e999", "46.07") == "unparsable"        # not a finite number
    assert reason("weight", p, sf("c1ccccc1"), "46.07") == "unparsable"  # the "1" of [Ring1] is no number
    assert reason("weight", p, "MW=46.1", "46.07") == "ok"
    assert reason("weight", p, "", "46.07") == "empty"
    assert reason("weight", "What is the weight?", "46.07", "46.07") == "bad reference"  # no molecule to check


def test_weight_of_a_salt_counts_every_fragment():
    # sodium acetate C2H3NaO2 by hand: 2 * 12.011 + 3 * 1.008 + 22.990 + 2 * 15.999 = 82.034
    p = prop_prompt("CC(=O)[O-].[Na+]")
    assert reason("weight", p, "82.03", "82.03") == "ok"
    assert reason("weight", p, "59.04", "82.03") == "out of tolerance"  # the acetate alone


def test_tpsa_accepts_either_convention_for_sulfur():
    # Ertl contributions: OH 20.23, so ethanol 20.23; methanethiol: 0 with N,O only, SH 38.80 with S and P
    assert reason("tpsa", prop_prompt("CCO"), "20.23", "x") == "ok"
    assert reason("tpsa", prop_prompt("CCO"), "21.1", "x") == "ok"
    assert reason("tpsa", prop_prompt("CCO"), "19.0", "x") == "out of tolerance"  # 1.23 off
    assert reason("tpsa", prop_prompt("CS"), "0", "x") == "ok"
    assert reason("tpsa", prop_prompt("CS"), "38.8", "x") == "ok"
    assert reason("tpsa", prop_prompt("CS"), "20.0", "x") == "out of tolerance"


def test_logp_keeps_its_sign():
    p = prop_prompt("OCC(O)CO")  # glycerol, Crippen MolLogP -1.668
    assert reason("logp", p, "-1.67", "x") == "ok"
    assert reason("logp", p, "LogP = \u22121.3", "x") == "ok"          # Unicode minus, 0.37 off
    assert reason("logp", p, "-.9e0 or so", "x") == "out of tolerance" # read as -0.9
    assert reason("logp", p, "1.67", "x") == "out of tolerance"         # the release's unsigned reading would pass
    assert reason("logp", p, "-2.2", "x") == "out of tolerance"


# ----------------------------------------------------------------------------- molecule editing

EDIT_SOURCE = "O=C(O)C1=NN(c2ccc(S(=O)(=O)O)cc2)C(=O)C1=CNc1ccccc1"   # QED 0.52
EDIT_GOOD = "O=C(O)C1=NN(c2ccccc2)C(=O)C1=Cc1cccs1"                    # QED 0.89, similarity 0.47
EDIT_PROMPT = ("<mol>Make it more drug-like (QED) and keep it similar. The compound SELFIES sequence is: "
               + sf(EDIT_SOURCE))


def _qed_sim(smiles):
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    a, b = Chem.MolFromSmiles(EDIT_SOURCE), Chem.MolFromSmiles(smiles)
    return QED.qed(b), DataStructs.TanimotoSimilarity(gen.GetFingerprint(a), gen.GetFingerprint(b))


def test_molediting_a_valid_edit_passes_whatever_the_reference():
    qed, sim = _qed_sim(EDIT_GOOD)
    assert qed >= 0.6 and sim >= 0.4   # the case is what it claims to be
    assert reason("molediting", EDIT_PROMPT, sf(EDIT_GOOD), "[C]") == "ok"
    assert reason("molediting", EDIT_PROMPT, "OC(=O)C1=NN(C(=O)C1=Cc1sccc1)c1ccccc1", None) == "ok"  # as other SMILES


@pytest.mark.parametrize("answer,why", [
    ("CC(C)Cc1ccc(C(C)C(=O)O)cc1", "constraint failed"),                  # ibuprofen: drug-like, not similar
    ("O=C(O)C1=NN(c2ccc(S(=O)(=O)O)cc2)C(=O)C1=CNc1ccc(C)cc1", "constraint failed"),  # similar, QED still low
    ("OC(=O)C1=NN(C(=O)C1=CNc1ccccc1)c1ccc(cc1)S(O)(=O)=O", "unchanged"),  # the source, written another way
    ("C(C)(C)(C)(C)C", "invalid molecule"), ("edit it", "unparsable"), ("", "empty"),
])
def test_molediting_failures_get_their_reason(answer, why):
    if why == "constraint failed":
        qed, sim = _qed_sim(answer)
        assert qed < 0.6 or sim < 0.4
    assert reason("molediting", EDIT_PROMPT, answer, sf(EDIT_GOOD)) == why


def test_molediting_drd2_is_not_verifiable():
    assert reason("molediting", EDIT_PROMPT.replace("(QED)", "(DRD2)"), sf(EDIT_GOOD), "x") == "not verifiable"


# ----------------------------------------------------------------------------- homolumo, yield, text

def test_homolumo_within_chemical_accuracy_of_the_reference():
    p = "Please provide the LUMO energy value for this molecule."
    assert reason("homolumo", p, "-0.2401", -0.2401) == "ok"            # the reference is a JSON number
    assert reason("homolumo", p, "-0.2390 Hartree", "-0.2401") == "ok"  # 0.0011 off, text around the number
    assert reason("homolumo", p, "-0.2450", "-0.2401") == "out of tolerance"  # 0.0049: the paper's typical error
    assert reason("homolumo", p, "0.2401", "-0.2401") == "out of tolerance"
    assert reason("homolumo", p, "low", "-0.2401") == "unparsable"
    assert reason("homolumo", p, "-0.24", "n/a") == "bad reference"


@pytest.mark.parametrize("task", ["yield", "yield_BH", "yield_SM"])
def test_yield_within_ten_points(task):
    assert reason(task, "p", "42.7", 42.7) == "ok"
    assert reason(task, "p", "50%", "42.7") == "ok"
    assert reason(task, "p", "60", "42.7") == "out of tolerance"
    assert reason(task, "p", "high", "42.7") == "unparsable"


@pytest.mark.parametrize("task", V.TEXT_TASKS)
def test_text_tasks_are_not_verifiable(task):
    assert V.verify(task, "p", "a caption", "a caption") == V.Verdict(0.0, "not verifiable")


def test_unknown_task_and_an_internal_error_are_reasons(monkeypatch):
    assert reason("nonsense", "p", "x", "y") == "unknown task"
    assert reason(None, None, None, None) == "unknown task"

    def boom(*a):
        raise RuntimeError("a bug")
    monkeypatch.setattr(V, "verify_molecule", boom)
    assert reason("forward", "p", ETHANOL, ETHANOL) == "verifier error"


# ----------------------------------------------------------------------------- anything a model may emit

GARBAGE = [b"\xff\xfe\x00", "\ud800\udfff", "\x00" * 50, 12345, 3.5, ["[C]"], {"a": 1}, float("nan"),
           "[Branch3][Ring3][=Ring3]" * 300, "[C]" + "[C][Ring1][Ring1][C][Ring1][Branch1]" * 200,
           "[C][Branch1]" * 1500, "((((((((((C" * 100, "C" * 400 + "1" * 400, "\u2212" * 1000, "9" * 5000,
           "[" * 3000 + "]" * 3000, "<|eot_id|>[C][O]", "[C@@H](N)(O)[C@@H]" * 50, "x" * 100_000]


@pytest.mark.parametrize("task", ["forward", "reagent", "retrosynthesis", "molediting", "weight", "tpsa", "logp",
                                  "homolumo", "yield_BH", "molcap", "iupac"])
def test_garbage_never_raises(task):
    rng = random.Random(0)
    alphabet = sorted(selfies.get_semantic_robust_alphabet()) + ["[Branch3]", "[Ring3]", ".", "[=Ring2]", "[#Branch2]"]
    random_selfies = ["".join(rng.choice(alphabet) for _ in range(rng.choice([5, 50, 500]))) for _ in range(30)]
    for g in GARBAGE + random_selfies:
        for prompt, ref in ((RETRO_PROMPT, RETRO_REF), (g, g), (None, None)):
            reason(task, prompt, g, ref, roundtrip=g)


# ----------------------------------------------------------------------------- rows and the CLI

ROWS = [
    {"task": "forward", "prompt": "p", "prediction": "OCC", "reference": ETHANOL},
    {"task": "forward", "prompt": "p", "prediction": sf("CCC"), "reference": ETHANOL},
    {"task": "forward", "prompt": "p", "prediction": "junk words", "reference": ETHANOL},
    {"task": "forward", "prompt": "p", "prediction": sf("CO"), "reference": ETHANOL},
    {"task": "retrosynthesis", "prompt": RETRO_PROMPT, "prediction": sf("CC(=O)OC(C)=O.Nc1ccc(O)cc1"),
     "reference": RETRO_REF, "roundtrip": sf(PARACETAMOL)},
    {"task": "molcap", "prompt": "p", "prediction": "an alcohol", "reference": "an alcohol"},
    {"task": "molediting", "prompt": EDIT_PROMPT, "prediction": sf(EDIT_GOOD), "reference": "x"},
    {"task": "molediting", "prompt": EDIT_PROMPT.replace("QED", "DRD2"), "prediction": sf(EDIT_GOOD), "reference": "x"},
]


def test_verify_rows_counts_reasons_and_skips_the_unverifiable():
    got = V.verify_rows(ROWS)
    assert got["forward"] == {"verified": 0.25, "reasons": {"wrong molecule": 2, "ok": 1, "unparsable": 1},
                              "N": 4, "verifiable": 4}
    assert got["retrosynthesis"]["verified"] == 1.0 and got["retrosynthesis"]["reasons"] == {"ok": 1}
    assert got["molcap"] == {"verified": None, "reasons": {"not verifiable": 1}, "N": 1, "verifiable": 0}
    assert got["molediting"]["verified"] == 1.0 and got["molediting"]["verifiable"] == 1   # DRD2 left out
    assert V.verify_rows([None, "row", {}])[""]["reasons"] == {"unknown task": 3}


def test_cli_writes_verified_json_beside_the_file_and_survives_bad_bytes(repo, tmp_path):
    path = tmp_path / "predictions.jsonl"
    lines = [json.dumps(r).encode() for r in ROWS]
    lines.append(b'{"task": "forward", "prompt": "p", "prediction": "\xff\xfe[C]", "reference": "[C][C][O]"}')
    path.write_bytes(b"\n".join(lines) + b"\n\n")
    out = subprocess.run([sys.executable, os.path.join(repo, "verify.py"), str(path)], capture_output=True, text=True,
                         cwd=repo, timeout=300)
    assert out.returncode == 0, out.stderr
    got = json.loads((tmp_path / "verified.json").read_text())
    assert got["forward"]["N"] == 5 and got["forward"]["reasons"]["unparsable"] == 2
    assert got["forward"]["verified"] == pytest.approx(1 / 5)
    assert "forward" in out.stdout and "wrote" in out.stdout
    path.write_text('{"task": "forward"}\n[1, 2]\n')
    out = subprocess.run([sys.executable, os.path.join(repo, "verify.py"), str(path)], capture_output=True, text=True,
                         cwd=repo, timeout=300)
    assert out.returncode != 0 and "predictions.jsonl:2" in out.stderr and "Traceback" not in out.stderr


def test_eval_score_reports_the_verified_column(tmp_path):
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    res = E.main(["--score", str(path), "--out", str(tmp_path / "ev")])
    assert res["forward"]["Verified (verify.py)"] == 0.25 and res["molcap"]["Verified (verify.py)"] is None
    assert any(n.startswith("verify.py: ") for n in res["forward"]["notes"])
    md = (tmp_path / "ev" / "results.md").read_text()
    assert "| Verified (verify.py) | 0.2500 |" in md and "### Verified answers (verify.py)" in md
    assert json.loads((tmp_path / "ev" / "verified.json").read_text()) == V.verify_rows(ROWS)


def test_eval_round_trip_answers_reach_the_verifier(monkeypatch, tmp_path):
    """eval.roundtrip asks the model the forward question on each proposed reactant set; its answers are kept
    per row ("roundtrip"), written to predictions.jsonl and used by verify (here a stand-in model)."""
    asked = []

    def fake_generate(model, tok, samples, *a, **k):
        asked.extend(s.prompt for s in samples)
        return [sf(PARACETAMOL) + "<|im_end|>", sf("CC(=O)Oc1ccc(N)cc1")][:len(samples)]
    monkeypatch.setattr(E, "_sharded_generate", fake_generate)
    rows = [{"task": "retrosynthesis", "id": i, "prompt": RETRO_PROMPT, "prediction": p, "reference": RETRO_REF}
            for i, p in enumerate([sf("CC(=O)OC(C)=O.Nc1ccc(O)cc1"), sf("CC(=O)OC(C)=O.Nc1ccc(O)cc1"), "junk"])]
    extra = E.roundtrip(None, None, rows, None, "cpu", 0, 1)
    assert len(asked) == 2 and all(sf("CC(=O)OC(C)=O") in p for p in asked)   # the junk answer is not asked
    assert extra["Round trip (forward reproduces product)"] == pytest.approx(1 / 3)
    assert [r.get("roundtrip") for r in rows] == [sf(PARACETAMOL), sf("CC(=O)Oc1ccc(N)cc1"), None]
    assert [V.verify(**{k: r.get(k) for k in ("task", "prompt", "prediction", "reference", "roundtrip")}).reason
            for r in rows] == ["ok", "round trip failed", "unparsable"]
    E.write_results({}, str(tmp_path), {}, rows)
    saved = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [("roundtrip" in r) for r in saved] == [True, True, False]


def test_prompts_in_smiles_as_with_mol_format_smiles():
    """--mol-format smiles writes the prompt's molecule (and the answers) as SMILES: the same verdicts."""
    salt = "<mol>\nWhat is the weight? The molecule sequence is: CC(=O)[O-].[Na+]"
    assert reason("weight", salt, "82.03", "x") == "ok"
    p, ref = "<mol>\nPlease suggest potential reactants. The product is: " + PARACETAMOL, "CC(=O)Cl.Nc1ccc(O)cc1"
    assert reason("retrosynthesis", p, "CC(=O)OC(C)=O.Nc1ccc(O)cc1", ref) == "ok (atom balance only)"
    assert reason("retrosynthesis", p, "CC(=O)Cl.c1ccc(O)cc1", ref) == "atoms unbalanced"
    edit = "<mol>\nRaise its QED. The compound sequence is: " + EDIT_SOURCE
    assert reason("molediting", edit, EDIT_GOOD, "x") == "ok"
