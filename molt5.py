"""MolT5 / ChEBI-20 scoring: the metric definitions of MolT5's evaluation code, for comparing with published numbers.

Source: blender-nlp/MolT5, evaluation/ (Edwards et al. 2022, "Translation between Molecules and Natural
Language"), the scoring used by the ChEBI-20 literature that compares against MolT5:
- mol_translation_metrics.py, evaluate(): BLEU = nltk corpus_bleu (4-gram, no smoothing) over the characters of
  the raw SMILES strings, every item in the corpus; Exact Match = Chem.MolToInchi(answer) == Chem.MolToInchi(ref)
  (standard InChI, stereo layers included) over all items; Levenshtein = distance between the raw strings, mean
  over all items.
- fingerprint_metrics.py, evaluate(): Validity = answers Chem.MolFromSmiles parses / all; MACCS, RDK and Morgan
  (AllChem.GetMorganFingerprint(m, 2): the count-based fingerprint, not a bit vector) Tanimoto similarities
  ("FTS"), mean over the valid answers.
- text_translation_metrics.py, evaluate(): BLEU-2/4 (corpus, no smoothing) and METEOR (nltk, mean per item) on
  SciBERT WordPiece tokens (first 512, [PAD]/[CLS]/[SEP] dropped); ROUGE-1/2/L F-measure (rouge-score, no
  stemmer) on the raw strings; a leading "[CLS] " is cut from the answer.
MolT5's evaluation/environment_eval.yml pins transformers 4.17, nltk 3.7, rouge-score 0.0.4 and rdkit 2022.03; here
the versions of requirements.txt score (same functions; not compared number for number with the older versions).
Not computed: FCD (fcd_metric.py needs the ChemNet network) and Text2Mol (mol_text2mol_metric.py and
text_text2mol_metric.py need the trained Text2Mol model and Mol2vec embeddings); none is available offline.

Molecules in SELFIES (our default format) are decoded to SMILES with selfies.decoder first, keeping the stereo they
carry; SMILES pass as they are. The string metrics then compare the decoder's SMILES strings.

How this differs from our release scoring (metrics.py): the release strips stereo and compares canonical
non-isomeric SMILES, so its Exact Match and Levenshtein ignore stereo and how a SMILES is written; its exact match
divides by the valid answers (also reported over all items), and its BLEU (over the answer's own characters, SELFIES
by default), Levenshtein and similarities average over valid pairs only, where MolT5 keeps every item in exact
match, BLEU and Levenshtein. Both use the count-based Morgan fingerprint. Text: the release tokenizes BLEU / METEOR
with the LLM's own tokenizer, MolT5 with SciBERT's WordPiece. Example: reference L-alanine
C[C@@H](C(=O)O)N, answer D-alanine C[C@H](C(=O)O)N. Release: exact match 1, Levenshtein 0 (both read
CC(N)C(=O)O). MolT5: exact match 0 (InChI .../t2-/m0/s1 vs .../t2-/m1/s1), Levenshtein 1 (one "@"), character
BLEU exp(-1/15) * (10/13)^(1/4) = 0.876 (tests/test_molt5.py).

Quirks of MolT5's code kept here, and counted in "notes" when they occur: rdkit parses "" as a molecule with no
atoms, so an empty answer is valid; two molecules whose InChI both fail ("", e.g. "*" atoms) are an exact match.
Departures, for robustness: an answer or reference over MAX_CHARS characters is invalid and its first MAX_CHARS
characters enter BLEU / Levenshtein / ROUGE (bounded time); a string with non-ASCII characters is no SMILES (rdkit
would skip some of them: "\u00fcC" parses as methane); lone surrogates become "?"; a reference rdkit cannot parse
leaves the similarity averages (MolT5's fingerprint_metrics.py would fail on it).
"""
import os
import warnings

import numpy as np
import selfies
from Levenshtein import distance as levenshtein
from nltk.stem.porter import PorterStemmer
from nltk.translate.bleu_score import corpus_bleu
from nltk.translate.meteor_score import meteor_score
from rdkit import Chem, DataStructs, RDLogger
from rdkit.Chem import MACCSkeys, rdFingerprintGenerator
from rouge_score.rouge_scorer import RougeScorer
from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordPiece

import answers
import metrics

RDLogger.DisableLog("rdApp.*")

SCORING = "molt5"
MAX_CHARS = 10_000  # longer answers are invalid molecules and are cut for the string metrics
TEXT_TRUNC = 512  # text_translation_metrics.py: --text_trunc_length default
BERT_SPECIAL = ("[PAD]", "[CLS]", "[SEP]")  # text_translation_metrics.py filters these three from the tokens
NO_DEFINITION = "molt5 scoring has no definition for this task; release scoring used"
NOT_COMPUTED_MOL = "FCD and Text2Mol not computed: they need the ChemNet and Text2Mol networks, not available offline"
NOT_COMPUTED_TEXT = "Text2Mol not computed: it needs the trained Text2Mol network, not available offline"

# identical Tanimoto to AllChem.GetMorganFingerprint(m, 2) (fingerprint_metrics.py), without its deprecation warning
_MORGAN = rdFingerprintGenerator.GetMorganGenerator(radius=2)


# ----------------------------------------------------------------------------- molecule answers
def as_smiles(text):
    """-> (the string MolT5's code would receive, read as SELFIES?, over MAX_CHARS?). SELFIES (bracket tokens and
    dots) is decoded with selfies.decoder (stereo kept); a string that does not decode passes as it is."""
    if len(text) > MAX_CHARS:
        return text[:MAX_CHARS], False, True
    if answers.looks_like_selfies(text):
        try:
            smiles = selfies.decoder(text)
        except Exception:
            smiles = ""
        if smiles:
            return smiles, True, False
    return text, False, False


def _parse(smiles):
    """Chem.MolFromSmiles as MolT5's code calls it; None where rdkit refuses the string, and for non-ASCII text
    (rdkit skips some such characters: "\u00fcC" would parse as methane)."""
    if not smiles.isascii():
        return None
    try:
        return Chem.MolFromSmiles(smiles)
    except Exception:
        return None


def _inchi(mol):
    """Chem.MolToInchi (standard InChI, stereo layers included); None where it raises (MolT5 counts a bad mol)."""
    try:
        return Chem.MolToInchi(mol)
    except Exception:
        return None


def _bleu(references, hypotheses, weights=(0.25, 0.25, 0.25, 0.25)):
    """nltk corpus_bleu without smoothing, as all three MolT5 scripts; 0.0 for an empty corpus."""
    if not hypotheses:
        return 0.0
    with warnings.catch_warnings():  # nltk warns when an n-gram order has no match (BLEU ~ 0)
        warnings.simplefilter("ignore")
        return float(corpus_bleu(references, hypotheses, weights=weights))


def _tanimotos(gt_m, ot_m):
    """fingerprint_metrics.py, evaluate(): MACCS, RDK (Chem.RDKFingerprint) and count-based Morgan r=2 Tanimoto."""
    return (DataStructs.TanimotoSimilarity(MACCSkeys.GenMACCSKeys(gt_m), MACCSkeys.GenMACCSKeys(ot_m)),
            DataStructs.TanimotoSimilarity(Chem.RDKFingerprint(gt_m), Chem.RDKFingerprint(ot_m)),
            DataStructs.TanimotoSimilarity(_MORGAN.GetSparseCountFingerprint(gt_m),
                                           _MORGAN.GetSparseCountFingerprint(ot_m)))


def molecule_scores(preds, refs):
    """MolT5's molecule metrics over (already cut) answers and references, SMILES or SELFIES."""
    n = len(preds)
    references, hypotheses, levs, sims = [], [], [], []
    n_exact = n_valid = n_empty_inchi = n_empty_valid = n_bad_ref = n_cap = n_fp_error = n_sf_pred = n_sf_ref = 0
    n_no_bond = 0
    for pred, ref in zip(preds, refs):
        out, out_sf, out_cap = as_smiles(pred)
        gt, gt_sf, gt_cap = as_smiles(ref)
        n_sf_pred, n_sf_ref, n_cap = n_sf_pred + out_sf, n_sf_ref + gt_sf, n_cap + out_cap + gt_cap
        # mol_translation_metrics.py, evaluate(): character BLEU and raw-string Levenshtein over every item
        references.append([list(gt)])
        hypotheses.append(list(out))
        levs.append(levenshtein(out, gt))
        ot_m = None if out_cap else _parse(out)
        gt_m = None if gt_cap else _parse(gt)
        # mol_translation_metrics.py, evaluate(): MolToInchi(m_out) == MolToInchi(m_gt); a None mol raises there
        if ot_m is not None and gt_m is not None:
            ot_inchi = _inchi(ot_m)
            if ot_inchi is not None and ot_inchi == _inchi(gt_m):
                n_exact += 1
                n_empty_inchi += ot_inchi == ""
        # fingerprint_metrics.py, evaluate(): an answer is valid when MolFromSmiles returns a mol
        if ot_m is None:
            continue
        n_valid += 1
        n_empty_valid += ot_m.GetNumAtoms() == 0
        if gt_m is None:
            n_bad_ref += 1
            continue
        n_no_bond += gt_m.GetNumBonds() == 0 and ot_m.GetNumBonds() == 0
        try:
            sims.append(_tanimotos(gt_m, ot_m))
        except Exception:
            n_fp_error += 1
    mean = np.mean(sims, axis=0) if sims else (None, None, None)
    notes = ["molt5 scoring: definitions of blender-nlp/MolT5 evaluation/mol_translation_metrics.py (BLEU, exact "
             "match, Levenshtein) and fingerprint_metrics.py (validity, MACCS / RDK / Morgan FTS)",
             f"SELFIES decoded to SMILES with selfies.decoder (stereo kept), SMILES as they are: {n_sf_pred} of {n} "
             f"answers and {n_sf_ref} of {n} references read as SELFIES; BLEU and Levenshtein compare these strings",
             NOT_COMPUTED_MOL]
    if n_empty_valid:
        notes.append(f"{n_empty_valid} empty answer(s) counted valid: rdkit parses '' as a molecule with no atoms "
                     "(as MolT5's code)")
    if n_empty_inchi:
        notes.append(f"{n_empty_inchi} exact match(es) between two molecules without an InChI ('' == '', as "
                     "MolT5's code)")
    if n_no_bond:
        notes.append(f"{n_no_bond} pair(s) without a bond on either side (e.g. [Na+].[Cl-]): empty RDK fingerprints, "
                     "whose Tanimoto rdkit gives as 0 even for the same molecule (as in MolT5)")
    if n_cap:
        notes.append(f"{n_cap} string(s) over {MAX_CHARS} characters: invalid, first {MAX_CHARS} characters scored")
    if n_bad_ref:
        notes.append(f"{n_bad_ref} valid answer(s) with an unparsable reference left out of the similarities")
    if n_fp_error:
        notes.append(f"{n_fp_error} pair(s) whose fingerprints rdkit could not compute left out of the similarities")
    return {"Scoring": SCORING,
            "BLEU (MolT5, chars)": _bleu(references, hypotheses),
            "Exact Match (MolT5, InChI with stereo)": n_exact / n if n else 0.0,
            "Levenshtein (MolT5, raw strings)": float(np.mean(levs)) if n else None,
            "Validity (MolT5)": n_valid / n if n else 0.0,
            "MACCS FTS (MolT5)": None if mean[0] is None else float(mean[0]),
            "RDK FTS (MolT5)": None if mean[1] is None else float(mean[1]),
            "Morgan FTS (MolT5)": None if mean[2] is None else float(mean[2]),
            "Valid answers": n_valid, "N": n, "notes": notes}


# ----------------------------------------------------------------------------- text answers
def _bert_from_vocab(path, lowercase=True):
    """A BERT WordPiece tokenizer from a vocab.txt (SciBERT ships only that), built as transformers' BertConverter
    (convert_slow_tokenizer.py) builds BertTokenizerFast: BertNormalizer, BertPreTokenizer, WordPiece with [UNK]."""
    vocab = WordPiece.read_file(path)
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.add_special_tokens([t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") if t in vocab])
    return tok


def wordpiece_tokenizer(path, max_length=TEXT_TRUNC):
    """A callable str -> list[str] tokenizing as text_translation_metrics.py does with BertTokenizerFast:
    tokenize(text, truncation=True, max_length=512, padding='max_length'), which in transformers 4.17 is
    encode_plus(add_special_tokens=False, ...).tokens(): the first 512 tokens, padded; then [PAD]/[CLS]/[SEP]
    dropped. path: a tokenizer.json, or a BERT vocab.txt (uncased, as SciBERT scivocab_uncased ships)."""
    tok = _bert_from_vocab(path) if path.endswith(".txt") else Tokenizer.from_file(path)
    tok.no_truncation()
    tok.no_padding()

    def tokenize(text):
        tokens = tok.encode(text or "", add_special_tokens=False).tokens[:max_length]
        return [t for t in tokens if t not in BERT_SPECIAL]

    tokenize.name = f"WordPiece ({os.path.basename(path)} at {os.path.dirname(os.path.abspath(path))})"
    return tokenize


def _tokens(tokenize, text):
    """text_translation_metrics.py, evaluate(): truncated to 512 tokens, then [PAD]/[CLS]/[SEP] filtered."""
    return [t for t in list(tokenize(text))[:TEXT_TRUNC] if t not in BERT_SPECIAL]


def text_scores(preds, refs, tokenize=None, tokenizer_name=None):
    """MolT5's text metrics over (already cut) answers and references; tokenize: str -> list[str] (the SciBERT
    WordPiece tokenizer for numbers comparable with MolT5; default metrics.word_tokenize, nltk wordpunct)."""
    if tokenize is None:
        name = tokenizer_name or "nltk wordpunct (metrics.word_tokenize), not MolT5's SciBERT WordPiece"
        tokenize = metrics.word_tokenize
    else:
        name = tokenizer_name or getattr(tokenize, "name", None) or "caller's tokenizer"
    wordnet, meteor_key, meteor_note = metrics._meteor_wordnet()
    meteor_key = "METEOR (MolT5)" if meteor_key == metrics.METEOR_KEY else "METEOR (MolT5, exact+stem, no WordNet)"
    stemmer, scorer = PorterStemmer(), RougeScorer(["rouge1", "rouge2", "rougeL"])
    references, hypotheses, meteors, rouges, n_cap = [], [], [], [], 0
    for pred, ref in zip(preds, refs):
        out = pred[6:] if pred.startswith("[CLS] ") else pred  # text_translation_metrics.py, evaluate()
        n_cap += (len(out) > MAX_CHARS) + (len(ref) > MAX_CHARS)
        out, gt = out[:MAX_CHARS], ref[:MAX_CHARS]
        gt_tokens, out_tokens = _tokens(tokenize, gt), _tokens(tokenize, out)
        references.append([gt_tokens])
        hypotheses.append(out_tokens)
        # meteor_score([gt_tokens], out_tokens) with nltk's defaults (str.lower, PorterStemmer, WordNet 3.0)
        meteors.append(meteor_score([gt_tokens], out_tokens, stemmer=stemmer, wordnet=wordnet)
                       if gt_tokens and out_tokens else 0.0)
        rouges.append(scorer.score(out, gt))  # MolT5's argument order (target=out); the F-measure is symmetric
    notes = ["molt5 scoring: definitions of blender-nlp/MolT5 evaluation/text_translation_metrics.py",
             f"BLEU / METEOR tokens: {name}", meteor_note, NOT_COMPUTED_TEXT]
    if n_cap:
        notes.append(f"{n_cap} text(s) over {MAX_CHARS} characters: first {MAX_CHARS} characters scored")
    n = len(preds)
    return {"Scoring": SCORING, "Tokenizer": name,
            "BLEU-2 (MolT5)": _bleu(references, hypotheses, (0.5, 0.5)),
            "BLEU-4 (MolT5)": _bleu(references, hypotheses),
            "ROUGE-1 (MolT5)": float(np.mean([r["rouge1"].fmeasure for r in rouges])) if n else 0.0,
            "ROUGE-2 (MolT5)": float(np.mean([r["rouge2"].fmeasure for r in rouges])) if n else 0.0,
            "ROUGE-L (MolT5)": float(np.mean([r["rougeL"].fmeasure for r in rouges])) if n else 0.0,
            meteor_key: float(np.mean(meteors)) if n else 0.0,
            "N": n, "notes": notes}


# ----------------------------------------------------------------------------- dispatch
def score_task(task, rows, tokenize=None, tokenizer_name=None):
    """MolT5 metrics of one task from its rows ({"task", "id", "prompt", "prediction", "reference"}): a dict
    {metric: value, "Scoring": "molt5", "notes": [...]} for molecule and text answers; None for other answer
    kinds (MolT5 defines no metric for them; the caller reports NO_DEFINITION); ValueError for an unknown task
    (metrics.answer_kind). Answers and references are cut at their end marker and stripped."""
    kind = metrics.answer_kind(task)
    if kind not in ("molecule", "text"):
        return None
    preds = [answers.cut_answer(answers.as_text(r.get("prediction"))).strip() for r in rows]
    refs = [answers.cut_answer(answers.as_text(r.get("reference"))).strip() for r in rows]
    if kind == "molecule":
        return molecule_scores(preds, refs)
    return text_scores(preds, refs, tokenize, tokenizer_name)
