"""fewshot.py and eval.py --few-shot: K examples from the training split, nearest by input molecule, never
test items; the generation prompt holds them, predictions.jsonl keeps the plain prompt."""
import json

import data
import eval as E
import fewshot
from tokenizer import MOL_PLACEHOLDER


def _split(folder, split, tasks="weight,retrosynthesis"):
    return data.load_tasks(tasks, split=split, data=str(folder), verbose=False)


def test_examples_are_the_nearest_training_records(tmp_path, eval_data_folder):
    folder = eval_data_folder(tmp_path / "d")
    train, test = _split(folder, "train"), _split(folder, "test")
    shots = fewshot.with_examples(test, train, 2)
    train_text = {(s.prompt.replace(MOL_PLACEHOLDER, "").strip(), s.answer) for s in train}
    for plain, s in zip(test, shots):
        assert s.id == plain.id and s.answer == plain.answer and s.smiles == plain.smiles
        assert s.prompt.endswith("Question:\n" + plain.prompt) and s.prompt.count(MOL_PLACEHOLDER) == 1
        blocks = s.prompt.split("Question:\n")[0].strip().split("\n\n")
        n_train = sum(t.task == plain.task for t in train)
        assert len(blocks) == min(2, n_train)
        for b in blocks:                                     # every example is a training record, as written
            head, body = b.split("\n", 1)
            text, answer = body.rsplit("\nAnswer: ", 1)
            assert head.startswith("Example ") and (text, answer) in train_text
    shown = " ".join(s.prompt.split("Question:")[0] for s in shots)
    assert not any(f"Answer: {t.answer}\n" in shown for t in test)  # no test record's answer is ever an example
    w = {s.prompt.split()[-1]: s for s in shots if s.task == "weight"}
    ethanol = next(p for k, p in w.items() if k == "[C][C][O]")
    assert ethanol.prompt.split("Question:")[0].rstrip().endswith("Answer: 60.10")  # CCCO: nearest, last
    assert fewshot.with_examples(test, train, 0) == test


def test_eval_few_shot_prompts_generation_only(tmp_path, tiny_checkpoint, eval_data_folder, monkeypatch):
    folder = eval_data_folder(tmp_path / "d")
    step_dir, _ = tiny_checkpoint(tmp_path / "run", folder)
    seen = []
    gen = E.generate_answers
    monkeypatch.setattr(E, "generate_answers",
                        lambda m, t, items, *a, **k: seen.extend(items) or gen(m, t, items, *a, **k))
    out = tmp_path / "ev"
    E.main(["--ckpt", str(step_dir), "--tasks", "weight", "--limit", "2", "--greedy", "--max-new-tokens", "3",
            "--no-nll", "--no-baselines", "--few-shot", "2", "--out", str(out)])
    assert len(seen) == 2 and all(p.startswith("Example 1:\n") and p.count("Answer: ") == 2 for p, _ in seen)
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert rows and not any("Example" in r["prompt"] for r in rows)
    assert json.loads((out / "results.json").read_text())["_meta"]["few-shot examples"] == 2
