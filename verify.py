"""Verifiers: an answer checked by chemistry, not by string overlap with one reference.

    python verify.py predictions.jsonl        # writes verified.json beside it, prints a table
    verify.verify(task, prompt, prediction, reference, roundtrip=None) -> Verdict(score, reason)
    verify.verify_rows(rows) -> {task: {"verified": fraction, "reasons": {reason: count}, ...}}

Rows are eval.py's predictions.jsonl records {"task", "id", "prompt", "prediction", "reference"}, plus an
optional "roundtrip": for retrosynthesis, the model's own forward prediction from its proposed reactants
(eval.py computes it; this file loads no model). Every verdict has a score in [0, 1] and a reason from
REASONS, so failures are counted by kind (after FutureHouse ether0's reward functions and their
RewardReason enum, src/ether0/rewards.py and models.py). Nothing a model emits raises: a reason, always.

What is checked, per task (the tolerances are the constants below, each with its reason):
- forward, reagent, solvent, catalyst, iupac, textguidedmolgen: the same molecule as the reference, by
  InChI of the stereo-stripped molecule (the release's exact match), the answer read as SELFIES or SMILES.
  A multi-component answer (reagents "A.B") is one molecule for InChI, so component order does not matter.
- retrosynthesis: many reactant sets make one product, so the reference is only one way to pass.
  Without a model: valid reactants, none of them the product itself, and every heavy atom of the product
  accounted for: each element at least as often among the reactants as in the product (atom conservation;
  reactants in USPTO's sense contribute every product atom, leaving groups add more). That is plausibility
  only ("ok (atom balance only)"). With `roundtrip`: the model's forward prediction must contain the product.
- weight / tpsa / logp: the first number of the answer within a tolerance of rdkit's value for the
  prompt's molecule (MolWt / CalcTPSA / Crippen MolLogP), whatever the reference label says.
- molediting: a valid molecule, different from the source, QED >= 0.6 and Morgan (r=2, 2048 bits)
  Tanimoto >= 0.4 to the SOURCE (the release's thresholds; the release compares similarity to the
  reference, but the task asks to stay close to the input). DRD2 prompts: not verifiable (the release's
  DRD2 scorer has no offline weights).
- homolumo / yield: within a tolerance of the reference number.
- molcap, dqa, experiment: "not verifiable" (free text; see mcq.py for a verifiable version).
- a rationale before the answer ("<think> ... </think> ANSWER", reasoning.py): the answer after it is verified
  as above (a rationale with no answer after it is "unparsable"); then, for weight / tpsa / logp / molediting,
  reasoning.check: terms that do not add up to the stated sum, a sum that is not the answer at the answer's
  precision, or QED / similarity not the molecules' fail as "rationale inconsistent" (a body not in the format
  as "rationale unreadable"); a consistent rationale leaves the answer's verdict.
"""
import argparse
import json
import os
from collections import Counter
from dataclasses import dataclass

from rdkit import Chem, DataStructs, RDLogger, rdBase
from rdkit.Chem import QED, Crippen, Descriptors, rdMolDescriptors

from answers import MAX_CHARS, MORGAN_BITS, as_text, cut_answer, first_number, inchi, parse_molecule, prompt_molecule
import reasoning
from readers import read_jsonl

RDLogger.DisableLog("rdApp.*")

REASONS = (
    "ok",                       # verified
    "ok (atom balance only)",   # retrosynthesis without a round trip: plausible, not confirmed by a model
    "empty",                    # no answer at all
    "too long",                 # longer than MAX_CHARS / MAX_ATOMS: not parsed (bounds the time per answer)
    "unparsable",               # neither SELFIES nor SMILES (molecule tasks), or no number (number tasks)
    "invalid molecule",         # SMILES syntax fine, chemistry not (valence, aromaticity), or no InChI
    "wrong molecule",           # a valid molecule, not the reference's
    "out of tolerance",         # a number, too far from the truth
    "constraint failed",        # molediting: QED or similarity below the threshold
    "unchanged",                # molediting: the answer is the source molecule
    "product among reactants",  # retrosynthesis: the "reactants" contain the product itself
    "atoms unbalanced",         # retrosynthesis: the reactants hold fewer atoms of some heavy element than the product
    "round trip failed",        # retrosynthesis: the model's forward prediction from the reactants is not the product
    "rationale inconsistent",   # reasoning.py: its terms miss its sum, its sum the answer, or QED / similarity
    "rationale unreadable",     # reasoning.py: a weight / tpsa / logp / molediting rationale not in the format
    "bad reference",            # the reference (or the prompt's molecule) cannot be parsed: not the model's fault
    "not verifiable",           # free text, or a property we cannot compute (DRD2)
    "unknown task",
    "verifier error",           # an unexpected exception inside a verifier; counted, never raised
)

# ----------------------------------------------------------------------------- tolerances (with their reasons)
# Molecular weight, g/mol: half a hydrogen's mass (1.008 / 2). An answer off by one H, or by any atom, fails;
# 2-decimal rounding and the ~0.01 differences between atomic-weight tables (rdkit vs PubChem) pass.
WEIGHT_TOL = 0.5
# TPSA, A^2: the smallest non-zero polar contribution in Ertl's table (J. Med. Chem. 2000, 43, 3714) is 3.01
# (e.g. a three-membered-ring N); 1.0 is below half of it, so one polar atom too many or too few fails, rounding
# passes. The answer may match either rdkit variant: N,O only (Ertl, rdkit's default) or N,O,S,P (PubChem's
# value, which 3D-MoIT's labels come from).
TPSA_TOL = 1.0
# LogP, log units: half a log unit (a factor ~3 in the partition coefficient), the accuracy bar ether0 uses for
# log-solubility (oracle_solubility_eval), and below the error of Crippen's model itself against experiment
# (Wildman & Crippen, JCICS 1999, report s = 0.68 on their training set). The truth is Crippen's MolLogP: labels from
# another method (3D-MoIT's PubChem XLogP3) differ
# from it by more than this for many molecules, so a perfect copy of those labels is not fully verified.
LOGP_TOL = 0.5
# HOMO / LUMO / gap, Hartree: 0.0016 Ha = 1 kcal/mol = 0.043 eV, the "chemical accuracy" used for QM9 orbital
# energies (Faber et al., JCTC 2017). The paper's model averages 0.0044 Ha of error.
HOMOLUMO_TOL = 0.0016
# Yield, percentage points: HTE yields are single measurements (UPLC against an internal standard) whose repeats
# differ by several points; within 10 points a prediction is as good as a re-measurement would be.
YIELD_TOL = 10.0
# Molecule editing, the release's success thresholds (calculate_moledit_metrics).
EDIT_QED_MIN, EDIT_SIM_MIN = 0.6, 0.4
MOLECULE_TASKS = ("forward", "reagent", "solvent", "catalyst", "iupac", "textguidedmolgen")
# verdicts given before an answer is read: a rationale is not checked then
READ_FAILURES = ("empty", "too long", "unparsable", "invalid molecule", "bad reference", "not verifiable",
                 "unknown task")
TEXT_TASKS = ("molcap", "dqa", "experiment")



@dataclass(frozen=True)
class Verdict:
    score: float   # in [0, 1]
    reason: str    # one of REASONS

    def __post_init__(self):
        assert self.reason in REASONS, self.reason
        assert 0.0 <= self.score <= 1.0, self.score


OK = Verdict(1.0, "ok")


def _fail(reason):
    return Verdict(0.0, reason)


# ----------------------------------------------------------------------------- reading answers

def _reference_mol(text):
    mol, _ = parse_molecule(as_text(text))
    return mol


# ----------------------------------------------------------------------------- verifiers, one per answer kind

def _answer_molecule(prediction):
    """-> (mol, InChI, None) for a readable answer molecule, else (None, None, the failing Verdict)."""
    mol, why = parse_molecule(cut_answer(as_text(prediction)))
    if mol is None:
        return None, None, _fail(why)
    got = inchi(mol)
    if got is None:
        return None, None, _fail("invalid molecule")
    return mol, got, None


def verify_molecule(prompt, prediction, reference, roundtrip=None):
    """forward, reagent, solvent, catalyst, iupac, textguidedmolgen: same InChI as the reference."""
    ref = _reference_mol(reference)
    ref_inchi = inchi(ref) if ref is not None else None
    if ref_inchi is None:
        return _fail("bad reference")
    mol, got, failed = _answer_molecule(prediction)
    if failed:
        return failed
    return OK if got == ref_inchi else _fail("wrong molecule")


def heavy_atoms(mol) -> Counter:
    """{element symbol: count} of a molecule's heavy atoms (the atom balance of retrosynthesis; distractors.py)."""
    return Counter(a.GetSymbol() for a in mol.GetAtoms() if a.GetAtomicNum() > 1)


def _fragment_inchis(mol):
    with rdBase.BlockLogs():
        frags = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False)
    return {i for i in (inchi(f) for f in frags) if i}


def verify_retrosynthesis(prompt, prediction, reference, roundtrip=None):
    """Valid reactants, not the product, every heavy atom of the product among them; then the model's
    forward prediction from them (roundtrip) must contain the product. The reference itself always passes."""
    product = _reference_mol(prompt_molecule(prompt) or "")
    product_inchi = inchi(product) if product is not None else None
    if product_inchi is None:
        return _fail("bad reference")
    mol, got, failed = _answer_molecule(prediction)
    if failed:
        return failed
    ref = _reference_mol(reference)
    if ref is not None and got == inchi(ref):
        return OK  # the reference's reactants: the data set says they make the product
    if got == product_inchi or product_inchi in _fragment_inchis(mol):
        return _fail("product among reactants")
    have = heavy_atoms(mol)
    if any(have[el] < n for el, n in heavy_atoms(product).items()):
        return _fail("atoms unbalanced")
    if roundtrip is None:
        return Verdict(1.0, "ok (atom balance only)")
    fwd, _ = parse_molecule(cut_answer(as_text(roundtrip)))
    if fwd is None:
        return _fail("round trip failed")
    # a forward model may write a by-product beside the product: any component counts
    return OK if product_inchi in {inchi(fwd)} | _fragment_inchis(fwd) else _fail("round trip failed")


def _tpsa_both(mol):
    return rdMolDescriptors.CalcTPSA(mol), rdMolDescriptors.CalcTPSA(mol, includeSandP=True)


PROPERTIES = {  # task -> (rdkit values that count as true, tolerance)
    "weight": (lambda m: (Descriptors.MolWt(m),), WEIGHT_TOL),
    "tpsa": (_tpsa_both, TPSA_TOL),
    "logp": (lambda m: (Crippen.MolLogP(m),), LOGP_TOL),
}


def _answer_number(prediction):
    """-> (the answer's first number, None), else (None, the failing Verdict)."""
    text = cut_answer(as_text(prediction))
    if not text:
        return None, _fail("empty")
    if len(text) > MAX_CHARS:
        return None, _fail("too long")
    x = first_number(text)
    return (x, None) if x is not None else (None, _fail("unparsable"))


def verify_property(task, prompt, prediction, reference=None):
    """weight / tpsa / logp: the first number within the tolerance of rdkit's value for the prompt's molecule."""
    mol = _reference_mol(prompt_molecule(prompt) or "")
    if mol is None:
        return _fail("bad reference")
    x, failed = _answer_number(prediction)
    if failed:
        return failed
    fn, tol = PROPERTIES[task]
    return OK if any(abs(x - t) <= tol for t in fn(mol)) else _fail("out of tolerance")


def verify_molediting(prompt, prediction, reference=None, roundtrip=None):
    """A valid edit of the prompt's molecule: different from it, QED >= 0.6, Morgan similarity to it >= 0.4."""
    prompt = as_text(prompt)
    if "DRD2" in prompt:
        return _fail("not verifiable")  # needs the release's DRD2 GIN scorer (no offline weights)
    source = _reference_mol(prompt_molecule(prompt) or "")
    source_inchi = inchi(source) if source is not None else None
    if source_inchi is None:
        return _fail("bad reference")
    mol, got, failed = _answer_molecule(prediction)
    if failed:
        return failed
    if got == source_inchi:
        return _fail("unchanged")
    sim = DataStructs.TanimotoSimilarity(MORGAN_BITS.GetFingerprint(source), MORGAN_BITS.GetFingerprint(mol))
    return OK if QED.qed(mol) >= EDIT_QED_MIN and sim >= EDIT_SIM_MIN else _fail("constraint failed")


def _verify_close(prediction, reference, tol):
    r = first_number(as_text(reference))
    if r is None:
        return _fail("bad reference")
    x, failed = _answer_number(prediction)
    if failed:
        return failed
    return OK if abs(x - r) <= tol else _fail("out of tolerance")


def verify_homolumo(prompt, prediction, reference, roundtrip=None):
    """HOMO / LUMO / gap in Hartree: within HOMOLUMO_TOL of the reference."""
    return _verify_close(prediction, reference, HOMOLUMO_TOL)


def verify_yield(prompt, prediction, reference, roundtrip=None):
    """Yield in percent: within YIELD_TOL points of the measured reference."""
    return _verify_close(prediction, reference, YIELD_TOL)


def verify_text(prompt, prediction, reference, roundtrip=None):
    """Captions, description answers, procedures: free text has no verifier (mcq.py makes them multiple choice)."""
    return _fail("not verifiable")


def verifiable(task_ratios: dict) -> dict:
    """task_ratios as given, or ValueError naming the free-text tasks among them: they have no verifier
    (rl.py's rewards and rft.py's acceptance need one)."""
    text = sorted(set(task_ratios) & set(TEXT_TASKS))
    if text:
        raise ValueError(f"--tasks {','.join(text)}: free-text answers have no verifier (verify.py scores them "
                         "'not verifiable')")
    return task_ratios


def verifier(task):
    """The verifying function of a task key (yield_BH / yield_SM -> yield), None for an unknown task."""
    task = as_text(task)
    if task in MOLECULE_TASKS:
        return verify_molecule
    if task in PROPERTIES:
        return lambda prompt, prediction, reference, roundtrip=None: verify_property(task, prompt, prediction,
                                                                                     reference)
    if task == "yield" or task.startswith("yield_"):
        return verify_yield
    return {"retrosynthesis": verify_retrosynthesis, "molediting": verify_molediting, "homolumo": verify_homolumo,
            **dict.fromkeys(TEXT_TASKS, verify_text)}.get(task)


def verify(task, prompt, prediction, reference, roundtrip=None) -> Verdict:
    """One answer -> Verdict(score in [0, 1], reason in REASONS). Never raises on any input."""
    fn = verifier(task)
    if fn is None:
        return _fail("unknown task")
    try:
        v = fn(prompt, prediction, reference, roundtrip)
        if not reasoning.has_rationale(prediction) or v.reason in READ_FAILURES:
            return _fail("unparsable") if v.reason == "empty" and reasoning.has_rationale(prediction) else v
        why = reasoning.check(task, prompt, prediction)  # the rationale's own arithmetic, after the answer's reading
        return _fail(why) if why else v
    except Exception:  # a bug or an rdkit corner we did not foresee: counted, not raised (ether0 does the same)
        return _fail("verifier error")


def verify_rows(rows) -> dict:
    """predictions.jsonl rows -> {task: {"verified": fraction, "reasons": {reason: count}, "N", "verifiable"}}.
    The fraction is the mean score over the verifiable rows (those not "not verifiable"); None if there are none."""
    scores, reasons = {}, {}
    for r in rows:
        r = r if isinstance(r, dict) else {}
        task = as_text(r.get("task"))
        v = verify(task, r.get("prompt"), r.get("prediction"), r.get("reference"), r.get("roundtrip"))
        reasons.setdefault(task, Counter())[v.reason] += 1
        if v.reason != "not verifiable":
            scores.setdefault(task, []).append(v.score)
    out = {}
    for task, c in reasons.items():
        s = scores.get(task, [])
        out[task] = {"verified": sum(s) / len(s) if s else None, "reasons": dict(c.most_common()),
                     "N": sum(c.values()), "verifiable": len(s)}
    return out


def add_to_results(results, verified):
    """eval.py's results {task: {metric: value}} gain "Verified (verify.py)" and a note with the reasons."""
    for task, v in verified.items():
        if task in results:
            results[task]["Verified (verify.py)"] = v["verified"]
            results[task].setdefault("notes", []).append(
                "verify.py: " + ", ".join(f"{k} {n}" for k, n in v["reasons"].items()))
    return results


# ----------------------------------------------------------------------------- CLI

def read_rows(path):
    """predictions.jsonl -> rows (readers.read_jsonl: non-UTF-8 bytes replaced, a bad line named)."""
    return read_jsonl(path)


def table(verified) -> str:
    lines = [f"{'task':<17} {'verified':>9} {'N':>5}  reasons"]
    for task, v in verified.items():
        frac = "n/a" if v["verified"] is None else f"{v['verified']:.3f}"
        lines.append(f"{task:<17} {frac:>9} {v['N']:>5}  " + ", ".join(f"{k}: {n}" for k, n in v["reasons"].items()))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("predictions", help="a predictions.jsonl (eval.py's schema; an optional 'roundtrip' field "
                   "holds the model's forward prediction from its retrosynthesis answer)")
    p.add_argument("--out", default=None, help="default: verified.json beside the predictions file")
    args = p.parse_args(argv)
    verified = verify_rows(read_rows(args.predictions))
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.predictions)), "verified.json")
    with open(out, "w") as f:
        json.dump(verified, f, indent=1)
    print(table(verified))
    print(f"wrote {out}")
    return verified


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"verify.py: error: {e}") from None
