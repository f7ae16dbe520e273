"""reasoning.py: rdkit rationales on hand-checked molecules (benzene's weight, aspirin's TPSA, a mapped
esterification's reaction centre), their reading by every answer reader (answers.cut_answer), verify.py's check of
a rationale's own arithmetic, the --reasoning data path, and a 2-step tiny train with --reasoning."""
import json
import os
from decimal import Decimal

import pytest
import selfies
from rdkit import Chem
from rdkit.Chem import QED, Crippen, Descriptors, rdMolDescriptors

import answers
import data
import eval as E
import metrics
import reasoning as R
import report
import rl
import significance
import train
import verify as V

BENZENE, ASPIRIN = "c1ccccc1", "CC(=O)Oc1ccccc1C(=O)O"
ESTERIFICATION = "[CH3:1][C:2](=[O:3])[OH:4].[OH:5][CH3:6]>>[CH3:1][C:2](=[O:3])[O:5][CH3:6]"
WEIGHT_PROMPT = "<mol>\nWhat is the molecular weight of this molecule? The molecule SELFIES sequence is: "
BENZENE_WEIGHT = "<think> molecular weight: 6 x C 12.011 + 6 x H 1.008 = 78.114 </think> 78.11"


def mol(smi):
    return Chem.MolFromSmiles(smi)


def rec(smi, output):
    return {"instruction": "", "input": selfies.encoder(smi), "output": output, "metadata": {"split": "train"}}


# ----------------------------------------------------------------------------- builders, hand-checked

def test_benzene_weight_is_six_carbons_and_six_hydrogens():
    assert R.weight_terms(mol(BENZENE)) == [(6, "C", 12.011), (6, "H", 1.008)]
    assert R.with_rationale("weight", rec(BENZENE, "78.11"), "78.11") == BENZENE_WEIGHT
    assert 6 * 12.011 + 6 * 1.008 == pytest.approx(Descriptors.MolWt(mol(BENZENE)), abs=1e-9)


def test_aspirin_tpsa_terms_sum_to_63_6():
    terms = R.tpsa_terms(mol(ASPIRIN))
    # Ertl 2000: ester -O- 9.23, two carbonyl =O 17.07 each, hydroxyl -OH 20.23
    assert terms == [(1, "O(--)", 9.23), (2, "O(=)", 17.07), (1, "OH(-)", 20.23)]
    assert sum(n * v for n, _, v in terms) == pytest.approx(63.60) == rdMolDescriptors.CalcTPSA(mol(ASPIRIN))
    assert R.rationale("tpsa", rec(ASPIRIN, "63.60")) == \
        "TPSA N,O: 1 x O(--) 9.23 + 2 x O(=) 17.07 + 1 x OH(-) 20.23 = 63.60"


def test_tpsa_with_sulfur_and_phosphorus_when_the_label_is_pubchems():
    smi = "CS(=O)(=O)c1ccc(P(=O)(O)O)cc1"
    label = f"{rdMolDescriptors.CalcTPSA(mol(smi), includeSandP=True):.2f}"
    assert R.rationale("tpsa", rec(smi, label)).startswith("TPSA N,O,S,P: ")


@pytest.mark.parametrize("smi", [ASPIRIN, BENZENE, "CC(=O)[O-].[Na+]", "ClC(Cl)Cl", "CCN(CC)CC", "[2H]C([13CH3])Br"])
def test_sums_equal_rdkit(smi):
    m = mol(smi)
    for task, truth in (("weight", Descriptors.MolWt(m)), ("logp", Crippen.MolLogP(m)),
                        ("tpsa", rdMolDescriptors.CalcTPSA(m))):
        body = R.rationale(task, rec(smi, f"{truth:.2f}"))
        terms, total = R.read_sum(body)
        assert sum(n * v for n, _, v in terms) == Decimal(total)
        assert float(total) == pytest.approx(truth, abs=6e-4), (task, body)


def test_logp_groups_by_crippen_type():
    # ethanol, Wildman & Crippen 1999's types: CH3 C1, CH2 bonded to O C3, hydrocarbon H1, alcohol H2, alcohol O2
    body = R.rationale("logp", rec("CCO", "-0.00"))
    assert body == "Crippen logP: 1 x C1 0.1441 + 1 x C3 -0.2035 + 5 x H1 0.1230 + 1 x H2 -0.2677 + 1 x O2 -0.2893 " \
                   "= -0.0014"
    assert Crippen.MolLogP(mol("CCO")) == pytest.approx(-0.0014)


def test_no_rationale_where_the_label_is_not_rdkits_value():
    assert R.rationale("weight", rec(BENZENE, "78.50")) is None
    assert R.with_rationale("weight", rec(BENZENE, "78.50"), "78.50") == "78.50"
    assert R.rationale("logp", rec(BENZENE, "2.10")) is None  # e.g. an XLogP3 label
    assert R.rationale("molcap", rec(BENZENE, "A ring.")) is None
    assert R.rationale("homolumo", rec(BENZENE, "0.25")) is None


def test_esterification_reaction_centre():
    assert R.reaction_centre(ESTERIFICATION) == (["C2-O5"], ["C2-O4"], [])
    assert R.reaction_rationale(ESTERIFICATION) == "reaction centre: formed C2-O5; broken C2-O4"
    # a leaving atom without a map number is named by its element; a changed bond order is its own list
    assert R.reaction_centre("[CH3:1][C:2](=[O:3])Cl.[NH2:4][CH3:5]>>[CH3:1][C:2](=[O:3])[NH:4][CH3:5]") == \
        (["C2-N4"], ["C2-Cl"], [])
    assert R.reaction_centre("[CH2:1]=[CH:2][CH3:3]>>[CH3:1][CH2:2][CH3:3]") == ([], [], ["C1=C2 to C1-C2"])
    assert R.reaction_centre("CC(=O)O.OC>>CC(=O)OC") is None  # unmapped: no rationale
    forward = {"input": "x", "output": "y", "metadata": {"reaction_smiles": ESTERIFICATION}}
    assert R.rationale("forward", forward) == "reaction centre: formed C2-O5; broken C2-O4"
    assert R.rationale("forward", rec("CC(=O)O.OC", selfies.encoder("CC(=O)OC"))) is None


def test_molediting_rationale():
    src, tgt = "Fc1ccccc1CCN", "Oc1ccccc1CCN"
    body = R.rationale("molediting", rec(src, selfies.encoder(tgt)))
    assert body == (f"edit: removes F, adds O; QED {QED.qed(mol(src)):.3f} -> {QED.qed(mol(tgt)):.3f}; "
                    f"similarity {R.similarity(mol(src), mol(tgt)):.2f}")


# ----------------------------------------------------------------------------- reading

def test_cut_answer_reads_after_the_rationale():
    assert answers.cut_answer(BENZENE_WEIGHT + "<|im_end|>junk") == "78.11"
    assert answers.cut_answer("<think> no answer follows") == ""
    assert answers.cut_answer("<think> cut here <|im_end|> </think> 78.11") == ""
    assert answers.cut_answer("<think> a </think> 1.0 </think> 2.0") == "1.0 </think> 2.0"
    assert answers.cut_answer(BENZENE_WEIGHT + "<|eot_id|>x", release_compat=True) == "78.11"
    assert answers.cut_answer("<think> a </think>  [C] <|eot_id|>", release_compat=True) == "[C] "
    for text in (" 78.11 </think> x", " CCO <|im_end|>", "</think>"):  # no <think>: as before
        assert answers.cut_answer(text) == text.split("<|im_end|>")[0].strip()
    assert answers.cut_answer(" CCO </think>", release_compat=True) == " CCO </think>"
    assert R.split(BENZENE_WEIGHT) == ("molecular weight: 6 x C 12.011 + 6 x H 1.008 = 78.114", "78.11")
    assert R.split("78.11") == (None, "78.11")


def test_metrics_score_a_rationale_as_the_bare_answer():
    refs = ["78.11", "78.11", "78.11"]
    bare = metrics.number_metrics(["78.11", "80.0", "C"], refs)
    withr = metrics.number_metrics([BENZENE_WEIGHT, "<think> guess </think> 80.0", "<think> 6 x C 12.011"], refs)
    assert withr == bare and bare["Skipped items"] == 1
    sf = selfies.encoder(BENZENE)
    m_bare = metrics.molecule_metrics([sf, "[C]"], [sf, sf])
    m_with = metrics.molecule_metrics([f"<think> ring </think> {sf}", "<think> x </think> [C]"], [sf, sf])
    assert {k: v for k, v in m_with.items() if k != "SELFIES BLEU"} == \
        {k: v for k, v in m_bare.items() if k != "SELFIES BLEU"}


def test_significance_and_rl_read_the_answer_after_the_rationale():
    assert significance.read_number("number", BENZENE_WEIGHT) == significance.read_number("number", "78.11") == 78.11
    assert significance.read_number("number", "<think> 6 x C 12.011") is None
    v = V.verify("weight", WEIGHT_PROMPT + selfies.encoder(BENZENE), "<think> x </think> 80.0", "78.11")
    assert rl.shaped_reward("weight", v, "<think> x </think> 80.0", "78.11", partial_credit=True) == \
        rl.shaped_reward("weight", v, "80.0", "78.11", partial_credit=True) > 0


# ----------------------------------------------------------------------------- verification

def verdict(prediction, smi=BENZENE, task="weight", reference="78.11"):
    return V.verify(task, WEIGHT_PROMPT + selfies.encoder(smi), prediction, reference)


def test_verify_right_wrong_missing_and_inconsistent_rationales():
    assert verdict("78.11") == verdict(BENZENE_WEIGHT) == V.OK                           # right
    assert verdict("<think> </think> 78.11") == V.OK                                      # empty: as bare
    assert verdict("<think> molecular weight: 6 x C 12.011 + 6 x H 1.008 = 78.114 </think> 90.00").reason == \
        "rationale inconsistent"                                                           # sum is not the answer
    assert verdict("<think> molecular weight: 6 x C 12.011 + 6 x H 1.008 = 80.114 </think> 80.11").reason == \
        "rationale inconsistent"                                                           # terms miss the sum
    assert verdict("<think> molecular weight: 6 x C 12.011 + 6 x H 1.008 = 78.114 </think> 78.114") == V.OK
    assert verdict("<think> molecular weight: 7 x C 12.011 + 6 x H 1.008 = 90.125 </think> 90.13").reason == \
        "out of tolerance"                                                                 # consistent, wrong
    assert verdict("<think> molecular weight: 6 x C 12.011 + 6 x H 1.008 = 78.114 </think>").reason == "unparsable"
    assert verdict("<think> molecular weight: 6 x C 12.011").reason == "unparsable"       # never closed
    assert verdict("<think> it is benzene </think> 78.11").reason == "rationale unreadable"
    assert verdict("<think> x </think> 78.11", task="homolumo", reference="78.11") == V.OK  # no format: unchecked
    assert set(V.verify_rows([{"task": "weight", "prompt": WEIGHT_PROMPT + selfies.encoder(BENZENE),
                               "prediction": BENZENE_WEIGHT, "reference": "78.11"}])["weight"]["reasons"]) == {"ok"}


def test_verify_checks_logp_and_tpsa_rationales_with_negative_terms():
    smi = "CCO"
    logp = R.with_rationale("logp", rec(smi, f"{Crippen.MolLogP(mol(smi)):.2f}"), f"{Crippen.MolLogP(mol(smi)):.2f}")
    assert verdict(logp, smi, "logp") == V.OK
    assert verdict(logp.replace("-0.2035", "0.2035"), smi, "logp").reason == "rationale inconsistent"
    tpsa = R.with_rationale("tpsa", rec(ASPIRIN, "63.60"), "63.60")
    assert verdict(tpsa, ASPIRIN, "tpsa") == V.OK
    assert verdict(tpsa.replace("= 63.60", "= 63.70"), ASPIRIN, "tpsa").reason == "rationale inconsistent"


def test_verify_checks_molediting_qed_and_similarity():
    src, tgt = "Fc1ccccc1CCN", "Oc1ccccc1CCN"
    prompt = "Raise its QED. The compound SELFIES sequence is: " + selfies.encoder(src)
    good = R.with_rationale("molediting", rec(src, selfies.encoder(tgt)), selfies.encoder(tgt))
    bare = V.verify("molediting", prompt, selfies.encoder(tgt), None)
    assert V.verify("molediting", prompt, good, None) == bare
    lie = good.replace(f"-> {QED.qed(mol(tgt)):.3f}", "-> 0.999")
    assert V.verify("molediting", prompt, lie, None).reason == "rationale inconsistent"


def test_rationale_reasons_are_known():
    assert {"rationale inconsistent", "rationale unreadable"} <= set(V.REASONS)


# ----------------------------------------------------------------------------- data and training

@pytest.fixture
def weight_data(tmp_path, smiles):
    """Training records of weight (rdkit labels) and forward (unmapped), in the published layout."""
    os.makedirs(tmp_path / "train")
    w = [rec(s, f"{Descriptors.MolWt(mol(s)):.2f}") for s in smiles]
    fwd = [rec(f"{s}.O", selfies.encoder(s)) for s in smiles]
    (tmp_path / "train" / "Molecular_Weight.json").write_text(json.dumps(w))
    (tmp_path / "train" / "forward_prediction.json").write_text(json.dumps(fwd))
    return str(tmp_path)


def test_load_tasks_reasoning_puts_the_rationale_before_the_answer(weight_data, capsys):
    plain = data.load_tasks("weight,forward", "train", weight_data, verbose=False)
    withr = data.load_tasks("weight,forward", "train", weight_data, reasoning=True)
    assert "answers with a rationale: weight 12/12, forward 0/12" in capsys.readouterr().out
    assert [s.prompt for s in plain] == [s.prompt for s in withr]
    for a, b in zip(plain, withr):
        if a.task == "forward":
            assert b.answer == a.answer
        else:
            assert b.answer.startswith("<think> molecular weight: ") and b.answer.endswith(f"</think> {a.answer}")
            assert answers.cut_answer(b.answer) == a.answer
            assert V.verify("weight", b.prompt, b.answer, a.answer) == V.OK  # every training rationale verifies
    rows = [{"task": s.task, "prediction": s.answer} for s in withr]
    assert R.count(rows) == {"weight": 12, "forward": 0}
    assert R.add_counts({"weight": {}, "forward": {}}, rows) == {"weight": {R.KEY: 12}, "forward": {R.KEY: 0}}


def test_train_with_reasoning(weight_data, train_args, tmp_path):
    out = tmp_path / "out"
    argv = train_args(weight_data, out, "--tasks", "weight,forward", "--batch-size", 2, "--max-steps", 2)
    train.main([*argv, "--reasoning"])
    steps = sorted(os.listdir(out / "checkpoints"))
    meta = json.loads((out / "checkpoints" / steps[-1] / "meta.json").read_text())
    assert meta["args"]["reasoning"] is True and meta["step"] == 2
    with pytest.raises(SystemExit, match="--reasoning True, this run has False"):
        train.main([*argv, "--resume"])  # the same run without --reasoning would not continue it
    del meta["args"]["reasoning"]  # a checkpoint from before the flag: trained without rationales
    (out / "checkpoints" / steps[-1] / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match="--reasoning False, this run has True"):
        train.main([*argv, "--reasoning", "--resume"])


def test_eval_counts_answers_with_a_rationale_and_budgets_see_them(weight_data, tmp_path):
    prompt = WEIGHT_PROMPT + selfies.encoder(BENZENE)
    rows = [{"task": "weight", "id": str(i), "prompt": prompt, "prediction": p, "reference": "78.11"}
            for i, p in enumerate((BENZENE_WEIGHT, "78.11", "<think> 6 x C"))]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = E.main(["--score", str(path), "--out", str(tmp_path / "scored")])
    assert res["weight"][R.KEY] == 2 and res["weight"]["Average MAE"] == 0.0
    assert json.loads((tmp_path / "scored" / "results.json").read_text())["weight"][R.KEY] == 2
    # a --reasoning checkpoint's answer budgets: the training answers with rationales, references bare
    samples, items = report.training_items(weight_data, {"weight"}, reasoning=True)
    assert all(s.answer.startswith("<think>") for s in samples)
    assert [i["reference"] for i in items] == [answers.cut_answer(s.answer) for s in samples]
    assert not any(i["reference"].startswith("<think>") for i in items)
