"""Learning tests that can fail, on CPU with `--model tiny` through train.py and eval.py:

- memorisation: a few records of four tasks (a reaction, a caption, a text-only task, a number), trained
  to fit, then greedy eval reproduces every answer exactly. Any train/eval mismatch of chat template,
  answer labels, atom splice or adapter loading breaks it. The tiny model's old init (0.02-std tied
  embeddings: nearly flat logits) plateaued at 5.2 nats/token here and reproduced 0 of 8 answers.
- held-out loss: on a synthetic task with a fixed rule (answer format + a class), the teacher-forced
  answer NLL of unseen items after training is far below that of the untrained model
  (likelihood.heldout_nll, the numbers eval.py reports), and the class token's NLL and accuracy on them
  beat what the answer format and the (balanced) class prior alone allow: ln 2 nats and 1/2, so the rule
  itself has been learned."""
import json
import math
import os
import random

import selfies
import torch

import checkpoint
import data
import eval as E
import likelihood
import train
from tasks import scored_as

sf = selfies.encoder
MOLS = ["CCO", "c1ccccc1", "CC(=O)O", "CCN"]


def _write(root, recs, splits=("train", "test")):
    for split in splits:
        os.makedirs(root / split, exist_ok=True)
        for stem, rs in recs.items():
            rows = rs[split] if isinstance(rs, dict) else rs
            (root / split / f"{stem}.json").write_text(json.dumps(
                [{"instruction": i, "input": x, "output": y, "metadata": {"split": split}} for i, x, y in rows]))
    return str(root)


def _train(data_dir, out, tasks, steps, lr=1e-2):
    train.main(["--model", "tiny", "--data", data_dir, "--tasks", tasks, "--out", str(out), "--lora-r", "8",
                "--max-steps", str(steps), "--lr", str(lr), "--batch-size", "8", "--threads", "1",
                "--lora-dropout", "0", "--warmup-ratio", "0", "--max-len", "1024"])


def test_memorise_a_few_records_then_greedy_eval_reproduces_them(tmp_path):
    recs = {  # the same records in both splits: eval must give back exactly what was trained
        "forward_prediction": [("Predict the product.", f"{sf(a)}.{sf('O')}", sf(a)) for a in MOLS[:2]],
        "molcap": [("", sf(a), f"Molecule {i}: {a}.") for i, a in enumerate(MOLS[1:3])],
        "IUPAC2SELFIES": [("Give the SELFIES.", f"name-{i}", sf(a)) for i, a in enumerate(MOLS[2:])],
        "Molecular_Weight": [("What is the molecular weight?", sf(a), w) for a, w in zip(MOLS[:2], ("46.07", "78.11"))],
    }
    data_dir, tasks = _write(tmp_path / "data", recs), "forward,molcap,iupac,weight"
    _train(data_dir, tmp_path / "out", tasks, steps=150)
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["ce"] < 0.5 < log[0]["ce"]
    res = E.main(["--ckpt", str(tmp_path / "out"), "--data", data_dir, "--tasks", tasks, "--greedy", "--no-roundtrip"])
    rows = [json.loads(line) for line in (tmp_path / "out" / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 8
    assert [r["prediction"] for r in rows] == [r["reference"] for r in rows]
    assert res["forward"]["Exact Match (InChI, all items)"] == 1.0 and res["weight"]["Average MAE"] == 0.0
    # held-out here = the training items: the trained loss is far below the step-0 model's
    assert all(res[t][E.NLL] < 0.5 < res[t][E.NLL_UNTRAINED] for t in ("forward", "molcap", "iupac", "weight"))


def test_heldout_loss_after_training_is_below_the_untrained_loss(tmp_path):
    # a learnable rule: the answer is "[C]" when the name is a number (8 digits), "[O]" when it is a word (8
    # letters from QXZKJV, none of which occur elsewhere in the prompt); test names are unseen. Balanced
    # classes, so a model that learns only the answer format and the class prior scores the class token at
    # >= ln 2 nats and half the test items: the rule must be learned to pass the class-token checks below.
    # (A rule hidden in few characters, "[C]" iff a 3-letter name holds an "a" or ends in a-d, stayed at
    # that prior level after 300 steps: the frozen random attention over the ~230-token prompt dilutes them.)
    rng = random.Random(0)
    names = {al: set() for al in ("0123456789", "QXZKJV")}
    for al, got in names.items():
        while len(got) < 132:
            got.add("".join(rng.choice(al) for _ in range(8)))
    split = {"train": [], "test": []}
    for got in names.values():  # 32 test names of each class, the other 100 of each to train on
        ws = sorted(got)
        rng.shuffle(ws)
        for k, part in (("test", ws[:32]), ("train", ws[32:])):
            split[k] += [("Classify the name.", w, "[C]" if w.isdigit() else "[O]") for w in part]
    for part in split.values():
        rng.shuffle(part)
    data_dir = _write(tmp_path / "data", {"IUPAC2SELFIES": split})
    _train(data_dir, tmp_path / "out", "iupac", steps=100)
    step_dir = checkpoint.resolve(str(tmp_path / "out"))
    trained, tok, meta = checkpoint.load_model(step_dir, "cpu", torch.float32, log=lambda *a: None)
    test = data.load_tasks("iupac", split="test", data=data_dir, verbose=False)
    assert {s.answer for s in test} <= {"[C]", "[O]"} and not {s.prompt for s in test} & {
        s.prompt for s in data.load_tasks("iupac", split="train", data=data_dir, verbose=False)}
    items = [(s.prompt, data.featurize(s)) for s in test]
    with torch.no_grad():
        after = likelihood.heldout_nll(trained, tok, test, scored_as)["iupac"]
        untrained, _ = checkpoint.build_model(meta, "cpu", torch.float32)
        before = likelihood.heldout_nll(untrained, tok, test, scored_as)["iupac"]
        # log p of the class token (answer token 1, after "[") for the right and for the wrong class
        right = [float(lp[1]) for lp in likelihood.answer_logprobs(trained, tok, items, [s.answer for s in test])]
        wrong = [float(lp[1]) for lp in likelihood.answer_logprobs(
            trained, tok, items, ["[O]" if s.answer == "[C]" else "[C]" for s in test])]
    # 4 answer tokens ("[", C/O, "]", end): untrained ~ ln(320) + logit spread; the format alone is ~free
    assert before > 5.0
    assert after < 0.5 * before and after < 1.0
    # the rule, not just format + prior: the best prior-only class NLL on this test set is its class entropy
    p = sum(s.answer == "[C]" for s in test) / len(test)
    prior_nll = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    assert p == 0.5 and abs(prior_nll - math.log(2)) < 1e-9
    class_nll = -sum(right) / len(test)
    accuracy = sum(r > w for r, w in zip(right, wrong)) / len(test)
    assert class_nll < 0.25 * prior_nll and accuracy >= 0.9, (class_nll, prior_nll, accuracy)
