"""answers.py, where every answer is read: one number reading for scores (metrics.py), verdicts (verify.py)
and rewards (rl.py); where an answer ends; the molecule of an answer or of a prompt, in the release's reading
and in the strict one; the bounds on the work per answer. Expected values are by hand (rdkit's MolWt and
Crippen logP of small molecules for the verdicts)."""
import math

import pytest
import selfies
from rdkit import Chem

import answers
import metrics
import rl
import significance
import verify

sf = selfies.encoder
ETHANOL = sf("CCO")
ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"   # C9H8O4, MolWt 180.159
ACETONE = "CC(C)=O"                 # Crippen logP 0.595


# ----------------------------------------------------------------------------- numbers

@pytest.mark.parametrize("text,signed,release", [
    ("3-methyl", 3.0, 3.0), ("1.5e-3", 0.0015, 1.5), ("-.", None, None), ("", None, None), ("x=-4", -4.0, 4.0),
    # a digit inside a word is no number: the release (and metrics.py before answers.py) read 10 here
    ("C10H12", None, 10.0),
    ("C12 weighs 180.2", 180.2, 12.0), ("LogP = .5", 0.5, 5.0),
    ("LogP -1.2", -1.2, 1.2), ("\u22122.0", -2.0, 2.0),   # a sign, and a Unicode minus
    ("1e309", None, 1.0),                                 # not finite: no number (the release reads its "1")
])
def test_first_number(text, signed, release):
    assert answers.first_number(text) == signed and answers.first_number(text, release_compat=True) == release


def test_first_number_bounds_the_work():
    assert answers.first_number(None) is None
    assert answers.first_number("1" + " x" * answers.MAX_CHARS) is None   # longer than MAX_CHARS: no answer


def test_one_number_reading_for_scores_verdicts_and_rewards():
    """"C12 weighs 180.2" is 180.2 and "LogP = .5" is 0.5 for metrics.py's MAE, verify.py's verdict (against
    rdkit's value of the prompt's molecule) and rl.py's partial credit alike; the release's reading (12 and 5)
    stays behind --release-compat."""
    cases = [  # (task, prompt molecule, answer, the number in it, the release's number, reference)
        ("weight", ASPIRIN, "C12 weighs 180.2", 180.2, 12.0, "180.16"),
        ("logp", ACETONE, "LogP = .5", 0.5, 5.0, "0.6"),
    ]
    for task, smiles, answer, x, release_x, ref in cases:
        assert answers.first_number(answer) == x and answers.first_number(answer, release_compat=True) == release_x
        # the score: metrics.py's MAE, and the per-item number significance.py bootstraps
        mae = metrics.number_metrics([answer], [ref])["Average MAE"]
        assert mae == pytest.approx(abs(x - float(ref)))
        release_mae = metrics.number_metrics([answer], [ref], release_compat=True)["Average MAE"]
        assert release_mae == pytest.approx(abs(release_x - float(ref)))
        assert significance.read_number("number", answer) == x
        # the verdict: within the tolerance of rdkit's value; the release's number would be far off
        prompt = "<mol>What is it? The molecule SELFIES sequence is: " + sf(smiles)
        assert verify.verify(task, prompt, answer, ref) == verify.Verdict(1.0, "ok")
        assert verify.verify(task, prompt, f"{release_x}", ref).reason == "out of tolerance"
        # the reward: partial credit from the same number
        miss = verify.Verdict(0.0, "out of tolerance")
        want = 1.0 / (1.0 + abs(x - float(ref)) / rl.PARTIAL_SCALE[task])
        assert rl.shaped_reward(task, miss, answer, ref, partial_credit=True) == pytest.approx(want)
        assert want > 1.0 / (1.0 + abs(release_x - float(ref)) / rl.PARTIAL_SCALE[task])


def test_a_non_finite_number_is_no_number_anywhere():
    prompt = "<mol>What is it? The molecule SELFIES sequence is: " + sf(ASPIRIN)
    assert answers.first_number("1e309") is None
    assert metrics.number_metrics(["1e309", "180.2"], ["180.16", "180.16"])["Skipped items"] == 1
    assert verify.verify("weight", prompt, "1e309", "180.16").reason == "unparsable"
    miss = verify.Verdict(0.0, "unparsable")
    assert rl.shaped_reward("weight", miss, "1e309", "180.16", partial_credit=True) == 0.0


def test_strict_float():
    assert answers.strict_float("-0.2401") == -0.2401 and answers.strict_float(" 42.7 ") == 42.7
    for bad in ("nan", "inf", "1e999", 10 ** 400, None, "0.3 Ha", "", "1 2"):
        assert answers.strict_float(bad) is None, bad


# ----------------------------------------------------------------------------- text

def test_cut_answer_at_the_end_marker():
    assert answers.cut_answer("CCO<|im_end|>junk") == "CCO"
    assert answers.cut_answer("  CCO </s> more <|eot_id|>") == "CCO"
    assert answers.cut_answer(None) == ""
    # the release cuts at Llama-3's <|eot_id|> only, and does not strip
    assert answers.RELEASE_EOS in answers.END_MARKERS
    assert answers.cut_answer(" CCO <|im_end|><|eot_id|>x", release_compat=True) == " CCO <|im_end|>"


def test_as_text_takes_any_value():
    assert answers.as_text(None) == "" and answers.as_text(3.5) == "3.5" and answers.as_text(["[C]"]) == "['[C]']"
    assert answers.as_text(b"\xffC") == "\ufffdC"
    got = answers.as_text("\ud800x")   # a lone surrogate: replaced, so the text encodes (rdkit takes it)
    assert got.endswith("x") and got.encode("utf-8")


# ----------------------------------------------------------------------------- molecules

def test_molecule_in_either_format_the_releases_reading():
    mol, can = answers.mol_from_text(ETHANOL)
    assert mol is not None and can == "CCO"
    assert answers.mol_from_text("OCC")[1] == "CCO"                        # SMILES
    assert answers.mol_from_text("[Na+].[Cl-]")[1] == "[Cl-].[Na+]"        # bracket atoms, not SELFIES tokens
    assert answers.mol_from_text("CCO", release_compat=True) == (None, None)  # the release reads SELFIES only
    assert answers.mol_from_text(sf("C[C@H](N)C(=O)O"))[1] == "CC(N)C(=O)O"  # stereo stripped, as the release
    assert answers.looks_like_selfies("[C][=O].[Na+1]") and not answers.looks_like_selfies("CCO")
    for garbage in ("", None, "hello", "\ufffd\ufffdC", "[C]" * 4000):     # the last: longer than MAX_CHARS
        assert answers.mol_from_text(garbage) == (None, None), garbage


def test_the_strict_reading_gives_a_reason():
    assert answers.parse_molecule("C1CC") == (None, "unparsable")               # unclosed ring
    assert answers.parse_molecule("C(C)(C)(C)(C)C") == (None, "invalid molecule")  # parses, fails sanitization
    assert answers.parse_molecule("  ") == (None, "empty")
    assert answers.parse_molecule("C" * (answers.MAX_ATOMS + 1)) == (None, "too long")
    mol, why = answers.parse_molecule("C[C@H](N)C(=O)O")
    assert why is None and Chem.MolToSmiles(mol) == "CC(N)C(=O)O"


def test_inchi_and_same_molecule():
    assert answers.inchi(Chem.MolFromSmiles("CCO")) == "InChI=1S/C2H6O/c1-2-3/h3H,2H2,1H3"
    assert answers.same_molecule("OCC", ETHANOL) and not answers.same_molecule("CCC", ETHANOL)
    assert answers.same_molecule(sf("C[C@H](N)C(=O)O"), "C[C@@H](N)C(=O)O")   # stereo stripped
    assert not answers.same_molecule("hello", "hello")


def test_prompt_molecule():
    assert answers.prompt_molecule("The [bracketed] hint, then " + ETHANOL) == ETHANOL
    # the input molecule of a SMILES prompt: its last word, a reaction's product side
    assert answers.prompt_molecule("Propose reactants. The product is: C[C@H](N)C(=O)O") == "C[C@H](N)C(=O)O"
    assert answers.prompt_molecule("Which solvent? The reaction is CCBr>>CCO.") == "CCO"
    salt = ETHANOL + "." + sf("[Na+]")
    assert answers.prompt_molecule("The molecule SELFIES sequence is: " + salt) == salt  # the whole input, salt too
    assert answers.prompt_molecule("no molecule here") is None and answers.prompt_molecule(None) is None
    assert answers.prompt_molecule("The molecule is: " + "[C]" * 4000) is None  # a last word over MAX_CHARS


def test_readers_never_raise_and_stay_fast_on_garbage():
    garbage = [b"\xff\xfe\x00", "\ud800\udfff", "\x00" * 50, 12345, float("nan"), "[Branch3][Ring3][=Ring3]" * 300,
               "[C][Branch1]" * 1500, "((((((((((C" * 100, "\u2212" * 1000, "9" * 5000, "[" * 3000 + "]" * 3000,
               "x" * 100_000]
    for g in garbage:
        text = answers.as_text(g)
        answers.cut_answer(text)
        answers.mol_from_text(text)
        answers.parse_molecule(text)
        answers.prompt_molecule(text)
        x = answers.first_number(text)
        assert x is None or math.isfinite(x)
