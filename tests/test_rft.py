"""rft.py end to end on the tiny model with a toy verifier: the round's counts match the verifier's verdicts,
the records are the release's format with their provenance, the same seed writes the same folder, no test
prompt is read or written, data.load_tasks reads the folder back and train.py trains on it with --init-from.

The toy verifiers are test stand-ins for verify.verify (same call and verdict shape); rft.py itself uses
verify.py. smiles, tiny_checkpoint: conftest.py."""
import collections
import json
import os

import pytest
import selfies
from rdkit import Chem
from rdkit.Chem import Descriptors, rdMolDescriptors

import checkpoint
import data
import rft
import train
import verify
from tasks import TASKS

Verdict = collections.namedtuple("Verdict", "score reason")
TEST_SMILES = ["CCCO", "c1ccccc1O", "CCCCC", "CC(=O)OC"]  # none of them a training molecule
QUESTIONS = {"weight": "What is the molecular weight of this molecule?", "tpsa": "What is the TPSA of this molecule?"}
META_KEYS = {"split", "source", "checkpoint", "round", "sample", "original_output", "source_id"}


def letter_verifier(calls=None):
    """Toy verifier: an answer is right when it holds an ASCII letter; every call is recorded in `calls`."""
    def verdict(task, prompt, prediction, reference):
        ok = any(c.isascii() and c.isalpha() for c in rft.clean(prediction))
        if calls is not None:
            calls.append((task, prompt, prediction, ok))
        return Verdict(1.0, "ok") if ok else Verdict(0.0, "out of tolerance")
    return verdict


def reject_all(task, prompt, prediction, reference):
    return Verdict(0.0, "out of tolerance")


def _label(task, smi):
    mol = Chem.MolFromSmiles(smi)
    return f"{Descriptors.MolWt(mol):.2f}" if task == "weight" else f"{rdMolDescriptors.CalcTPSA(mol):.2f}"


@pytest.fixture(scope="module")
def sft(tmp_path_factory, smiles, tiny_checkpoint):
    """A data folder in the published layout (weight and tpsa: 12 train records each, 4 test records of other
    molecules) and a tiny stage-2 checkpoint that names it as its data."""
    root = tmp_path_factory.mktemp("rft")
    for split, mols in (("train", smiles), ("test", TEST_SMILES)):
        os.makedirs(root / "data" / split)
        for task in ("weight", "tpsa"):
            recs = [{"instruction": QUESTIONS[task], "input": selfies.encoder(s), "output": _label(task, s),
                     "metadata": {"split": split}} for s in mols]
            (root / "data" / split / f"{TASKS[task].released['train']['train']}.json").write_text(json.dumps(recs))
    step_dir, _ = tiny_checkpoint(root / "sft", root / "data")
    return root, str(step_dir)


def rft_args(sft, out, *extra):
    return [str(a) for a in ("--ckpt", sft[1], "--tasks", "weight,tpsa", "--out", out, "--samples", 4,
                             "--max-new-tokens", 6, "--batch-size", 5, "--threads", 1, *extra)]


def _files(out):
    return {n: json.load(open(os.path.join(out, "train", n))) for n in sorted(os.listdir(os.path.join(out, "train")))}


def _manifest(out):
    with open(os.path.join(out, "manifest.json")) as f:
        return json.load(f)


# ----------------------------------------------------------------------------- a round

def test_counts_schema_and_provenance(sft, tmp_path):
    calls, out = [], tmp_path / "r1"
    m = rft.main(rft_args(sft, out, "--keep-per-prompt", 2), verifier=letter_verifier(calls))
    K = 4
    assert len(calls) == 2 * 12 * K  # every training prompt of both tasks, K answers each
    for task in ("weight", "tpsa"):
        mine = [c for c in calls if c[0] == task]
        per_prompt = [mine[i:i + K] for i in range(0, len(mine), K)]
        assert all(len({c[1] for c in p}) == 1 for p in per_prompt)  # the K answers of a prompt are adjacent
        distinct = [len({rft.clean(c[2]) for c in p if c[3]}) for p in per_prompt]
        want = {"prompts": 12, "samples": 12 * K, "accepted": sum(c[3] for c in mine),
                "prompts_accepted": sum(d > 0 for d in distinct), "distinct": sum(distinct),
                "written": sum(min(2, d) for d in distinct), "with_rationale": 0}
        assert m["counts"][task] == want
        assert m["reasons"][task] == {k: v for k, v in (("ok", want["accepted"]),
                                                         ("out of tolerance", 12 * K - want["accepted"])) if v}
    assert 0 < m["total"]["written"] < m["total"]["samples"], m["total"]  # the toy verifier accepts some, not all
    assert m["total"]["written"] > m["total"]["prompts_accepted"]  # some prompts keep two distinct answers

    # the records: the release's format, the source record's fields, the provenance
    train_recs = {(t, f"{TASKS[t].released['train']['train']}.json:{i + 1}"): r for t in ("weight", "tpsa")
                  for i, r in enumerate(json.load(open(os.path.join(
                      sft[0], "data", "train", f"{TASKS[t].released['train']['train']}.json"))))}
    files = _files(out)
    assert set(files) == {"Molecular_Weight.json", "TPSA.json"} and set(m["files"]) == {"weight", "tpsa"}
    for name, recs in files.items():
        task = "weight" if name == "Molecular_Weight.json" else "tpsa"
        assert len(recs) == m["counts"][task]["written"]
        by_source = collections.Counter(r["metadata"]["source_id"] for r in recs)
        assert max(by_source.values()) <= 2
        for r in recs:
            src = train_recs[(task, r["metadata"]["source_id"])]
            assert set(r) == {"instruction", "input", "output", "metadata"} and set(r["metadata"]) == META_KEYS
            assert (r["instruction"], r["input"]) == (src["instruction"], src["input"])
            md = r["metadata"]
            assert md["split"] == "train" and md["source"] == "rft" and md["round"] == 1
            assert md["checkpoint"] == os.path.abspath(sft[1]) and md["original_output"] == src["output"]
            assert 0 <= md["sample"] < K and letter_verifier()(task, "", r["output"], "").score == 1.0
            assert r["output"] == rft.clean(r["output"]) and r["output"]
        for sid in by_source:  # distinct answers per prompt, in sampling order
            mine = [r for r in recs if r["metadata"]["source_id"] == sid]
            assert len({r["output"] for r in mine}) == len(mine)
            assert [r["metadata"]["sample"] for r in mine] == sorted(r["metadata"]["sample"] for r in mine)
    assert m["source"] == "rft" and m["checkpoint"] == os.path.abspath(sft[1]) and m["checkpoint_step"] == 3
    assert (m["seed"], m["samples"], m["temperature"], m["keep_per_prompt"]) == (42, 4, 1.0, 2)
    assert m["verifier"].endswith("letter_verifier.<locals>.verdict") and m["left_out"] == {}
    assert m["max_new_tokens"] == {"weight": 6, "tpsa": 6}


def test_same_seed_same_folder(sft, tmp_path):
    rft.main(rft_args(sft, tmp_path / "a", "--max-prompts", 5), verifier=letter_verifier())
    rft.main(rft_args(sft, tmp_path / "b", "--max-prompts", 5), verifier=letter_verifier())
    rft.main(rft_args(sft, tmp_path / "c", "--max-prompts", 5, "--seed", 7), verifier=letter_verifier())
    a, b, c = (_files(tmp_path / x) for x in "abc")
    assert a == b and _manifest(tmp_path / "a") == _manifest(tmp_path / "b")
    assert a != c  # another seed draws other prompts and answers
    m = _manifest(tmp_path / "a")
    assert all(m["counts"][t]["prompts"] == 5 for t in ("weight", "tpsa"))


def test_no_test_prompt_is_read_or_written(sft, tmp_path, monkeypatch):
    splits = []
    load, files = data.load_tasks, rft.task_files
    monkeypatch.setattr(data, "load_tasks", lambda *a, **kw: splits.append(kw.get("split")) or load(*a, **kw))
    monkeypatch.setattr(rft, "task_files", lambda root, task, split: splits.append(split) or files(root, task, split))
    out = tmp_path / "r"
    rft.main(rft_args(sft, out), verifier=letter_verifier())
    monkeypatch.undo()
    assert splits and set(splits) == {"train"}
    test = data.load_tasks("weight,tpsa", split="test", data=os.path.join(sft[0], "data"), verbose=False)
    train_ids = {s.id for s in data.load_tasks("weight,tpsa", split="train", data=os.path.join(sft[0], "data"),
                                               verbose=False)}
    got = data.load_tasks("weight,tpsa", split="train", data=str(out), verbose=False)
    assert got and not {s.prompt for s in got} & {s.prompt for s in test}
    recs = [r for rs in _files(out).values() for r in rs]
    assert {r["metadata"]["source_id"] for r in recs} <= train_ids
    assert not {r["input"] for r in recs} & {selfies.encoder(s) for s in TEST_SMILES}


def test_train_py_continues_on_it(sft, tmp_path, capsys):
    out = tmp_path / "r"
    m = rft.main(rft_args(sft, out), verifier=letter_verifier())
    got = data.load_tasks("weight,tpsa", split="train", data=str(out), verbose=False)  # data.py reads it back
    want = sorted((t, r["output"]) for t, n in (("weight", "Molecular_Weight.json"), ("tpsa", "TPSA.json"))
                  for r in _files(out)[n])
    assert sorted((s.task, s.answer) for s in got) == want and len(got) == m["total"]["written"]
    run = tmp_path / "sft2"
    train.main(["--model", "tiny", "--data", str(out), "--tasks", "weight,tpsa", "--out", str(run), "--lora-r", "4",
                "--max-steps", "1", "--batch-size", "2", "--max-len", "512", "--threads", "1", "--init-from", sft[1]])
    assert "init from" in capsys.readouterr().out
    step = checkpoint.steps(run)[-1]
    assert checkpoint.read_meta(step)["step"] == 1
    # the next round: the new checkpoint samples every training prompt of the first round's data again
    m2 = rft.main(["--ckpt", str(run), "--tasks", "weight", "--out", str(tmp_path / "r2"), "--samples", "2",
                   "--max-new-tokens", "4", "--threads", "1"], verifier=letter_verifier())
    assert m2["round"] == 2 and m2["data"] == m["data"] == os.path.join(sft[0], "data")
    assert m2["counts"]["weight"]["prompts"] == 12 and m2["checkpoint"] == os.path.abspath(step)
    assert all(r["metadata"]["round"] == 2 for rs in _files(tmp_path / "r2").values() for r in rs)


def test_nothing_accepted_leaves_the_task_out(sft, tmp_path, capsys):
    out = tmp_path / "none"
    m = rft.main(rft_args(sft, out, "--max-prompts", 2), verifier=reject_all)
    assert m["total"]["written"] == 0 and m["files"] == {} and _files(out) == {}
    assert set(m["left_out"]) == {"weight", "tpsa"}
    assert data.load_tasks("weight", split="train", data=str(out)) == []  # named, not an error
    assert "weight: not in this data (no accepted answer in rft round 1)" in capsys.readouterr().out


def test_the_real_verifier_plugs_in(sft, tmp_path):
    m = rft.main(rft_args(sft, tmp_path / "v", "--max-prompts", 2))
    assert m["verifier"] == "verify.verify"
    for t, c in m["counts"].items():
        assert c["samples"] == sum(m["reasons"][t].values()) == 8
        assert c["accepted"] == m["reasons"][t].get("ok", 0)


# ----------------------------------------------------------------------------- pieces and refusals

def test_what_is_accepted():
    prompt = "What is the molecular weight? The molecule SELFIES sequence is: " + selfies.encoder("c1ccccc1")
    assert rft.accepted(verify.verify("weight", prompt, "78.11", "78.11"))
    right = "<think> molecular weight: 6 x C 12.011 + 6 x H 1.008 = 78.114 </think> 78.11"
    wrong = "<think> molecular weight: 6 x C 12.011 + 6 x H 1.008 = 80.000 </think> 78.11"
    assert rft.accepted(verify.verify("weight", prompt, right, "78.11"))
    assert not rft.accepted(verify.verify("weight", prompt, wrong, "78.11"))  # rationale inconsistent
    assert not rft.accepted(verify.Verdict(1.0, "ok (atom balance only)"))
    assert rft.clean(" 78.11 <|im_end|> junk") == "78.11"
    assert rft.as_release_answer("forward", "CCO", "smiles") == selfies.encoder("CCO")
    assert rft.as_release_answer("weight", "46.07", "smiles") == "46.07"


def test_refusals(sft, tmp_path):
    other = tmp_path / "other"
    os.makedirs(other)
    (other / "x.txt").write_text("mine")
    with pytest.raises(SystemExit, match="not an rft.py folder"):
        rft.main(rft_args(sft, other), verifier=reject_all)
    done = tmp_path / "done"
    rft.main(rft_args(sft, done, "--max-prompts", 1), verifier=reject_all)
    with pytest.raises(SystemExit, match="--overwrite"):
        rft.main(rft_args(sft, done, "--max-prompts", 1), verifier=reject_all)
    rft.main(rft_args(sft, done, "--max-prompts", 1, "--overwrite"), verifier=reject_all)
    with pytest.raises(SystemExit, match="must not contain"):
        rft.main(rft_args(sft, os.path.join(sft[0], "data", "rft")), verifier=reject_all)
    for bad in (("--tasks", "molcap"), ("--temperature", "0"), ("--samples", "0")):
        with pytest.raises(SystemExit):
            rft.parse_args(["--ckpt", sft[1], *bad])
