"""mcq.py: the builder's properties (one correct option, distinct distractors drawn from similar records,
deterministic under the seed, balanced answer positions) and option scoring on the tiny model against a direct
computation of each option's log-likelihood (a plain forward per option, no batching, no likelihood.py).
eval_data_folder, tiny_checkpoint: conftest.py."""
import json
import os
import subprocess
import sys
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import selfies
import torch
from rdkit import Chem

import checkpoint
import data
import eval as E
import fewshot
import mcq
import model as M
import molecule
import shortcuts
sf = selfies.encoder
PHENOLS = ["Oc1ccccc1", "Oc1ccccc1C", "Oc1ccccc1CC", "Oc1ccc(C)cc1", "Oc1ccc(CC)cc1", "Oc1cccc(C)c1", "Oc1ccc(Cl)cc1"]
CHOICE = ("choice4",)
OTHERS = ["CCCCCC", "CCCCO", "CC(=O)O", "NCCN", "C1CCCCC1", "CCN(CC)CC", "OCC(O)CO"]


def sample(task, i, answer, smiles="CCO", prompt=None):
    return SimpleNamespace(task=task, id=f"{task}:{i}", prompt=prompt or f"<mol>question {i} [C][C][O]",
                           answer=answer, smiles=smiles)


def molecule_samples():
    answers = [sf(s) for s in PHENOLS + OTHERS] + [sf("c1ccc(O)cc1"), sf("C(O)C(O)CO")]  # two repeats, other spelling
    return [sample("forward", i, a) for i, a in enumerate(answers)]


def canon(s):
    return Chem.MolToSmiles(Chem.MolFromSmiles(selfies.decoder(s)), isomericSmiles=False)


def test_molecule_questions_have_one_correct_option_and_distinct_distractors():
    samples = molecule_samples()
    qs, skipped = mcq.build(samples, seed=0, formats=CHOICE)
    assert len(qs) == len(samples) and not skipped
    by_id = {s.id: s for s in samples}
    for q in qs:
        assert set(q) == {"task", "id", "format", "prompt", "options", "answer", "graph"} and len(q["options"]) == 4
        ref = by_id[q["id"]].answer
        assert q["options"][q["answer"]] == ref and q["prompt"] == by_id[q["id"]].prompt
        keys = [canon(o) for o in q["options"]]
        assert keys.count(canon(ref)) == 1               # exactly one correct option, by molecule
        assert len(set(keys)) == 4                       # distractors distinct from each other too
    assert not mcq.check(qs)


def test_check_rejects_two_right_options_duplicates_and_the_input():
    qs, _ = mcq.build(molecule_samples(), seed=0, formats=CHOICE)
    assert mcq.check(qs) == []
    bad = json.loads(json.dumps(qs[0]))
    wrong = (bad["answer"] + 1) % 4
    bad["options"][wrong] = canon(bad["options"][bad["answer"]])   # the answer again, as SMILES: two right
    assert any("verified right" in p for p in mcq.check([bad]))
    assert any("duplicate" in p for p in mcq.check([bad]))
    src = json.loads(json.dumps(qs[1]))
    src["options"][(src["answer"] + 1) % 4] = "[C][C][O]"         # the prompt's input molecule
    assert any("input molecule" in p for p in mcq.check([src]))
    skew = [dict(q, options=[q["options"][q["answer"]]] + [o for j, o in enumerate(q["options"]) if j != q["answer"]],
                 answer=0) for q in qs]
    assert any("unbalanced" in p for p in mcq.check(skew))


def test_edited_distractors_hide_the_answer_from_the_similarity_shortcut():
    rep = shortcuts.report(mcq.build(molecule_samples(), seed=0, formats=CHOICE)[0])
    assert set(rep["forward"]) >= {"similarity", "consensus", "length", "overlap", "chance", "N"}


def test_deterministic_under_the_seed_and_different_across_seeds(tmp_path):
    samples = molecule_samples()
    a = mcq.build(samples, seed=0, formats=CHOICE)[0]
    b = mcq.build(list(reversed(samples)), seed=0, formats=CHOICE)[0]
    c = mcq.build(samples, seed=1, formats=CHOICE)[0]
    assert a == mcq.build(samples, seed=0, formats=CHOICE)[0]
    mcq.write(a, tmp_path / "a.jsonl"), mcq.write(mcq.build(samples, seed=0, formats=CHOICE)[0], tmp_path / "b.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()   # the same file
    assert sorted(map(json.dumps, a)) != sorted(map(json.dumps, c))
    assert {q["id"] for q in b} == {q["id"] for q in a}


@pytest.mark.parametrize("n", [8, 13, 14])
def test_answer_positions_are_balanced(n):
    samples = [sample("retrosynthesis", i, sf("C" * (i + 1) + "O")) for i in range(n)]
    qs, _ = mcq.build(samples, seed=3, formats=CHOICE)
    counts = Counter(q["answer"] for q in qs)
    assert sum(counts.values()) == n and max(counts.values()) - min(counts.get(p, 0) for p in range(4)) <= 1


def test_too_few_distinct_answers_is_skipped_and_counted():
    samples = [sample("molcap", i, s) for i, s in enumerate(["a", "A.", "b", "c"])]  # 3 distinct texts
    qs, skipped = mcq.build(samples, seed=0, formats=CHOICE)
    assert qs == [] and skipped == {"molcap": {"fewer than 3 distinct distractors": 4}}
    bad = [sample("forward", 0, "[C][Xyz]")] + molecule_samples()
    qs, skipped = mcq.build(bad, seed=0, formats=CHOICE)
    assert skipped == {"forward": {"answer not a molecule": 1}} and len(qs) == len(bad) - 1


def test_text_distractors_answer_the_same_question_for_similar_molecules():
    mols = PHENOLS + OTHERS
    samples = []
    for i, smi in enumerate(mols):
        for kind in ("formula", "rings"):
            prompt = f"<mol>What is the {kind} of this molecule? The compound SELFIES sequence is: {sf(smi)}"
            samples.append(sample("dqa", f"{kind}{i}", f"Its {kind} is {kind[0]}{i}.", smi, prompt))
    dup = f"<mol>What is the formula of this molecule? The compound SELFIES sequence is: {sf(mols[1])}"
    samples.append(sample("dqa", "dup", "its formula is f0", mols[1], dup))
    qs, _ = mcq.build(samples, seed=0, formats=CHOICE)
    assert len(qs) == len(samples)
    for q in qs:
        kind = "formula" if "formula" in q["prompt"] else "rings"
        assert all(f"{kind} is" in o.lower() for o in q["options"])  # same question first
        norm = [mcq.normalise_text(o) for o in q["options"]]
        assert len(set(norm)) == 4                                     # "Its formula is f0." == "its formula is f0"
        if q["id"] == "dqa:formula0":                                  # phenol: distractors from other phenols
            assert all(int(o.split("f")[-1].rstrip(".")) < len(PHENOLS) for o in q["options"])


def _data_folder(root):
    """A few test records of two tasks in the published layout."""
    os.makedirs(root / "test")
    fwd = [{"instruction": "Product?", "input": sf(a) + "." + sf("CC(=O)Cl"), "output": sf(a),
            "metadata": {"split": "test"}} for a in PHENOLS]
    cap = [{"instruction": "", "input": sf(a), "output": f"The molecule number {i}.", "metadata": {"split": "test"}}
           for i, a in enumerate(OTHERS)]
    (root / "test" / "forward_prediction.json").write_text(json.dumps(fwd))
    (root / "test" / "molcap.json").write_text(json.dumps(cap))
    return root


def test_mcq_py_build_cli(repo, tmp_path):
    data_dir = _data_folder(tmp_path / "data")
    out = subprocess.run([sys.executable, os.path.join(repo, "mcq.py"), "build", "--data", str(data_dir),
                          "--out", str(tmp_path / "mcq.jsonl")], capture_output=True, text=True, cwd=repo, timeout=300)
    assert out.returncode == 0, out.stderr
    qs = mcq.read(tmp_path / "mcq.jsonl")
    assert Counter((q["task"], q["format"]) for q in qs) == {
        ("forward", "choice4"): len(PHENOLS), ("molcap", "choice4"): len(OTHERS),
        ("forward", "truefalse"): len(PHENOLS)}
    assert mcq.check(qs) == []
    assert "dqa: no test records" in out.stdout
    assert all(q["prompt"].startswith("<mol>") and q["graph"] for q in qs)


# ----------------------------------------------------------------------------- scoring on the tiny model

def direct_scores(model, tok, q, graphs=True):
    """Each option's mean log p(answer token | everything before), one unpadded forward per option."""
    out = []
    for opt in q["options"]:
        prompt = q["prompt"] if graphs else q["prompt"].replace("<mol>", "")
        ids, labels = tok.encode_chat(prompt, opt)
        g = molecule.smiles_to_graph(q["graph"]) if graphs and q.get("graph") else None
        if g is None:
            emb, lab = model.embed(torch.tensor([ids])), torch.tensor([labels])
        else:
            emb, _, lab = molecule.embed_inputs(model, [ids], [g], labels=[labels])
        with torch.no_grad():
            logp = torch.log_softmax(model(inputs_embeds=emb)[0].double(), dim=-1)   # (T, V)
        picked = [logp[t - 1, lab[0, t]].item() for t in range(1, lab.shape[1]) if lab[0, t] != -100]
        out.append(sum(picked) / len(picked))
    return out


@pytest.fixture(scope="module")
def questions():
    qs, _ = mcq.build(molecule_samples()[:9] + [sample("molcap", i, f"caption number {i} of this one", s)
                                                for i, s in enumerate(OTHERS)], seed=0, formats=CHOICE)
    for q in qs[::3]:
        q["graph"] = PHENOLS[0]
    qs[1]["graph"] = None
    qs[1]["prompt"] = qs[1]["prompt"].replace("<mol>", "")
    return qs


def test_option_scores_match_a_direct_computation(questions):
    model, tok = M.load_model("tiny")
    molecule.attach_molecule(model)
    got = mcq.option_scores(model, tok, questions, batch_size=5)   # batches cut across questions
    want = [direct_scores(model, tok, q) for q in questions]
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=0, atol=1e-4)
    acc = mcq.accuracy(questions, want)
    for task in ("forward", "molcap"):
        qs = [(q, w) for q, w in zip(questions, want) if q["task"] == task]
        assert acc[task]["accuracy"] == pytest.approx(np.mean([int(np.argmax(w)) == q["answer"] for q, w in qs]))
        assert acc[task]["chance"] == 0.25 and acc[task]["N"] == len(qs)


def test_eval_mcq_base_model_and_checkpoint(questions, tmp_path, eval_data_folder, tiny_checkpoint):
    path = tmp_path / "mcq.jsonl"
    mcq.write(questions, path)
    acc = E.main(["--mcq", str(path), "--ckpt", "none", "--base", "tiny", "--batch-size", "7"])
    saved = json.loads((tmp_path / "mcq_results.json").read_text())
    model, tok = M.load_model("tiny")
    want = [direct_scores(model, tok, q, graphs=False) for q in questions]   # the base model reads no graph
    np.testing.assert_allclose([s["scores"] for s in saved["_scores"]], want, rtol=0, atol=1e-4)
    assert acc == mcq.accuracy(questions, want) and "no adapters" in saved["_meta"]["model"]

    step_dir, _ = tiny_checkpoint(tmp_path / "out", eval_data_folder(tmp_path / "d"))
    acc = E.main(["--mcq", str(path), "--ckpt", str(tmp_path / "out"), "--limit", "2"])
    saved = json.loads((tmp_path / "out" / "eval" / "mcq_results.json").read_text())
    assert {t: v["N"] for t, v in acc.items()} == {"forward": 2, "molcap": 2, "all": 4}
    model, tok, _ = checkpoint.load_model(str(step_dir), "cpu", torch.float32, log=lambda *a: None)
    kept = [q for q in questions if q["id"] in {s["id"] for s in saved["_scores"]}]
    np.testing.assert_allclose([s["scores"] for s in saved["_scores"]], [direct_scores(model, tok, q) for q in kept],
                               rtol=0, atol=1e-4)


def test_the_input_similarity_shortcut_is_reported():
    fwd = {"task": "forward", "prompt": "<mol>Product? " + sf("CC(=O)Cl.Nc1ccc(O)cc1"), "answer": 2,
           "options": [sf("CCCCCC"), sf("OCC(O)CO"), sf("CC(=O)Nc1ccc(O)cc1"), "not a molecule"]}
    cap = {"task": "molcap", "prompt": "<mol>Describe. " + sf("CCO"), "answer": 0, "options": ["a", "b", "c", "d"]}
    sh = mcq.shortcut_scores([fwd, cap])
    assert int(np.argmax(sh[0])) == 2 and sh[0][3] == -1.0 and sh[1] is None
    acc = mcq.accuracy([fwd, cap], [[0, 1, 0, 0], [1, 0, 0, 0]])   # the "model" is wrong on forward, right on molcap
    assert acc["forward"] == {"accuracy": 0.0, "chance": 0.25, "shortcut": 1.0, "strongest": ["similarity", 1.0],
                              "format": "choice4", "N": 1}
    assert acc["molcap"]["accuracy"] == 1.0 and acc["molcap"]["shortcut"] is None and acc["all"]["accuracy"] == 0.5
    assert "| forward | 0.000 | 0.25 | 1.000 | similarity 1.000 | 1 |" in mcq.table(acc)


def test_smiles_answers_are_compared_as_molecules():
    samples = [sample("forward", i, s) for i, s in enumerate(PHENOLS + OTHERS + ["c1ccc(O)cc1"])]  # --mol-format smiles
    qs, skipped = mcq.build(samples, seed=0, formats=CHOICE)
    assert len(qs) == len(samples) and not skipped
    for q in qs:
        keys = [Chem.MolToSmiles(Chem.MolFromSmiles(o)) for o in q["options"]]
        assert len(set(keys)) == 4


def test_bootstrap_interval_hand_cases():
    assert mcq.bootstrap([1] * 20) == (1.0, 1.0) and mcq.bootstrap([0] * 20) == (0.0, 0.0)
    lo, hi = mcq.bootstrap([1, 0] * 50, rounds=4000, seed=0)
    assert 0.38 < lo < 0.42 and 0.58 < hi < 0.62   # 0.5 +- 1.96 * sqrt(0.25 / 100) = [0.402, 0.598]
    assert mcq.bootstrap([1, 0] * 50, seed=3) == mcq.bootstrap([1, 0] * 50, seed=3)
    assert all(np.isnan(mcq.bootstrap([])))
    qs = [{"task": "logp", "format": "numeric", "answer": 0}, {"task": "logp", "format": "numeric", "answer": 1},
          {"task": "forward", "answer": 0}]
    ci = mcq.intervals(qs, [[1, 0], [1, 0], [0, 1]])
    assert set(ci) == {"logp (numeric)", "all (numeric)", "forward", "all (choice4)", "all"}
    assert ci["forward"] == (0.0, 0.0) and ci["all"][0] <= 1 / 3 <= ci["all"][1]


def test_eval_mcq_few_shot_prompts_from_the_training_split(questions, tmp_path, tiny_data):
    path = tmp_path / "mcq.jsonl"
    mcq.write(questions, path)
    E.main(["--mcq", str(path), "--ckpt", "none", "--base", "tiny", "--few-shot", "2", "--data", tiny_data,
            "--out", str(tmp_path / "fs")])
    saved = json.loads((tmp_path / "fs" / "mcq_results.json").read_text())
    assert "2 in-context examples per question" in saved["_meta"]["model"]
    train = {s.answer for s in data.load_tasks("forward,molcap", "train", tiny_data, verbose=False)}
    shown = fewshot.mcq_with_examples(questions, 2, tiny_data)
    for q, s in zip(questions, shown):
        head, _, question = s["prompt"].partition("Question:\n")
        assert question == q["prompt"] and head.count("Example ") == 2    # the question itself unchanged, last
        assert all(a.split("\n\n")[0] in train for a in head.split("Answer: ")[1:])  # each shown answer a training one
        assert "<mol>" not in head                                        # only the question's molecule is a graph
    model, tok = M.load_model("tiny")
    want = [direct_scores(model, tok, q, graphs=False) for q in shown]
    np.testing.assert_allclose([s["scores"] for s in saved["_scores"]], want, rtol=0, atol=1e-4)


def test_compare_two_results_hand_computed(tmp_path):
    def result(hits, name):  # 4 forward choice questions then 2 weight true/false ones; answer index 1 each
        rows = [{"id": f"q{i}", "task": "forward" if i < 4 else "weight", "format": "choice4" if i < 4 else
                 "truefalse", "answer": 1, "scores": [0.0, 1.0] if h else [1.0, None]} for i, h in enumerate(hits)]
        return {"_meta": {"model": name}, "_scores": rows}
    a, b = result([1, 1, 1, 0, 1, 1], "A"), result([0, 1, 0, 0, 1, 1], "B")
    b["_scores"].append({"id": "only-b", "task": "forward", "format": "choice4", "answer": 0, "scores": [1.0, 0.0]})
    for r in (a, b):  # the same record's true/false question shares its id with its choice question
        r["_scores"].append({"id": "q0", "task": "forward", "format": "truefalse", "answer": 0, "scores": [1.0, 0.0]})
    cmp = mcq.compare(a, b)
    assert cmp["forward"]["N"] == 4 and cmp["forward"]["a"] == 0.75 and cmp["forward"]["b"] == 0.25
    assert cmp["forward"]["diff"] == pytest.approx(0.5) and cmp["all"]["N"] == 7  # "only-b" is not paired
    assert cmp["forward (truefalse)"] == {"N": 1, "a": 1.0, "b": 1.0, "diff": 0.0, "CI": (0.0, 0.0)}
    assert cmp["weight (truefalse)"]["diff"] == 0 and cmp["weight (truefalse)"]["CI"] == (0.0, 0.0)
    lo, hi = cmp["forward"]["CI"]
    assert 0 <= lo <= 0.5 <= hi <= 1  # every resample's difference lies in [0, 1]: a is never worse on an item
    assert "| forward | 4 | 0.750 | 0.250 | +0.500" in mcq.compare_table(cmp)
    for name, r in (("a.json", a), ("b.json", b)):
        (tmp_path / name).write_text(json.dumps(r))
    assert mcq.main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == cmp
