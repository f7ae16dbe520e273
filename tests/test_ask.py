"""ask.py on the tiny checkpoint: one SMILES, one SELFIES, text tasks, bad input as a one-line error (exit code 2),
a file of 20 molecules with 2 bad lines (18 answers + 2 errors, in order), the JSON schema, .jsonl inputs,
prompts over the length limits, and a generation failure confined to its item."""
import json

import pytest
from rdkit import Chem
from rdkit.Chem import Descriptors

import ask
import verify

GOOD = ["CCO", "c1ccccc1", "CC(=O)O", "CCN", "OCCO", "CCCC", "C1CC1", "CC(C)O", "CC#N", "C=CC=C", "CS",
        "NCC(=O)O", "CC(=O)Nc1ccc(O)cc1", "c1ccncc1", "CCOCC", "ClCCl", "OC(=O)c1ccccc1", "CCCCCCCC"]
ANSWER_KEYS = {"id", "task", "input", "prompt", "answer", "verdict", "rdkit"}
ERROR_KEYS = {"id", "task", "input", "error"}
FAST = ["--max-new-tokens", "6"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_checkpoint):
    out = tmp_path_factory.mktemp("askrun")
    tiny_checkpoint(out, str(out))
    return str(out)


def _run(capsys, *argv):
    rc = ask.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_one_smiles(ckpt, capsys):
    rc, out, err = _run(capsys, "--ckpt", ckpt, "--task", "weight", "--smiles", "CCO", *FAST)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("answer: ")
    assert lines[1].startswith("verdict: ") and lines[1].split()[1] in " ".join(verify.REASONS)
    assert lines[2] == f"rdkit: {round(Descriptors.MolWt(Chem.MolFromSmiles('CCO')), 4)}"


def test_one_selfies_is_the_same_question(ckpt, capsys):
    a = ask.make_item("logp", "smiles", "CCO", "x")
    b = ask.make_item("logp", "selfies", "[C][C][O]", "x")
    assert a.prompt == b.prompt and a.prompt.endswith("The molecule SELFIES sequence is: [C][C][O]")
    assert (a.smiles, a.n_atoms) == ("CCO", 3) and b.n_atoms == 3
    _, out_a, _ = _run(capsys, "--ckpt", ckpt, "--task", "logp", "--smiles", "CCO", *FAST)
    rc, out_b, err = _run(capsys, "--ckpt", ckpt, "--task", "logp", "--selfies", "[C][C][O]", *FAST)
    assert rc == 0, err
    assert out_a == out_b  # the same prompt and graph, greedy: the same answer


@pytest.mark.parametrize("argv,why", [
    (["--task", "weight", "--smiles", "C1CC"], "error: rdkit cannot parse SMILES 'C1CC'"),
    (["--task", "weight", "--smiles", "CC.>>C"], "error: rdkit cannot parse SMILES ''"),
    (["--task", "weight", "--selfies", "[C][Xyz]"], "error: undecodable SELFIES"),
    (["--task", "weight", "--selfies", "not selfies"], "error: SELFIES decodes to an empty molecule"),
    (["--task", "wait", "--smiles", "CCO"], "error: unknown task 'wait'; valid tasks: forward, "),
    (["--smiles", "CCO"], "error: --task is required"),
    (["--task", "weight", "--text", "ethanol"], "error: task weight takes a molecule"),
    (["--task", "iupac", "--smiles", "CCO"], "error: task iupac takes text"),
    (["--task", "reagent", "--smiles", "CCO"], "error: reaction input without '>>'"),
])
def test_bad_input_is_one_line_and_exit_2(ckpt, capsys, argv, why):
    rc, out, err = _run(capsys, "--ckpt", ckpt, *argv, *FAST)
    assert rc == 2 and out == ""
    assert err.startswith(why) and err.count("\n") == 1, err
    assert "loaded base model" not in err  # said before the model loads


def test_text_and_reaction_tasks(ckpt, capsys):
    for argv in (["--task", "iupac", "--text", "2-methylpropan-1-ol"],
                 ["--task", "reagent", "--smiles", "CC(=O)O.OCC>>CC(=O)OCC"],
                 ["--task", "experiment", "--smiles", "CC(=O)O.OCC>>CC(=O)OCC"]):
        rc, out, err = _run(capsys, "--ckpt", ckpt, *argv, *FAST)
        assert rc == 0 and out.startswith("answer: "), err
    s = ask.make_item("experiment", "smiles", "CC(=O)O.OCC>>CC(=O)OCC", "x")
    assert "$1$.$2$>>$-1$" in s.prompt and s.smiles == "CC(=O)O.OCC" and s.n_atoms == 7
    s = ask.make_item("tpsa", "smiles", "OCCO", "x", mol_format="smiles")
    assert s.prompt.endswith("The compound SMILES sequence is: OCCO")


def test_file_of_20_molecules(ckpt, capsys, tmp_path):
    lines = [f"{s} mol{i}" for i, s in enumerate(GOOD)]
    lines.insert(5, "C1CC bad1")       # unclosed ring
    lines.insert(13, "C(C)(C)(C)(C)C")  # five bonds on a carbon, no id
    (tmp_path / "m.smi").write_text("\n".join(lines) + "\n\n")
    runs = {}
    for bs in (7, 1):
        rc, out, err = _run(capsys, "--ckpt", ckpt, "--task", "weight", "--file", tmp_path / "m.smi",
                            "--batch-size", bs, "--out", tmp_path / f"a{bs}.jsonl", *FAST)
        assert rc == 0 and out == "" and "18 answered, 2 error(s)" in err
        runs[bs] = [json.loads(x) for x in (tmp_path / f"a{bs}.jsonl").read_text().splitlines()]
    rows = runs[7]
    assert len(rows) == 20
    assert [r["input"] for r in rows] == [ln.split()[0] for ln in lines]  # input order kept
    assert rows[5]["id"] == "bad1" and rows[13]["id"] == "line 14"
    bad = [i for i, r in enumerate(rows) if "error" in r]
    assert bad == [5, 13]
    assert rows[5]["error"] == "rdkit cannot parse SMILES 'C1CC'"
    for r in rows:
        assert set(r) == (ERROR_KEYS if "error" in r else ANSWER_KEYS) and r["task"] == "weight"
        if "error" not in r:
            assert isinstance(r["answer"], str) and r["verdict"]["reason"] in verify.REASONS
            assert 0.0 <= r["verdict"]["score"] <= 1.0
            assert r["rdkit"] == pytest.approx(Descriptors.MolWt(Chem.MolFromSmiles(r["input"])), abs=1e-4)
    assert [r.get("answer") for r in runs[1]] == [r.get("answer") for r in rows]  # batching changes no answer
    (tmp_path / "m.smi").write_text("CCO\n")  # and to stdout without --out
    rc, out, _ = _run(capsys, "--ckpt", ckpt, "--task", "weight", "--file", tmp_path / "m.smi", *FAST)
    assert rc == 0 and set(json.loads(out)) == ANSWER_KEYS


def test_jsonl_file(ckpt, capsys, tmp_path):
    recs = [{"task": "forward", "selfies": "[C][C][O].[O]", "reference": "[C][C][O]", "id": 7},
            {"task": "iupac", "text": "ethanol"},
            {"task": "molcap", "smiles": "CCO"},
            {"task": "nope", "smiles": "CCO"},
            {"task": "weight", "smiles": "CCO", "selfies": "[C][C][O]"},
            "not an object"]
    text = "\n".join(json.dumps(r) for r in recs) + "\n{broken\n"
    (tmp_path / "q.jsonl").write_text(text)
    rc, out, err = _run(capsys, "--ckpt", ckpt, "--file", tmp_path / "q.jsonl", *FAST)
    assert rc == 0, err
    rows = [json.loads(x) for x in out.splitlines()]
    assert len(rows) == 7 and rows[0]["id"] == "7" and rows[1]["id"] == "line 2"
    assert rows[0]["verdict"]["reason"] in verify.REASONS  # a reference gives any task a verdict
    assert rows[1]["verdict"] is None and rows[2]["verdict"] is None and rows[2]["rdkit"] is None
    assert rows[3]["error"].startswith("unknown task 'nope'")
    assert rows[4]["error"] == "line 5 needs one of smiles, selfies, text"
    assert rows[5]["error"] == "line 6 is a JSON str, not an object"
    assert rows[6]["error"].startswith("line 7 is not JSON")


def test_too_long_for_the_limits(ckpt, capsys, tmp_path):
    (tmp_path / "m.smi").write_text("CCO\n" + "C" * 80 + "\n")
    rc, out, _ = _run(capsys, "--ckpt", ckpt, "--task", "weight", "--file", tmp_path / "m.smi", "--max-len", 400,
                      *FAST)
    rows = [json.loads(x) for x in out.splitlines()]
    assert "answer" in rows[0] and rows[1]["error"].endswith("atoms), over --max-len 400")
    rc, out, err = _run(capsys, "--ckpt", ckpt, "--task", "weight", "--smiles", "CCO", "--max-new-tokens", 5000)
    assert rc == 2 and out == ""
    assert err.splitlines()[-1].startswith("error: the prompt is 277 tokens (3 atoms): with --max-new-tokens 5000 it "
                                           "exceeds the model's context of 4096")


def test_a_failing_generation_stays_with_its_item(ckpt, capsys, tmp_path, monkeypatch):
    real = ask.generate

    def flaky(model, tok, samples, graphs, args, generator):
        if any(s.smiles == "CCN" for s in samples):
            raise RuntimeError("CUDA out of memory (simulated)\nmore detail")
        return real(model, tok, samples, graphs, args, generator)
    monkeypatch.setattr(ask, "generate", flaky)
    (tmp_path / "m.smi").write_text("CCO\nCCN\nOCCO\n")
    rc, out, _ = _run(capsys, "--ckpt", ckpt, "--task", "weight", "--file", tmp_path / "m.smi", "--batch-size", 3,
                      *FAST)
    rows = [json.loads(x) for x in out.splitlines()]
    assert rc == 0 and "answer" in rows[0] and "answer" in rows[2]
    assert rows[1] == {"id": "line 2", "task": "weight", "input": "CCN",
                       "error": "generation failed: CUDA out of memory (simulated)"}
