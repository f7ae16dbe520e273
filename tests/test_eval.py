"""eval.py: `--score` on a small fixed file reproduces hand-computed values (both scoring modes);
malformed input is a named error; a tiny checkpoint end to end (eval_data_folder, tiny_checkpoint:
conftest.py)."""
import copy
import json
import os
import shutil
import subprocess
import sys

import pytest
import selfies
import torch

import checkpoint
import data
import eval as E
import likelihood
import molecule
import moge
import report
import significance as S
import train
from tasks import TASKS, scored_as
from tokenizer import IGNORE_INDEX, byte_level_tokenizer
ETHANOL = selfies.encoder("CCO")
CAPTION = "a primary alcohol"
FIXED = [  # (task, prompt, prediction, reference)
    ("forward", "reactants", ETHANOL, ETHANOL),
    ("forward", "reactants", "[C][invalid]", ETHANOL),
    ("logp", "LogP?", "0.5", "-0.5"),
    ("logp", "LogP?", "about 2 units", "2.5"),
    ("homolumo", "What is the HOMO energy?", "-0.24", "-0.25"),
    ("yield_BH", "yield?", "1", "1"), ("yield_BH", "yield?", "2", "2"), ("yield_BH", "yield?", "3", "3"),
    ("yield_BH", "yield?", "5", "4"),
    ("molcap", "describe", CAPTION, CAPTION),
]


def _write(path, rows):
    with open(path, "w") as f:
        for i, (task, prompt, pred, ref) in enumerate(rows):
            f.write(json.dumps({"task": task, "id": i, "prompt": prompt, "prediction": pred, "reference": ref}) + "\n")


def test_score_fixed_file_reproduces_known_values(repo, tmp_path):
    pred_file = tmp_path / "predictions.jsonl"
    _write(pred_file, FIXED)
    out = subprocess.run([sys.executable, os.path.join(repo, "eval.py"), "--score", str(pred_file)],
                         capture_output=True, text=True, cwd=repo, timeout=300)
    assert out.returncode == 0, out.stderr
    scored = tmp_path / "predictions_scored"  # FILE_scored/ beside the file, never over a model eval's results
    assert not (tmp_path / "results.json").exists()
    res = json.loads((scored / "results.json").read_text())
    assert res["forward"]["Validity"] == 0.5 and res["forward"]["Exact Match (InChI)"] == 1.0
    assert res["forward"]["Exact Match (InChI, all items)"] == 0.5
    assert res["logp"]["Average MAE"] == pytest.approx((1.0 + 0.5) / 2)    # signed: |0.5 - (-0.5)|, |2 - 2.5|
    assert res["homolumo"]["HOMO MAE"] == pytest.approx(0.01)
    assert res["yield_BH"]["R2 Score"] == pytest.approx(0.8)
    assert res["molcap"]["BLEU-4"] == pytest.approx(0.0, abs=1e-12)  # no 4-gram in 3 tokens: unsmoothed BLEU-4 ~ 0
    assert res["molcap"]["BLEU-2"] == pytest.approx(1.0) and res["molcap"]["ROUGE-L"] == pytest.approx(1.0)
    assert res["_meta"]["release_compat"] is False and "wordpunct" in res["_meta"]["text tokens"]
    md = (scored / "results.md").read_text()
    # the paper's number beside ours, and beside both the release's scoring of our answers (like for like)
    assert "### logp" in md and "| Average MAE | 0.7500 | 0.2500 | 0.49 |" in md
    assert "| Validity | 1.0000 |  |  |" in md  # no paper number: no compat value either

    # the release's scoring, like for like
    rel = E.main(["--score", str(pred_file), "--release-compat", "--out", str(tmp_path / "rel")])
    assert rel["logp"]["Average MAE"] == pytest.approx((0.0 + 0.5) / 2)     # sign lost on both sides
    assert rel["molcap"]["ROUGE-1"] == pytest.approx(0.75)                  # "eot id" counted as words
    assert rel["forward"] == res["forward"]


def test_score_with_an_llm_tokenizer(tmp_path):
    tok = tmp_path / "tokenizer.json"
    byte_level_tokenizer(["<|im_end|>"]).save(str(tok))
    _write(tmp_path / "p.jsonl", [("molcap", "describe", "ab", "ab")])
    res = E.main(["--score", str(tmp_path / "p.jsonl"), "--tokenizer", str(tmp_path)])
    assert res["molcap"]["BLEU-2"] == pytest.approx(1.0)   # two byte tokens, both bigram orders match
    assert "LLM tokenizer" in res["molcap"]["notes"][0]


def test_malformed_predictions_are_named_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task": "forward", "prediction": "[C]", "reference": "[C]"}\n{not json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        E.main(["--score", str(bad)])
    bad.write_text('{"task": "forward", "prediction": "[C]"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: missing key\(s\) \['reference'\]"):
        E.main(["--score", str(bad)])


# --------------------------------------------------------------------- a checkpoint of the tiny model, end to end

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, eval_data_folder, tiny_checkpoint):
    root = tmp_path_factory.mktemp("tiny")
    data_dir = eval_data_folder(root / "data")
    tiny_checkpoint(root / "out", data_dir, step=1)                # older
    step_dir, saved = tiny_checkpoint(root / "out", data_dir, step=3)    # newest: the one eval must pick
    return root, step_dir, saved


def test_eval_tiny_checkpoint_end_to_end(tiny_run, capsys):
    root, step_dir, _ = tiny_run
    res = E.main(["--ckpt", str(root / "out"), "--limit", "2", "--max-new-tokens", "6", "--greedy",
                  "--batch-size", "2", "--tasks", "weight,retrosynthesis,molcap"])
    printed = capsys.readouterr().out
    assert f"loaded {step_dir / 'adapters.safetensors'}" in printed and f"loaded {step_dir / 'meta.json'}" in printed
    ev = root / "out" / "eval"
    rows = [json.loads(line) for line in (ev / "predictions.jsonl").read_text().splitlines()]
    assert sorted(r["task"] for r in rows) == ["molcap", "molcap", "retrosynthesis", "retrosynthesis", "weight",
                                               "weight"]
    assert all(set(r) == {"task", "id", "prompt", "prediction", "reference", "answer nats", "answer tokens",
                          "answer nats untrained"} for r in rows)
    assert all(r["answer tokens"] > 0 and r["answer nats"] > 0 and r["answer nats untrained"] > 0 for r in rows)
    saved = json.loads((ev / "results.json").read_text())
    assert saved["_meta"]["checkpoint"].endswith("step_000003") and saved["_meta"]["items"] == 6
    assert {"weight", "retrosynthesis", "molcap"} <= set(res)
    assert "Round trip (forward reproduces product)" in res["retrosynthesis"]
    assert "rdkit: reference MAE" in res["weight"] and "LLM tokenizer" in res["molcap"]["notes"][0]
    assert "### retrosynthesis" in (ev / "results.md").read_text()
    # the written predictions score to the same numbers with --score and the same tokenizer choice
    rescored = report.score_rows(rows)
    assert rescored["weight"]["Average MAE"] == res["weight"]["Average MAE"]
    # baselines from the training split, on the same items, with the model's metric keys
    base = json.loads((ev / "baselines.json").read_text())
    assert set(base) - {"_selection"} == {"weight", "retrosynthesis"}
    assert "no baselines or answer budget for molcap" in printed
    assert set(base["weight"]) == {"mean", "median", "nearest neighbour"}
    assert set(base["retrosynthesis"]) == {"copy input", "nearest neighbour"}
    w = [float(r["reference"]) for r in rows if r["task"] == "weight"]
    mean = (60.10 + 78.11 + 151.16) / 3
    assert base["weight"]["mean"]["Average MAE"] == pytest.approx(sum(abs(x - mean) for x in w) / 2)
    assert base["weight"]["mean"].keys() <= saved["weight"].keys()
    # held-out answer NLL, trained and untrained, and the summary table
    for task in ("weight", "retrosynthesis", "molcap"):
        assert 0 < saved[task][E.NLL] < 20 and 0 < saved[task][E.NLL_UNTRAINED] < 20
    md = (ev / "results.md").read_text()
    assert "## Summary" in md and "| weight | 2 |" in md and "| Average MAE |" in md


def test_eval_loads_exactly_the_saved_adapters(tiny_run):
    _, step_dir, saved = tiny_run
    model, _, meta = checkpoint.load_model(str(step_dir), "cpu", torch.float32, log=lambda *a: None)
    got = moge.adapter_state_dict(model)
    assert set(got) == set(saved) and all(torch.equal(got[k], saved[k]) for k in saved)
    assert meta["step"] == 3


def test_batched_generation_equals_one_by_one(tiny_run):
    _, step_dir, _ = tiny_run
    model, tok, meta = checkpoint.load_model(str(step_dir), "cpu", torch.float32, log=lambda *a: None)
    samples = data.load_tasks("weight,molcap", split="test", data=meta["args"]["data"], verbose=False)
    items = [(s.prompt, data.featurize(s)) for s in samples]
    args = E.parse_args(["--greedy", "--max-new-tokens", "8"])
    args.batch_size = len(items)
    batched = E.generate_answers(model, tok, items, args, "cpu")
    args.batch_size = 1
    assert batched == E.generate_answers(model, tok, items, args, "cpu")


def test_missing_or_mismatched_checkpoint_fails_clearly(tmp_path, tiny_run):
    root, step_dir, _ = tiny_run
    with pytest.raises(FileNotFoundError, match="never falls back"):
        checkpoint.resolve(str(tmp_path))                       # an OUT folder without checkpoints
    broken = tmp_path / "step_000007"
    shutil.copytree(step_dir, broken)
    os.remove(broken / "adapters.safetensors")
    with pytest.raises(FileNotFoundError, match="missing: .*adapters.safetensors"):
        E.main(["--ckpt", str(broken), "--tasks", "weight", "--limit", "1"])
    shutil.copytree(step_dir, tmp_path / "other", dirs_exist_ok=True)
    meta = json.loads((tmp_path / "other" / "meta.json").read_text())
    meta["moge"]["r"] = 8                                          # adapters saved with r=4
    (tmp_path / "other" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="mis-shaped"):
        checkpoint.load_model(str(tmp_path / "other"), "cpu", torch.float32)
    meta["moge"]["r"] = 4
    meta["model_config"]["hidden_size"] = 128                     # trained on another base model
    (tmp_path / "other" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="not the one this checkpoint was trained on"):
        checkpoint.load_model(str(tmp_path / "other"), "cpu", torch.float32)


def test_torchrun_two_ranks_gather_the_same_answers(repo, tiny_run, tmp_path):
    root, _, _ = tiny_run
    args = ["--ckpt", str(root / "out"), "--limit", "2", "--max-new-tokens", "6", "--greedy", "--batch-size", "2",
            "--tasks", "weight,retrosynthesis,molcap", "--no-roundtrip"]
    E.main(args + ["--out", str(tmp_path / "one")])
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([torchrun, "--nproc_per_node=2", os.path.join(repo, "eval.py")] + args +
                         ["--out", str(tmp_path / "two")], capture_output=True, text=True, cwd=repo, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    one, two = ([json.loads(x) for x in (tmp_path / d / "predictions.jsonl").read_text().splitlines()]
                for d in ("one", "two"))
    assert len(one) == len(two) == 6
    nats = ("answer nats", "answer nats untrained")  # teacher-forced in other batches: equal up to fp32 rounding
    for a, b in zip(one, two):
        assert {k: v for k, v in a.items() if k not in nats} == {k: v for k, v in b.items() if k not in nats}
        assert all(a[k] == pytest.approx(b[k], rel=1e-5) for k in nats)
    assert json.loads((tmp_path / "two" / "results.json").read_text())["_meta"]["ranks"] == 2


def test_top_k_reaches_generation(tiny_run):
    _, step_dir, _ = tiny_run
    model, tok, meta = checkpoint.load_model(str(step_dir), "cpu", torch.float32, log=lambda *a: None)
    samples = data.load_tasks("weight,molcap", split="test", data=meta["args"]["data"], verbose=False)
    items = [(s.prompt, data.featurize(s)) for s in samples]
    assert E.parse_args([]).top_k == 50  # the release's (HF generate's default)
    greedy = E.generate_answers(model, tok, items, E.parse_args(["--greedy", "--max-new-tokens", "6"]), "cpu")
    top1 = E.parse_args(["--temperature", "2.0", "--top-k", "1", "--max-new-tokens", "6"])
    assert E.generate_answers(model, tok, items, top1, "cpu") == greedy  # k = 1: sampling is greedy
    hot = E.parse_args(["--temperature", "2.0", "--top-k", "0", "--max-new-tokens", "6"])
    assert E.generate_answers(model, tok, items, hot, "cpu") != greedy


def test_eval_uses_the_checkpoints_mol_format(tiny_run, tmp_path):
    root, step_dir, _ = tiny_run
    ck = tmp_path / "smiles_ckpt"
    shutil.copytree(step_dir, ck)
    meta = json.loads((ck / "meta.json").read_text())
    meta["args"]["mol_format"] = "smiles"
    (ck / "meta.json").write_text(json.dumps(meta))
    E.main(["--ckpt", str(ck), "--limit", "2", "--max-new-tokens", "4", "--greedy", "--tasks",
            "weight,retrosynthesis", "--out", str(tmp_path / "ev")])
    rows = [json.loads(line) for line in (tmp_path / "ev" / "predictions.jsonl").read_text().splitlines()]
    assert {r["prompt"].split()[-1] for r in rows if r["task"] == "weight"} == {"CCO", "CC(=O)Nc1ccc(O)cc1"}
    assert all("SMILES sequence" in r["prompt"] for r in rows if r["task"] == "weight")
    assert {r["reference"] for r in rows if r["task"] == "retrosynthesis"} == {"CC(=O)O.Nc1ccc(O)cc1"}
    assert json.loads((tmp_path / "ev" / "results.json").read_text())["_meta"]["mol_format"] == "smiles"


# ----------------------------------------------------------------------------- fast eval: merge, budgets, groups; NLL

def test_merged_adapters_give_the_unmerged_logits_and_answers(tiny_run):
    _, step_dir, _ = tiny_run
    model, tok, meta = checkpoint.load_model(str(step_dir), "cpu", torch.float32, log=lambda *a: None)
    merged = copy.deepcopy(model)
    assert moge.merge_adapters(merged) > 0 and moge.moge_layers(merged)  # dense GAL folded, MoGE still routed
    samples = data.load_tasks("weight,molcap,retrosynthesis", split="test", data=meta["args"]["data"], verbose=False)
    items = [(s.prompt, data.featurize(s)) for s in samples]
    ids = [tok.encode_chat(u)[0] for u, _ in items]
    with torch.no_grad():
        outs = []
        for m in (model, merged):
            emb, mask, _ = molecule.embed_inputs(m, ids, [g for _, g in items], padding_side="left")
            outs.append(m(inputs_embeds=emb, attention_mask=mask))
    scale = outs[0].abs().max().item()
    assert (outs[0] - outs[1]).abs().max().item() <= 1e-5 * scale   # fp32 rounding of W + gamma B A
    assert (outs[0] - outs[1]).abs().max().item() > 0 or scale == 0  # really a different computation
    args = E.parse_args(["--greedy", "--max-new-tokens", "8"])
    assert E.generate_answers(model, tok, items, args, "cpu") == E.generate_answers(merged, tok, items, args, "cpu")


def test_answer_budgets_and_task_grouped_batches(tiny_run):
    _, step_dir, _ = tiny_run
    model, tok, meta = checkpoint.load_model(str(step_dir), "cpu", torch.float32, log=lambda *a: None)
    train, _ = report.training_items(meta["args"]["data"], ["weight", "retrosynthesis"], log=lambda *a: None)
    budgets = data.answer_budgets(tok, train, cap=40, margin=3)
    want = {}
    for s in train:  # direct: tokens of the answer + its end token + margin, capped
        n = len(tok.tok.encode(s.answer, add_special_tokens=False).ids)
        want[s.task] = min(40, max(want.get(s.task, 0), n + 1 + 3))
    assert budgets == want and budgets["weight"] < 40 == budgets["retrosynthesis"]
    samples = data.load_tasks("weight,molcap,retrosynthesis", split="test", data=meta["args"]["data"], verbose=False)
    items, groups = [(s.prompt, data.featurize(s)) for s in samples], [s.task for s in samples]
    calls, generate = [], model.generate

    def spy(**kw):
        calls.append((len(kw["inputs_embeds"]), kw["max_new_tokens"]))
        return generate(**kw)
    model.generate = spy
    args = E.parse_args(["--greedy", "--max-new-tokens", "12", "--batch-size", "2"])
    grouped = E.generate_answers(model, tok, items, args, "cpu", groups=groups, budgets=budgets)
    # weight (3 items) -> batches of 2 + 1 at its budget; molcap (3) at the cap (no training split); retro (2)
    assert sorted(calls) == sorted([(2, budgets["weight"]), (1, budgets["weight"]), (2, 12), (1, 12),
                                    (2, budgets["retrosynthesis"])])
    model.generate = generate
    for i, (item, g) in enumerate(zip(items, groups)):  # = each item alone with its own budget
        args.max_new_tokens = budgets.get(g, 12)
        assert grouped[i] == E.generate_answers(model, tok, [item], args, "cpu")[0]


def test_heldout_nll_equals_the_training_loss(tiny_run):
    _, step_dir, _ = tiny_run
    model, tok, meta = checkpoint.load_model(str(step_dir), "cpu", torch.float32, log=lambda *a: None)
    samples = data.load_tasks("weight,molcap,retrosynthesis", split="test", data=meta["args"]["data"], verbose=False)
    per_item = {}
    got = likelihood.heldout_nll(model, tok, samples, scored_as, batch_size=2, per_item=per_item)
    assert set(per_item) == {s.id for s in samples}
    step = train.TrainStep(model).eval()  # the training loss: per-sample CE sums over the answer tokens
    for task in ("weight", "molcap", "retrosynthesis"):
        mine = [s for s in samples if s.task == task]
        b = data.collate(mine, tok)
        with torch.no_grad():
            ce, _, _ = step(b["input_ids"], b["labels"], b["graphs"])
        n = [int(sum(y != IGNORE_INDEX for y in lab)) for lab in b["labels"]]
        assert got[task] == pytest.approx(ce.sum().item() / sum(n), rel=1e-5)
        for s, c, k in zip(b["samples"], ce.tolist(), n):  # each item's sums: its own training loss
            assert per_item[s.id][0] == pytest.approx(c, rel=1e-5) and per_item[s.id][1] == k
    fresh, _ = checkpoint.build_model(meta, "cpu", torch.float32)  # step-0 adapters: B = 0, not the checkpoint's
    assert all(float(p.detach().abs().sum()) == 0 for n, p in fresh.named_parameters() if n.endswith(("lora_B", "_B")))
    assert likelihood.heldout_nll(fresh, tok, samples, scored_as)["weight"] != pytest.approx(got["weight"])


def test_median_of_sampled_numbers():
    assert E.median_answer("weight", ["377.34", "about 277.3 g/mol", "x", "300.12"]) == "300.12"
    assert E.median_answer("weight", ["10", "20"]) == "15"                                  # no decimals seen
    assert E.median_answer("homolumo", ["-0.2242", "-0.2", "0.3 Ha", "-0.25"]) == "-0.2242"  # strict floats only
    assert E.median_answer("yield", ["none", "n/a"]) == "none"                               # nothing to read


def test_numeric_samples_reach_generation(tiny_run):
    _, step_dir, _ = tiny_run
    model, tok, _ = checkpoint.load_model(str(step_dir), "cpu", torch.float32, log=lambda *a: None)
    args = E.parse_args(["--numeric-samples", "3", "--max-new-tokens", "4", "--batch-size", "2"])
    calls = []
    orig = model.generate

    def spy(**kw):
        calls.append((kw["inputs_embeds"].shape[0] * kw.get("num_samples", 1), kw["temperature"]))
        return orig(**kw)
    model.generate = spy
    items = [("What is the molecular weight? [C][C][O]", None)] * 2 + [("Describe [C][C][O]", None)]
    E.generate_answers(model, tok, items, args, "cpu", groups=["weight", "weight", "molcap"])
    assert sorted(calls) == sorted([(6, 1.0), (1, 0.2)])   # 2 weight prompts x 3 samples at T=1; molcap once at T=0.2


def test_score_reports_intervals_verdicts_and_collapse(tmp_path, eval_data_folder):
    """--score with --data: every task gets its interval, the best baseline chosen on the training split, the
    paired verdict, Spearman for numbers and distinct answers; a constant answer shows 1 distinct answer."""
    root = eval_data_folder(tmp_path / "data")
    rows = [{"task": "weight", "id": f"w{i}", "prompt": "<mol>\nWhat is the molecular weight of this molecule? "
             f"The molecule SELFIES sequence is: {selfies.encoder(m)}", "prediction": "151.16", "reference": w}
            for i, (m, w) in enumerate((("CCO", "46.07"), ("CC(=O)Nc1ccc(O)cc1", "151.16"), ("c1ccccc1O", "94.11")))]
    pred = tmp_path / "p.jsonl"
    pred.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = E.main(["--score", str(pred), "--data", str(root), "--out", str(tmp_path / "o")])
    w = res["weight"]
    assert w[S.DISTINCT] == 1 and w[S.DISTINCT_REF] == 3 and w[S.SPEARMAN] is None  # constant: rho undefined
    assert w[S.BEST] in ("mean", "median", "nearest neighbour") and w[S.VERDICT] == "no" and len(w[S.DIFF_CI]) == 2
    base = json.loads((tmp_path / "o" / "baselines.json").read_text())
    assert base["_selection"]["weight"]["best"] == w[S.BEST] and S.CI in base["weight"]["mean"]
    md = (tmp_path / "o" / "results.md").read_text()
    assert "beats baseline" in md and "paired bootstrap" in md


def test_digit_expectation_against_substituted_digit_likelihoods(tiny_run):
    """Each digit's expectation equals sum_d d * p(d | prompt, answer prefix) / sum_d p(d | ...), the p read
    by likelihood.answer_logprobs on the answer prefix with each digit substituted (an independent path)."""
    _, step_dir, _ = tiny_run
    model, tok, _ = checkpoint.load_model(str(step_dir), "cpu", torch.float32, log=lambda *a: None)
    digit = [tok.tok.token_to_id(str(d)) for d in range(10)]
    if None in digit:
        pytest.skip("tiny tokenizer has no single-digit tokens")
    prompts = ["What is the molecular weight of [C][C][O]?", "The LogP of [O]?", "Say no."]
    answers = ["about -12.5 g", "3", "no"]
    ids = [tok.encode_chat(p)[0] for p in prompts]
    gens = [tok.encode(a) for a in answers]
    got = E.digit_expectation(model, tok, ids, [None] * 3, gens)
    assert got[2] is None
    unknown = tok.tok.get_vocab_size()  # an id past the tokenizer (a model's output layer may be larger): no crash
    assert E.digit_expectation(model, tok, ids[:1], [None], [gens[0] + [unknown]])[0] == got[0]
    for b, (p, g) in enumerate(zip(prompts[:2], gens[:2])):
        pieces = [tok.tok.id_to_token(t) for t in g]
        if not all(len(pieces[j]) == 1 for j, s in enumerate(pieces) if any(c.isdigit() for c in s)):
            pytest.skip("tiny tokenizer merges digits")
        want, place = 0.0, None
        js = [j for j, s in enumerate(pieces) if s.isdigit()]
        run = "".join(pieces[js[0]:js[-1] + 1])
        n_int = run.index(".") if "." in run else len(run)
        k = 0
        for j in range(js[0], js[-1] + 1):
            if pieces[j] == ".":
                continue
            lps = likelihood.answer_logprobs(model, tok, [(p, None)] * 10, [None] * 10,
                                             answer_ids=[g[:j] + [digit[d]] for d in range(10)])
            pd = torch.tensor([float(lp[-1].exp()) for lp in lps], dtype=torch.float64)
            place = n_int - 1 - k if k < n_int else -(k - n_int + 1)
            want += float((pd / pd.sum() * torch.arange(10)).sum()) * 10.0 ** place
            k += 1
        sign = -1 if "-" in pieces[js[0] - 1:js[0]] else 1
        decimals = len(run) - n_int - 1 if "." in run else 0      # the answer keeps its shape: rounding only
        assert float(got[b]) == pytest.approx(sign * want, abs=0.5 * 10.0 ** -decimals + 1e-9)


def test_numeric_tasks_are_the_numeric_kinds():
    sets = set(TASKS) | {"yield_BH", "yield_SM"}
    assert {t for t in sets if E.numeric_task(t)} == {"weight", "tpsa", "logp", "homolumo", "yield", "yield_BH",
                                                      "yield_SM"}
    assert not E.numeric_task("")  # generate_answers' groups when the caller gives none
