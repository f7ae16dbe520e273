"""metrics.py on hand-computed cases: identical molecules, stereo, invalid strings, numbers with units,
negative LogP, HOMO/LUMO buckets, R^2, text metrics (identical, empty, end token), molecule editing."""
import math

import pytest
import selfies

import metrics as M
import wordnet_data

sf = selfies.encoder
ETHANOL, ETHYL_ACETATE = sf("CCO"), sf("CCOC(C)=O")


def test_identical_molecules_score_perfectly():
    r = M.molecule_metrics([ETHYL_ACETATE], [ETHYL_ACETATE])
    assert r["Validity"] == r["Exact Match (InChI)"] == r["Exact Match (InChI, all items)"] == 1.0
    assert r["SELFIES BLEU"] == pytest.approx(1.0)
    for k in ("MACCS", "RDK", "Morgan"):
        assert r[f"Average {k} Similarity"] == 1.0
    assert r["Average SMILES Levenshtein"] == 0.0


@pytest.mark.parametrize("a,b", [("C/C=C/C", "C/C=C\\C"), ("C[C@H](N)C(=O)O", "C[C@@H](N)C(=O)O")])
def test_stereoisomers_match_because_the_release_strips_stereo(a, b):
    r = M.molecule_metrics([sf(a)], [sf(b)])
    assert r["Exact Match (InChI)"] == 1.0 and r["Average SMILES Levenshtein"] == 0.0
    assert r["SELFIES BLEU"] < 1.0  # the raw SELFIES strings still differ by one character


@pytest.mark.parametrize("garbage", ["", "hello", "[C][invalid]", "[C]garbage", None, "[C][O] <|eot_id|> trailing"])
def test_invalid_answers_score_invalid_without_crashing(garbage):
    r = M.molecule_metrics([garbage or ""], [ETHANOL])
    if garbage == "[C][O] <|eot_id|> trailing":  # cut at the end token: "[C][O]" is methanol, valid
        assert r["Validity"] == 1.0 and r["Exact Match (InChI)"] == 0.0
        return
    assert r["Validity"] == 0.0 and r["Exact Match (InChI)"] == 0.0 and r["NumValidPredictions"] == 0
    assert r["Average SMILES Levenshtein"] is None  # the release's 0.0 would read as a perfect distance
    assert M.molecule_metrics([garbage or ""], [ETHANOL], release_compat=True)["Average SMILES Levenshtein"] == 0.0


def test_exact_match_over_valid_answers_and_over_all_items():
    preds = [ETHANOL, "[C][invalid]", sf("CCC"), ""]
    r = M.molecule_metrics(preds, [ETHANOL] * 4)
    assert r["Validity"] == 0.5
    assert r["Exact Match (InChI)"] == 0.5          # 1 of 2 valid answers (the release's denominator)
    assert r["Exact Match (InChI, all items)"] == 0.25
    # Levenshtein over valid pairs only: "CCO" vs "CCO" = 0, "CCC" vs "CCO" = 1
    assert r["Average SMILES Levenshtein"] == 0.5


def test_unparsable_reference_is_skipped_but_counted_in_validity():
    r = M.molecule_metrics([ETHANOL, ETHANOL], [ETHANOL, "[C][invalid]"])
    assert r["Validity"] == 0.5 and r["Exact Match (InChI)"] == 1.0 and r["Invalid references (skipped)"] == 1


def test_whitespace_is_stripped_by_default_not_in_release_mode():
    assert M.molecule_metrics([ETHANOL + "\n"], [ETHANOL])["Validity"] == 1.0
    assert M.molecule_metrics([ETHANOL + " "], [ETHANOL], release_compat=True)["Validity"] == 0.0


# ----------------------------------------------------------------------------- numbers

def test_numbers_with_units():
    r = M.number_metrics(["46.1 g/mol", "The TPSA is 20.23 A^2.", "no idea"], ["46.07", "20.23", "30"])
    assert r["Average MAE"] == pytest.approx(0.015)  # (0.03 + 0) / 2, the unparsable answer skipped
    assert r["Skipped items"] == 1 and r["Validity"] == pytest.approx(2 / 3)


def test_negative_logp_keeps_its_sign_unless_release_compat():
    preds, refs = ["0.5", "LogP: -1.2", "\u22122.0"], ["-0.5", "-1.0", "-2.0"]
    assert M.number_metrics(preds, refs)["Average MAE"] == pytest.approx((1.0 + 0.2 + 0.0) / 3)
    # the release's regex drops every sign: |0.5-0.5| + |1.2-1.0| + |2.0-2.0|
    assert M.number_metrics(preds, refs, release_compat=True)["Average MAE"] == pytest.approx(0.2 / 3)


def test_homolumo_buckets_by_prompt_and_pools_the_average():
    prompts = ["What is the HOMO energy?", "What is the LUMO energy?", "What is the HOMO-LUMO gap?",
               "Give the HOMO LUMO gap.", "What is the HOMO energy?", "What is the HOMO energy?"]
    refs = ["-0.25", "0.05", "0.3", "0.3", "-0.2", "-0.2"]
    preds = ["-0.24", "0.07", "0.36", "0.3", "-0.25 Ha", ""]   # the last two are not plain numbers: skipped
    r = M.homolumo_metrics(preds, refs, prompts)
    assert r["HOMO MAE"] == pytest.approx(0.01) and r["LUMO MAE"] == pytest.approx(0.02)
    assert r["GAP MAE"] == pytest.approx(0.03)
    assert r["Average"] == pytest.approx((0.01 + 0.02 + 0.06 + 0.0) / 4)   # pooled, as the release
    assert r["Mean of the three"] == pytest.approx(0.02)
    assert r["Skipped items"] == 2


def test_yield_r2():
    r = M.yield_metrics(["1", "2", "3", "5", "n/a"], ["1", "2", "3", "4", "7"])
    assert r["R2 Score"] == pytest.approx(1 - 1 / 5) and r["Skipped items"] == 1   # SS_res 1, SS_tot 5
    assert M.yield_metrics(["3"], ["4"])["R2 Score"] is None                     # undefined for one point
    assert M.yield_metrics(["nan", "inf"], ["1", "2"])["Validity"] == 0.0


# ----------------------------------------------------------------------------- text

REF = "The molecule is a primary alcohol ."


def test_identical_text():
    r = M.text_metrics([REF], [REF])
    assert r["BLEU-2"] == pytest.approx(1.0) and r["BLEU-4"] == pytest.approx(1.0)
    assert r["ROUGE-1"] == r["ROUGE-2"] == r["ROUGE-L"] == pytest.approx(1.0)
    # METEOR of a perfect 7-token match: F = 1, one chunk -> penalty 0.5 * (1/7)^3
    assert r[M.METEOR_KEY] == pytest.approx(1 - 0.5 / 7 ** 3)


def test_empty_text_scores_zero():
    r = M.text_metrics(["", None or ""], [REF, ""])
    assert r["BLEU-4"] == 0.0 and r[M.METEOR_KEY] == 0.0 and r["ROUGE-L"] == 0.0


def test_meteor_matches_stems_without_wordnet():
    r = M.text_metrics(["the cats sat"], ["the cat sat"], use_wordnet=False)
    # 3 of 3 unigrams match (cats~cat by Porter stem), one chunk: 1 - 0.5 * (1/3)^3
    assert r[M.METEOR_FALLBACK_KEY] == pytest.approx(1 - 0.5 / 27) and M.METEOR_KEY not in r
    assert any("no WordNet" in n for n in r["notes"])


def test_meteor_with_wordnet_matches_synonyms():
    """car ~ auto share a WordNet 3.0 synset (nltk matches synonyms after exact and stem matching)."""
    pred, ref = ["the car is here"], ["the auto is here"]
    wn = M.text_metrics(pred, ref)
    stem_only = M.text_metrics(pred, ref, use_wordnet=False)
    # WordNet: 4 of 4 unigrams match in one chunk -> 1 - 0.5 * (1/4)^3
    assert wn[M.METEOR_KEY] == pytest.approx(1 - 0.5 / 4 ** 3)
    # stem only: 3 of 4 match (P = R = 3/4) in 2 chunks -> 0.75 * (1 - 0.5 * (2/3)^3)
    assert stem_only[M.METEOR_FALLBACK_KEY] == pytest.approx(0.75 * (1 - 0.5 * (2 / 3) ** 3))
    assert wn[M.METEOR_KEY] > stem_only[M.METEOR_FALLBACK_KEY]
    assert any("WordNet 3.0" in n for n in wn["notes"])


def test_wordnet_install_strips_crs_and_is_private(tmp_path):
    root = wordnet_data.install(str(tmp_path / "nltk"))
    d = tmp_path / "nltk" / "corpora" / "wordnet"
    assert root == str(tmp_path / "nltk")
    noun = (d / "data.noun").read_bytes()
    assert b"\r" not in noun and len(noun) == 15_300_280  # Princeton's data.noun, byte offsets intact
    for p in [d, *d.iterdir()]:
        assert p.stat().st_mode & 0o022 == 0, p  # nltk refuses group/world-writable corpus files
    # nltk's reader seeks to each synset's byte offset in data.noun: check one by hand
    line = next(ln for ln in (d / "index.noun").read_text().splitlines() if ln.startswith("dog n "))
    offset = int(line.split()[-1])
    assert noun[offset:offset + 8] == f"{offset:08d}".encode()


def test_rouge_sees_the_end_token_only_in_release_mode():
    ok = M.text_metrics(["a primary alcohol"], ["a primary alcohol"])
    rel = M.text_metrics(["a primary alcohol"], ["a primary alcohol"], release_compat=True)
    assert ok["ROUGE-1"] == pytest.approx(1.0)
    # "<|eot_id|>" -> "eot id": 3 of 5 predicted words match, recall 1 -> F = 2 * 0.6 / 1.6
    assert rel["ROUGE-1"] == pytest.approx(0.75)
    assert ok["BLEU-4"] == rel["BLEU-4"]  # token metrics drop the end token either way


def test_custom_tokenizer_is_used_and_named():
    r = M.text_metrics(["ab"], ["ab"], tokenize=list, tokenizer_name="chars")
    assert r["BLEU-2"] == pytest.approx(1.0) and "chars" in r["notes"][0]


# ----------------------------------------------------------------------------- molecule editing

HIGH_QED, LOW_QED = sf("CC(=O)Nc1ccc(OC)cc1"), sf("CCCCCCCCCC")   # QED 0.723 / 0.468


def test_molediting_success_rates():
    prompts = ["Make it more drug-like (higher QED)."] * 3
    refs = [HIGH_QED, HIGH_QED, HIGH_QED]
    preds = [HIGH_QED, LOW_QED, "[C][invalid]"]
    r = M.molediting_metrics(preds, refs, prompts)
    assert r["QED>=0.6"] == pytest.approx(1 / 3)          # invalid answer = failure
    assert r["Sim>=0.4,QED>=0.6"] == pytest.approx(1 / 3)
    assert r["Validity"] == pytest.approx(2 / 3)
    rel = M.molediting_metrics(preds, refs, prompts, release_compat=True)
    assert rel["QED>=0.6"] == pytest.approx(1 / 2)        # release: over valid answers only


def test_molediting_similarity_condition_and_drd2_is_not_invented():
    paracetamol_methyl_ether = sf("CC(=O)Nc1ccc(OC)cc1")
    far_high_qed = sf("CN1CCC[C@H]1c1cccnc1")             # nicotine: QED 0.626, far from the reference
    r = M.molediting_metrics([far_high_qed, paracetamol_methyl_ether], [paracetamol_methyl_ether] * 2,
                             ["QED up", "QED up"])
    assert r["QED>=0.6"] == 1.0 and r["Sim>=0.4,QED>=0.6"] == 0.5
    d = M.molediting_metrics([HIGH_QED], [HIGH_QED], ["Increase DRD2 activity"])
    assert d["DRD2>=0.5"] is None and any("DRD2" in n for n in d["notes"])


def test_score_task_dispatch_and_unknown_task():
    rows = [{"prompt": "p", "prediction": "42", "reference": "40"}]
    assert M.score_task("yield_BH", rows)["Validity"] == 1.0
    assert M.score_task("weight", rows)["Average MAE"] == 2.0
    with pytest.raises(ValueError, match="no metric"):
        M.score_task("nonsense", rows)
    assert math.isclose(M.score_task("forward", [{"prediction": ETHANOL, "reference": ETHANOL}])["Validity"], 1.0)


def test_rdkit_recomputation_of_number_answers():
    prompt = "What is the molecular weight of this molecule? The molecule SELFIES sequence is: " + ETHANOL
    r = M.score_task("weight", [{"prompt": prompt, "prediction": "47.07 g/mol", "reference": "46.07"}])
    assert r["rdkit: checked items"] == 1
    assert r["rdkit: reference MAE"] == pytest.approx(0.001, abs=1e-3)   # rdkit MolWt(ethanol) = 46.069
    assert r["rdkit: prediction MAE"] == pytest.approx(1.001, abs=1e-3)
    none = M.score_task("logp", [{"prompt": "no molecule", "prediction": "1", "reference": "1"}])
    assert none["rdkit: checked items"] == 0


# ----------------------------------------------------------------------------- SMILES answers (--mol-format smiles)

@pytest.mark.parametrize("pred,ref", [("CCO", ETHANOL), ("OCC", "CCO"), (ETHANOL, "C(O)C"),
                                      ("[Na+].[Cl-]", sf("[Na+].[Cl-]"))])
def test_smiles_and_selfies_answers_score_alike(pred, ref):
    r = M.molecule_metrics([pred], [ref])
    assert r["Validity"] == r["Exact Match (InChI)"] == 1.0 and r["Average SMILES Levenshtein"] == 0.0
    assert r["Read as SMILES"] == (pred != ETHANOL)


@pytest.mark.parametrize("garbage", ["C1CC", "hello", "CC(", "[C]garbage", "[C][invalid]", "\ufffd\ufffdC", "C\u00e9"])
def test_invalid_smiles_answers_are_invalid(garbage):
    assert M.molecule_metrics([garbage], ["CCO"])["Validity"] == 0.0


def test_release_compat_reads_selfies_only():
    assert M.molecule_metrics(["CCO"], [ETHANOL], release_compat=True)["Validity"] == 0.0


def test_smiles_prompts_and_editing():
    # the prompt's molecule as SMILES (answers.prompt_molecule: tests/test_answers.py)
    r = M.score_task("logp", [{"prompt": "LogP? The molecule SMILES sequence is: CCO", "prediction": "-0.0014",
                               "reference": "-0.0014"}])
    assert r["rdkit: checked items"] == 1 and r["rdkit: reference MAE"] == pytest.approx(0.0, abs=1e-3)  # Crippen(EtOH)
    qed_prompt = "Make it more drug-like (QED). The compound SMILES sequence is: CCO"
    drug = "CC(=O)Nc1ccc(O)cc1"  # paracetamol, QED 0.595: below 0.6; caffeine 0.538; ibuprofen 0.822
    ibu = "CC(C)Cc1ccc(cc1)C(C)C(=O)O"
    hits = M.molediting_metrics([ibu, drug], [ibu, ibu], [qed_prompt] * 2)
    assert hits["QED>=0.6"] == 0.5 and hits["Validity"] == 1.0
