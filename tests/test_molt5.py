"""molt5.py (MolT5 / ChEBI-20 scoring) on hand-computed cases where it and the release scoring (metrics.py) differ:
stereo, a non-canonical SMILES, an invalid answer inside the BLEU corpus, text metrics on a hand-built WordPiece
vocabulary, pathological answers, and ChEBI-20 references scored against themselves."""
import csv
import math
import os
import sys
import time

import pytest
import selfies
from rdkit import Chem
from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordPiece

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import metrics  # noqa: E402
import molt5  # noqa: E402

EXACT, LEV, BLEU = "Exact Match (MolT5, InChI with stereo)", "Levenshtein (MolT5, raw strings)", "BLEU (MolT5, chars)"
VALID = "Validity (MolT5)"
CHEBI20_TEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "captioning",
                            "chebi20_test.txt")


def rows(preds, refs):
    return [{"task": "forward", "id": str(i), "prompt": "", "prediction": p, "reference": r}
            for i, (p, r) in enumerate(zip(preds, refs))]


def both(preds, refs, task="forward"):
    """(molt5 result, release result) of the same rows."""
    return molt5.score_task(task, rows(preds, refs)), metrics.score_task(task, rows(preds, refs))


# ----------------------------------------------------------------------------- molecules
# BLEU by hand, character n-grams, corpus of one item:
# D- vs L-alanine: hyp C[C@H](C(=O)O)N (15 chars) lacks one "@" of ref C[C@@H](C(=O)O)N (16): p1 15/15, p2 14/14,
#   p3 12/13 ("C@H" is not in ref), p4 10/12 ("[C@H", "C@H]"); brevity penalty exp(1 - 16/15).
# Z- vs E-but-2-ene: C/C=C\C vs C/C=C/C (7 chars each): p1 6/7, p2 4/6, p3 3/5, p4 2/4; no brevity penalty.
@pytest.mark.parametrize("answer,reference,bleu", [
    ("C[C@H](C(=O)O)N", "C[C@@H](C(=O)O)N", math.exp(-1 / 15) * (10 / 13) ** 0.25),
    ("C/C=C\\C", "C/C=C/C", (6 / 35) ** 0.25),
])
def test_right_but_for_stereo_is_exact_for_release_and_wrong_for_molt5(answer, reference, bleu):
    m, r = both([answer], [reference])
    assert r["Exact Match (InChI)"] == 1.0 and r["Average SMILES Levenshtein"] == 0.0
    assert m[EXACT] == 0.0 and m[LEV] == 1.0 and m[VALID] == 1.0
    assert m[BLEU] == pytest.approx(bleu, abs=1e-12)
    assert m["MACCS FTS (MolT5)"] == m["RDK FTS (MolT5)"] == m["Morgan FTS (MolT5)"] == 1.0  # no stereo in them
    assert m["Scoring"] == "molt5"


def test_docstring_example_is_the_alanine_case():
    assert "C[C@@H](C(=O)O)N" in molt5.__doc__ and "C[C@H](C(=O)O)N" in molt5.__doc__
    assert "0.876" in molt5.__doc__ and f"{math.exp(-1 / 15) * (10 / 13) ** 0.25:.3f}" == "0.876"


def test_selfies_are_decoded_keeping_stereo():
    l_ala, d_ala = selfies.encoder("C[C@@H](C(=O)O)N"), selfies.encoder("C[C@H](C(=O)O)N")
    m, r = both([d_ala], [l_ala])
    assert r["Exact Match (InChI)"] == 1.0
    assert m[EXACT] == 0.0 and m[LEV] == 1.0  # the decoded SMILES differ by one "@"
    assert any("1 of 1 answers and 1 of 1 references read as SELFIES" in n for n in m["notes"])
    m = molt5.score_task("forward", rows([l_ala], [l_ala]))
    assert m[EXACT] == 1.0 and m[LEV] == 0.0 and m[BLEU] == pytest.approx(1.0)


def test_non_canonical_smiles_of_the_right_molecule():
    # 1-butanol written backwards. BLEU: hyp OCCCC, ref CCCCO: p1 5/5, p2 3/4 (no "OC"), p3 2/3, p4 1/2, same length:
    # (1 * 3/4 * 2/3 * 1/2)^(1/4) = (1/4)^(1/4). Levenshtein: drop the leading O, append one: 2.
    m, r = both(["OCCCC"], ["CCCCO"])
    assert r["Exact Match (InChI)"] == 1.0 and r["Average SMILES Levenshtein"] == 0.0
    assert m[EXACT] == 1.0 and m[LEV] == 2.0
    assert m[BLEU] == pytest.approx(0.25 ** 0.25, abs=1e-12)


def test_invalid_answer_counts_in_bleu_and_levenshtein():
    # item 1 perfect (CCCCO: 5/5, 4/4, 3/3, 2/2 n-grams); item 2 "C1CC" (unclosed ring, invalid) vs CCO:
    # unigrams C,1,C,C -> 2 clipped C / 4, bigrams C1,1C,CC -> 1/3, trigrams 0/2, 4-gram 0/1.
    # Corpus: p1 7/9, p2 5/7, p3 3/5, p4 2/3, hyp 9 chars >= ref 8: BLEU (2/9)^(1/4).
    # Levenshtein("C1CC", "CCO") = 2 (delete "1", C -> O): mean (0 + 2) / 2 = 1.
    m, r = both(["CCCCO", "C1CC"], ["CCCCO", "CCO"])
    assert r["SELFIES BLEU"] == pytest.approx(1.0) and r["Average SMILES Levenshtein"] == 0.0  # valid pairs only
    assert m[BLEU] == pytest.approx((2 / 9) ** 0.25, abs=1e-12)
    assert m[LEV] == 1.0 and m[VALID] == 0.5 and m[EXACT] == 0.5
    assert m["MACCS FTS (MolT5)"] == 1.0 and m["Valid answers"] == 1


def test_molt5_quirks_are_kept_and_counted_in_notes():
    # rdkit parses "" as a molecule without atoms (valid, as MolT5's code); "*" atoms have no InChI: '' == ''
    m = molt5.score_task("forward", rows(["", "*CC"], ["CCO", "*C"]))
    assert m[VALID] == 1.0 and m[EXACT] == 0.5
    assert any("1 empty answer" in n for n in m["notes"]) and any("without an InChI" in n for n in m["notes"])
    assert any("FCD and Text2Mol not computed" in n for n in m["notes"])


def test_end_marker_is_cut():
    m = molt5.score_task("forward", rows(["  CCO<|eot_id|>junk", "CCO<|im_end|>"], ["CCO", "CCO"]))
    assert m[EXACT] == 1.0 and m[LEV] == 0.0


@pytest.mark.parametrize("garbage", [None, "hello", "[C][invalid]", "\udc80C", "\u00fc\u00df\u4e2d", "C" * 10_001,
                                     "((((", 12345])
def test_nothing_a_model_emits_crashes(garbage):
    m = molt5.score_task("forward", rows([garbage], ["CCO"]))
    assert m[EXACT] == 0.0 and m["N"] == 1
    if garbage is not None:  # None reads as "", which rdkit parses (see the quirks test)
        assert m[VALID] == 0.0 and m["MACCS FTS (MolT5)"] is None


def test_huge_answer_is_invalid_and_fast():
    huge = "[C]" * 116_667  # 350,001 characters; decoded it would be a 116,667-carbon chain
    t0 = time.perf_counter()
    m = molt5.score_task("forward", rows([huge, "CCO"], ["CCO", "CCO"]))
    assert time.perf_counter() - t0 < 3.0
    assert m[VALID] == 0.5 and m[EXACT] == 0.5
    # the first 10,000 characters are scored as strings: Levenshtein("[C]"*3333 + "[", "CCO") = 9,998: two of its
    # "C" are kept, there is no "O" to keep, so 9,997 deletions and one substitution
    assert m[LEV] == pytest.approx((10_000 - 2) / 2)
    assert any("over 10000 characters" in n for n in m["notes"])


def test_other_answer_kinds_have_no_molt5_definition():
    for task in ("weight", "homolumo", "molediting", "yield_BH"):
        assert molt5.score_task(task, rows(["1.0"], ["1.0"])) is None


def test_chebi20_references_against_themselves():
    if not os.path.isfile(CHEBI20_TEST):
        pytest.skip(f"{CHEBI20_TEST} not present")
    with open(CHEBI20_TEST, encoding="utf8") as f:
        refs = [line["SMILES"] for _, line in zip(range(300), csv.DictReader(f, delimiter="\t",
                                                                              quoting=csv.QUOTE_NONE))]
    assert len(refs) == 300
    m = molt5.score_task("textguidedmolgen", rows(refs, refs))
    assert m[EXACT] == 1.0 and m[LEV] == 0.0 and m[VALID] == 1.0
    assert m[BLEU] == pytest.approx(1.0)
    assert m["MACCS FTS (MolT5)"] == m["Morgan FTS (MolT5)"] == 1.0
    # RDK fingerprints are bond paths: a molecule without a bond ([Cr], [Li+].[Br-]) has an empty one, and rdkit's
    # Tanimoto of two empty vectors is 0, so such an item scores 0 against itself
    no_bond = sum(Chem.MolFromSmiles(s).GetNumBonds() == 0 for s in refs)
    assert no_bond >= 1  # [Cr] is row 96 of the file
    assert m["RDK FTS (MolT5)"] == pytest.approx(1 - no_bond / 300, abs=1e-12)
    assert any(f"{no_bond} pair(s) without a bond" in n for n in m["notes"])


# ----------------------------------------------------------------------------- text
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "molecule", "is", "an", "a", "acid", "base", "##s", "."]


@pytest.fixture
def wordpiece(tmp_path):
    """A hand-built uncased BERT WordPiece tokenizer (the SciBERT pipeline, 14 tokens): its tokenizer.json."""
    tok = Tokenizer(WordPiece({t: i for i, t in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.add_special_tokens(VOCAB[:5])
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    return tmp_path


def test_wordpiece_tokenizer_splits_words_and_drops_bert_special_tokens(wordpiece):
    for name in ("tokenizer.json", "vocab.txt"):
        tokenize = molt5.wordpiece_tokenizer(str(wordpiece / name))
        assert tokenize("[CLS] The Bases [SEP] zebra acid. [PAD]") == ["the", "base", "##s", "[UNK]", "acid", "."]
        assert tokenize("the " * 600) == ["the"] * 512  # truncation=True, max_length=512
        assert name in tokenize.name


def test_wordpiece_tokenizer_matches_transformers_bert_tokenizer(wordpiece):
    transformers = pytest.importorskip("transformers")
    bert = transformers.BertTokenizerFast.from_pretrained(str(wordpiece))
    tokenize = molt5.wordpiece_tokenizer(str(wordpiece / "tokenizer.json"))
    for text in ("[CLS] The Bases [SEP] zebra acid.", "The molecule is a bases.", "\u00dcn\u00efcode \u00c1cid\tbase"):
        # text_translation_metrics.py, evaluate(): tokenize(..., truncation=True, max_length=512, padding=...)
        got = bert.tokenize(text, truncation=True, max_length=512, padding="max_length")
        assert [t for t in got if t not in ("[PAD]", "[CLS]", "[SEP]")] == tokenize(text)


def test_text_metrics_by_hand(wordpiece):
    # item 1: answer "[CLS] The molecule is a bases." (MolT5 cuts the leading "[CLS] ") -> the molecule is a base ##s .
    #         reference "The molecule is an acid."                                   -> the molecule is an acid .
    #   matches: 1-grams 4/7, 2-grams 2/6, 3-grams 1/5, 4-grams 0/4
    # item 2: identical 6 tokens (the acid is a base .): 6/6, 5/5, 4/4, 3/3
    # corpus: p1 10/13, p2 7/11, p3 5/9, p4 3/7; hyp 13 tokens >= ref 12: no brevity penalty.
    # METEOR (alpha 0.9, beta 3, gamma 0.5): item 1 has 4 matches in 2 chunks (the molecule is | .),
    #   P 4/7, R 4/6, penalty 0.5 * (2/4)^3; item 2: 6 matches, 1 chunk, penalty 0.5 * (1/6)^3.
    # ROUGE (rouge-score words, "." dropped): item 1 R1 3/5, R2 2/4, RL 3/5; item 2 all 1.
    data = [{"task": "molcap", "id": "1", "prompt": "", "prediction": "[CLS] The molecule is a bases.",
             "reference": "The molecule is an acid."},
            {"task": "molcap", "id": "2", "prompt": "", "prediction": "The acid is a base.<|im_end|>junk",
             "reference": "The acid is a base."}]
    tokenize = molt5.wordpiece_tokenizer(str(wordpiece / "tokenizer.json"))
    m = molt5.score_task("molcap", data, tokenize=tokenize, tokenizer_name="tiny WordPiece")
    assert m["Scoring"] == "molt5" and m["Tokenizer"] == "tiny WordPiece"
    assert m["BLEU-2 (MolT5)"] == pytest.approx(math.sqrt(10 / 13 * 7 / 11), abs=1e-12)
    assert m["BLEU-4 (MolT5)"] == pytest.approx((10 / 13 * 7 / 11 * 5 / 9 * 3 / 7) ** 0.25, abs=1e-12)
    p, r = 4 / 7, 4 / 6
    meteor_1 = (1 - 0.5 * 0.5 ** 3) * p * r / (0.9 * p + 0.1 * r)
    meteor_2 = 1 - 0.5 * (1 / 6) ** 3
    meteor_key = next(k for k in m if k.startswith("METEOR"))
    assert m[meteor_key] == pytest.approx((meteor_1 + meteor_2) / 2, abs=1e-12)
    assert m["ROUGE-1 (MolT5)"] == pytest.approx(0.8) and m["ROUGE-L (MolT5)"] == pytest.approx(0.8)
    assert m["ROUGE-2 (MolT5)"] == pytest.approx(0.75)


def test_text_default_tokenizer_is_named():
    data = [{"prediction": "A steroid ester.", "reference": "A steroid ester."}]
    m = molt5.score_task("dqa", data)
    assert "nltk wordpunct" in m["Tokenizer"] and "not MolT5" in m["Tokenizer"]
    assert m["BLEU-2 (MolT5)"] == pytest.approx(1.0) and m["ROUGE-L (MolT5)"] == 1.0


@pytest.mark.parametrize("garbage", [None, "", "\udc80", "x" * 350_000, "\u00fc" * 20_000, 3.5])
def test_text_garbage_does_not_crash(garbage, wordpiece):
    t0 = time.perf_counter()
    tokenize = molt5.wordpiece_tokenizer(str(wordpiece / "tokenizer.json"))
    m = molt5.score_task("experiment", [{"prediction": garbage, "reference": "The molecule is an acid."}], tokenize)
    assert time.perf_counter() - t0 < 5.0
    assert m["BLEU-4 (MolT5)"] < 1e-100 and m["N"] == 1  # nltk: an order without a match counts as sys.float_info.min
