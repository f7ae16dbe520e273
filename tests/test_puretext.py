"""--graph none (the dev tree's puretext recipe): prompts without the <mol> placeholder and no graph, stored in
meta.json by train.py and read back by eval.py."""
import json
import os
import random

import pytest
import selfies

import checkpoint
import data
import eval as E
import train
from tasks import MOLCAP_QUESTIONS, TASKS, build_prompt, redraw_question
from tokenizer import MOL_PLACEHOLDER as MOL


def _rec(smiles, instruction="What is the molecular weight of this molecule?"):
    return {"instruction": instruction, "input": selfies.encoder(smiles), "output": "46.07"}


def test_text_only_prompts_have_no_placeholder_and_no_graph():
    rec = _rec("CCO")
    graph = data.make_sample(TASKS["weight"], rec, "weight", "w:1")
    text = data.make_sample(TASKS["weight"], rec, "weight", "w:1", text_only=True)
    assert graph.prompt.startswith(MOL) and data.featurize(graph) is not None
    assert MOL not in text.prompt and data.featurize(text) is None
    assert graph.prompt == MOL + "\n" + text.prompt  # the same text, the placeholder dropped
    assert text.smiles == "CCO"  # kept: the baselines' fingerprints
    cap = data.make_sample(TASKS["molcap"], _rec("CCO", ""), "molcap", "c:1", text_only=True)
    assert MOL not in cap.prompt and selfies.encoder("CCO") in cap.prompt
    redrawn = redraw_question(cap.prompt, random.Random(3))  # molcap's question drawn again per epoch
    assert any(redrawn.startswith(q) for q in MOLCAP_QUESTIONS) and redrawn.endswith(cap.prompt[-30:])
    with pytest.raises(ValueError, match="no text-only form"):
        build_prompt(TASKS["molcap"], _rec("CCO", ""), graph_only=True, text_only=True)


def test_text_only_batches_carry_no_graphs(tiny_data):
    samples = data.load_tasks("forward,molcap", split="train", data=tiny_data, verbose=False, text_only=True)
    assert samples and all(MOL not in s.prompt for s in samples)
    batch = data.collate(samples[:4], _Tok(), with_answer=True)
    assert len(batch["samples"]) == 4 and batch["graphs"] == [None] * 4  # none dropped, none attached


class _Tok:  # collate needs encode_chat only
    def encode_chat(self, prompt, answer=None):
        return [1, 2], [-100, 2]


def test_graph_none_trains_and_evaluates_text_only(eval_data_folder, train_args, tmp_path):
    data_dir = str(eval_data_folder(tmp_path / "data"))
    out = tmp_path / "run"
    train.main(train_args(data_dir, out, "--tasks", "weight,retrosynthesis", "--batch-size", 2, "--max-steps", 2,
                          "--graph", "none"))
    step_dir = checkpoint.steps(out)[-1]
    assert json.load(open(os.path.join(step_dir, "meta.json")))["args"]["graph"] == "none"
    E.main(["--ckpt", str(step_dir), "--limit", "2", "--max-new-tokens", "4", "--greedy", "--tasks",
            "weight,retrosynthesis", "--out", str(tmp_path / "ev")])
    rows = [json.loads(line) for line in (tmp_path / "ev" / "predictions.jsonl").read_text().splitlines()]
    assert rows and all(MOL not in r["prompt"] for r in rows)
    assert any(selfies.encoder("CCO") in r["prompt"] for r in rows)  # the molecule as text
    assert json.loads((tmp_path / "ev" / "results.json").read_text())["_meta"]["graph"] == "none"
    assert "puretext" in train.get_parser().format_help()
    with pytest.raises(SystemExit):
        train.parse_args(["--stage", "1", "--graph", "none"])
