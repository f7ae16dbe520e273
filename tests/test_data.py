"""data.py: the release's prompts per task, readers and name maps, answer-only masking, bad input,
ratios, DDP sharding and exact resume, the demo data (no leakage), and a smoke test on real files."""
import csv
import json
import os
import random

import numpy as np
import pytest

import chem
import data
import demo_data
import model
import molecule
import readers
import tasks
import tokenizer
from tasks import GRAPH, TASKS
from tokenizer import MOL_PLACEHOLDER as MOL
from tokenizer import Tokenizer, byte_level_tokenizer

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")

# hand-made SELFIES (ethanol, bromoethane, phenol, ...)
ETOH, BRET, PHOH, NA = "[C][C][O]", "[C][C][Br]", "[O][C][=C][C][=C][C][=C][Ring1][=Branch1]", "[Na+1]"


@pytest.fixture(scope="session")
def tok():
    return model.load_model("tiny")[1]


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """The demo recipe at ~1/5 size (the full one takes 1-2 minutes), read back like any data folder."""
    root = str(tmp_path_factory.mktemp("demo") / "demo")
    demo_data.build_demo(root, small=True, verbose=False)
    return data.resolve_data(root)


def rec(instruction, inp, output, split="train", **kw):
    meta = {"split": split, **kw.pop("meta", {})}
    return {"instruction": instruction, "input": inp, "output": output, "metadata": meta, **kw}


# ----------------------------------------------------------------------------- prompts (the release's texts)

# (task, record, expected user turn, expected graph-source SMILES); "<image>\n" written as GRAPH = MOL + "\n"
CASES = [
    ("forward", rec("What is the product?", f"{BRET}.{PHOH}.{NA}", ETOH),
     GRAPH + f"What is the product? {BRET}.{PHOH}.{NA}", "CCBr"),
    ("reagent", rec("Suggest reagents.", f"{BRET}.{PHOH}>>{ETOH}", NA),
     GRAPH + f"Suggest reagents. The reaction is {BRET}.{PHOH}>>{ETOH}", "CCBr.OC1=CC=CC=C1"),
    ("retrosynthesis", rec("Propose reactants.", ETOH, BRET),
     GRAPH + f"Propose reactants. The product is: {ETOH}", "CCO"),
    ("solvent", rec("Which solvent?", f"{BRET}>>{ETOH}", "[O]"),
     GRAPH + f"Which solvent? The reaction is {BRET}>>{ETOH}.", "CCBr"),
    ("catalyst", rec("Which catalyst?", f"{BRET}.{PHOH}>>{ETOH}", "[Pd]"),
     GRAPH + f"Which catalyst? The reaction is {BRET}.{PHOH}>>{ETOH}.", "CCBr.OC1=CC=CC=C1"),
    ("molediting", rec("Raise its QED.", PHOH, ETOH),
     GRAPH + f"Raise its QED. The compound SELFIES sequence is: {PHOH}", "OC1=CC=CC=C1"),
    ("homolumo", rec("What is the LUMO energy?", ETOH, -0.0613),
     GRAPH + f"What is the LUMO energy? The compound SELFIES sequence is: {ETOH}", "CCO"),
    ("weight", rec("Molecular weight?", f"{ETOH}.{NA}", "46.1 g/mol", meta={"task": "Molecular Weight"}),
     GRAPH + f"Molecular weight? The molecule SELFIES sequence is: {ETOH}.{NA}", "CCO.[Na+1]"),
    ("tpsa", rec("TPSA?", f"{ETOH}.{NA}", "20.2", meta={"task": "Topological Polar Surface Area"}),
     GRAPH + f"TPSA? The compound SELFIES sequence is: {ETOH}.{NA}", "CCO"),
    ("logp", rec("LogP?", f"{ETOH}.{NA}", "-0.1", meta={"task": "LogP"}),
     GRAPH + f"LogP? The molecule SELFIES sequence is: {ETOH}.{NA}", "CCO.[Na+1]"),
    ("yield", rec("Predict the yield.", f"{BRET}.{PHOH}>>{ETOH}", 42.7),
     GRAPH + f"Predict the yield. The reaction is {BRET}.{PHOH}>>{ETOH}.", "CCBr.OC1=CC=CC=C1"),
    ("dqa", rec("Which groups?", f"{ETOH}.{NA}", "An alcohol.", meta={"task": "Description"}),
     GRAPH + f"Which groups? The compound SELFIES sequence is: {ETOH}.{NA}", "CCO"),
    ("experiment", rec("Predict the procedure: ", "$1$.$2$>>$-1$", "ADD $1$ ; ADD $2$ ; YIELD $-1$",
                       extracted_molecules={"CCO": "$1$", "CC(=O)Cl": "$2$", "CCOC(C)=O": "$-1$"}),
     GRAPH + "Predict the procedure: $1$.$2$>>$-1$. The Action Sequence: ", "CCO.CC(=O)Cl"),
    ("iupac", rec("Give the SELFIES.", "propan-1-ol", "[C][C][C][O]"),
     "Give the SELFIES. The IUPAC name is: propan-1-ol", None),
    ("textguidedmolgen", rec("Design a molecule.", "A short alcohol.", "[C][C][C][O]"),
     "Design a molecule. The description is: A short alcohol.", None),
]


def test_sixteen_tasks():
    assert len(TASKS) == 16 and len(CASES) + 1 == 16  # molcap has its own test
    assert {s for t in TASKS.values() for s in t.code_eval} >= {"yield_BH", "yield_SM"}
    assert set(TASKS["yield"].released["test"]) == {"yield_BH", "yield_SM"}


@pytest.mark.parametrize("key,record,prompt,smiles", CASES, ids=[c[0] for c in CASES])
def test_prompt_equals_release(key, record, prompt, smiles):
    task = TASKS[key]
    assert tasks.build_prompt(task, record) == prompt
    assert tasks.graph_source(task, record) == smiles
    s = data.make_sample(task, record, key, "x:1")
    assert s.answer == str(record["output"])
    assert s.prompt.count(MOL) == (0 if smiles is None else 1)


def test_molcap_prompt_ignores_instruction():
    r = rec("IGNORED", ETOH, "The molecule is ethanol.")
    p = tasks.build_prompt(TASKS["molcap"], r, random.Random(0))
    q = p[len(GRAPH):].split(" The compound sequence is: ")
    assert p.startswith(GRAPH) and q[0] in tasks.MOLCAP_QUESTIONS and q[1] == ETOH and "IGNORED" not in p
    # deterministic per sample id and seed
    a = data.make_sample(TASKS["molcap"], r, "molcap", "f:1", seed=1).prompt
    assert a == data.make_sample(TASKS["molcap"], r, "molcap", "f:1", seed=1).prompt


def test_selfies_smiles_roundtrip():
    assert chem.selfies_to_smiles(chem.smiles_to_selfies("CC(=O)O")) == "CC(=O)O"
    with pytest.raises(ValueError):
        chem.selfies_to_smiles("[C][Xx9]")
    with pytest.raises(ValueError):
        chem.smiles_to_selfies("not a smiles")


# ----------------------------------------------------------------------------- chat encoding

def test_answer_only_masking(tok):
    for key in ("forward", "homolumo", "textguidedmolgen"):
        s = data.make_sample(TASKS[key], next(c[1] for c in CASES if c[0] == key), key, "x:1")
        ids, labels = data.encode(s, tok)
        sup = [i for i, lab in enumerate(labels) if lab != tokenizer.IGNORE_INDEX]
        assert sup == list(range(sup[0], len(ids))), "only one contiguous supervised span, at the end"
        assert [ids[i] for i in sup] == [labels[i] for i in sup]
        assert tok.decode(ids[sup[0]:], skip_special_tokens=True) == s.answer
        assert ids[-1] == tok.eot_id  # the end-of-turn closing the answer is supervised too
        assert ids.count(tokenizer.MOL_TOKEN_ID) == (0 if s.smiles is None else 1)
        assert labels[ids.index(tokenizer.MOL_TOKEN_ID)] == tokenizer.IGNORE_INDEX if s.smiles else True
        # the prompt alone is the same prefix (what eval generates from)
        p_ids, p_labels = data.encode(s, tok, with_answer=False)
        assert p_ids == ids[: len(p_ids)] and set(p_labels) == {tokenizer.IGNORE_INDEX}
        # length counts N atom tokens for the placeholder
        expect = len(ids) - 1 + s.n_atoms if s.smiles else len(ids)
        assert data.sample_length(s, tok) == expect


# ----------------------------------------------------------------------------- readers and name maps

def write(path, recs, jsonl=False):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        if jsonl:
            f.write("\n".join(json.dumps(r) for r in recs) + "\n")
        else:
            json.dump(recs, f)


def test_published_and_code_layouts(tmp_path):
    fw = [rec("Product?", f"{BRET}.{PHOH}", ETOH, "train"), rec("Product?", PHOH, ETOH, "test")]
    moit = [rec("MW?", ETOH, "46.07", s, meta={"task": "Molecular Weight"}) for s in ("train", "test")] + \
           [rec("LogP?", ETOH, "-0.0", s, meta={"task": "LogP"}) for s in ("train", "test")] + \
           [rec("TPSA?", ETOH, "20.23", "train", meta={"task": "Topological Polar Surface Area"})]
    yb = [rec("Yield?", f"{BRET}>>{ETOH}", 50.0, "test")]
    # published: train/<name>.json, test/<name>.json (JSON lines work too)
    pub = tmp_path / "pub"
    write(str(pub / "train" / "forward_prediction.json"), fw)
    write(str(pub / "test" / "forward_prediction.jsonl"), fw, jsonl=True)
    write(str(pub / "train" / "Molecular_Weight.json"), moit[:1])
    write(str(pub / "test" / "yield_regression_BH.json"), yb)
    write(str(pub / "test" / "yield_regression_SM.json"), yb + yb)
    assert len(data.load_tasks("forward", "train", str(pub), verbose=False)) == 1
    assert len(data.load_tasks("forward", "test", str(pub), verbose=False)) == 1
    assert len(data.load_tasks("weight", "train", str(pub), verbose=False)) == 1
    ys = data.load_tasks("yield", "test", str(pub), verbose=False)
    assert sorted(s.eval_set for s in ys) == ["yield_BH", "yield_SM", "yield_SM"]
    # the release code: train/ by substring, evaluate/ by its file names, one 3D-MoIT file filtered by task
    code = tmp_path / "code"
    write(str(code / "train" / "forward_reaction_prediction_train.json"), fw)
    write(str(code / "train" / "3d_moit_no_homolumo_filtered.json"), moit)
    write(str(code / "evaluate" / "3d_moit_no_homolumo_filtered_test.json"), moit)
    write(str(code / "evaluate" / "forward_reaction_prediction.json"), fw)
    assert [s.eval_set for s in data.load_tasks("forward", "test", str(code), verbose=False)] == ["forward"]
    got = {k: len(data.load_tasks(k, "train", str(code), verbose=False)) for k in ("weight", "logp", "tpsa")}
    assert got == {"weight": 1, "logp": 1, "tpsa": 1}
    assert len(data.load_tasks("logp", "test", str(code), verbose=False)) == 1
    with pytest.raises(FileNotFoundError, match="retrosynthesis"):
        data.load_tasks("retrosynthesis", "train", str(code), verbose=False)


def test_malformed_json_names_file_and_line(tmp_path):
    p = tmp_path / "train" / "forward_prediction.json"
    os.makedirs(p.parent)
    p.write_text(json.dumps(rec("a", ETOH, ETOH)) + "\n" + json.dumps(rec("b", ETOH, ETOH)) + "\n{broken\n")
    with pytest.raises(ValueError, match=r"forward_prediction\.json: line 3"):
        data.load_tasks("forward", "train", str(tmp_path), verbose=False)
    p.write_text('[\n{"instruction": "a", "input": "[C]", "output": "[C]", "metadata": {"split": "train"}},\n{oops}\n]')
    with pytest.raises(ValueError, match=r"forward_prediction\.json: line 3"):
        readers.read_records(str(p))


def test_bad_records_skipped_and_counted(tmp_path, capsys):
    recs = [rec("ok", ETOH, BRET), rec("ok", PHOH, ETOH),
            rec("bad", "[C][Xx9]", ETOH),           # undecodable SELFIES
            rec("bad", "[C][=C][=C][=C][C]", ""),   # empty answer
            rec("bad", ETOH, None),                 # empty answer
            {"instruction": "bad", "input": ETOH, "metadata": {"split": "train"}},  # no output
            rec("bad", ["not", "a", "string"], ETOH)]
    write(str(tmp_path / "train" / "retrosynthesis.json"), recs)
    write(str(tmp_path / "train" / "yield_regression.json"), [rec("y", ETOH, 1.0), rec("y", f"{ETOH}>>{ETOH}", 3.0)])
    rep = data.Report()
    out = data.load_tasks("retrosynthesis,yield", "train", str(tmp_path), report=rep)
    assert len(out) == 3
    assert rep.skipped == {"retrosynthesis": 5, "yield": 1}
    assert rep.counts["retrosynthesis"]["empty answer"] == 2
    assert rep.counts["yield"]["reaction input without '>>'"] == 1
    printed = capsys.readouterr().out
    assert "retrosynthesis" in printed and "5 skipped" in printed and "retrosynthesis.json:3" in printed


def test_graph_cache(tmp_path, monkeypatch):
    """Big files keep the costly part (SELFIES decode, rdkit parse) in a cache; a changed file is re-read."""
    monkeypatch.setattr(data, "CACHE_MIN_RECORDS", 2)
    monkeypatch.setenv("OMNIMOL_CACHE", str(tmp_path / "cache"))
    path = str(tmp_path / "train" / "retrosynthesis.json")
    write(path, [rec("r", ETOH, BRET), rec("r", "[C][Xx9]", ETOH), rec("r", PHOH, ETOH)])
    first = data.load_tasks("retrosynthesis", "train", str(tmp_path), verbose=False)
    assert len(os.listdir(tmp_path / "cache")) == 1
    real = data.graph_info
    monkeypatch.setattr(data, "graph_info", lambda *a: pytest.fail("cache not used"))
    rep = data.Report()
    again = data.load_tasks("retrosynthesis", "train", str(tmp_path), verbose=False, report=rep)
    assert [(s.id, s.smiles, s.n_atoms, s.prompt) for s in again] == [(s.id, s.smiles, s.n_atoms, s.prompt)
                                                                      for s in first]
    assert rep.skipped == {"retrosynthesis": 1}
    monkeypatch.setattr(data, "graph_info", real)
    write(path, [rec("r", PHOH, ETOH)] * 3)
    os.utime(path, ns=(1, 1))  # a different file (size and mtime): recomputed
    again = data.load_tasks("retrosynthesis", "train", str(tmp_path), verbose=False)
    assert [s.smiles for s in again] == ["OC1=CC=CC=C1"] * 3


def test_overlong_dropped_never_cut(tmp_path, tok):
    big = "[C]" * 300  # 300 atoms: the placeholder alone expands past a small max_len
    write(str(tmp_path / "train" / "retrosynthesis.json"), [rec("r", ETOH, BRET), rec("r", big, ETOH)])
    rep = data.Report()
    out = data.load_tasks("retrosynthesis", "train", str(tmp_path), tokenizer=tok, max_len=250, report=rep,
                          verbose=False)
    assert [s.smiles for s in out] == ["CCO"] and out[0].length <= 250
    assert rep.counts["retrosynthesis"]["longer than 250 tokens"] == 1


def test_unknown_task_lists_valid_keys():
    with pytest.raises(ValueError) as e:
        data.parse_tasks("forward,retro")
    assert "'retro'" in str(e.value) and all(k in str(e.value) for k in TASKS)
    for bad in ("forward:0", "forward:1.5", "forward:x"):
        with pytest.raises(ValueError, match="forward"):
            data.parse_tasks(bad)


def test_ratios(tmp_path):
    assert data.parse_tasks("all") == {k: 1.0 for k in TASKS}
    assert data.parse_tasks("forward:0.5, yield") == {"forward": 0.5, "yield": 1.0}
    write(str(tmp_path / "train" / "retrosynthesis.json"), [rec(f"r{i}", ETOH, BRET) for i in range(40)])
    a = data.load_tasks("retrosynthesis:0.25", "train", str(tmp_path), seed=1, verbose=False)
    b = data.load_tasks("retrosynthesis:0.25", "train", str(tmp_path), seed=1, verbose=False)
    c = data.load_tasks("retrosynthesis:0.25", "train", str(tmp_path), seed=2, verbose=False)
    assert len(a) == 10 and [s.id for s in a] == [s.id for s in b] and [s.id for s in a] != [s.id for s in c]


# ----------------------------------------------------------------------------- batches, DDP, resume

def _samples(n):
    return [data.Sample("retrosynthesis", "retrosynthesis", f"f:{i}", MOL + "q " + ETOH * (i % 7), BRET, "CCO", 3)
            for i in range(n)]


def test_sharding_and_length_grouping(tok):
    ss = _samples(103)
    world, bs = 2, 4
    loaders = [data.Loader(ss, tok, bs, rank=r, world_size=world, seed=3, order="length", graphs=False)
               for r in range(world)]
    plans = [ld.plan(0) for ld in loaders]
    assert len(plans[0]) == len(plans[1]) == 103 // (bs * world)
    seen = [i for p in plans for b in p for i in b]
    assert len(seen) == len(set(seen)) == 12 * 8  # disjoint across ranks, last partial global batch dropped
    assert loaders[0].plan(1) != plans[0]  # a new order each epoch
    # length grouping: batches are more uniform in length than the (default) uniform ones
    def spread(loader):
        return sum(max(loader.lengths[b]) - min(loader.lengths[b]) for b in loader.plan(0))
    uniform = data.Loader(ss, tok, bs, world_size=world, seed=3, graphs=False)
    assert spread(loaders[0]) < spread(uniform) / 2
    full = data.Loader(ss, tok, bs, world_size=world, seed=3, drop_last=False, graphs=False)
    assert len(full) == 13
    with pytest.raises(ValueError, match="order"):
        data.Loader(ss, tok, bs, order="sorted")


def test_uniform_order_is_the_release_permutation_and_mixes_tasks(tok):
    # 4 tasks whose lengths differ by task (as on real data): uniform batches mix them, length batches do not
    keys = ["forward", "molcap", "logp", "experiment"]
    ss = [data.Sample(keys[i % 4], keys[i % 4], f"f:{i}", GRAPH + "q" * (10 + 200 * (i % 4)), "a", "CCO", 3)
          for i in range(256)]
    world, bs, seed = 2, 8, 7
    uni = [data.Loader(ss, tok, bs, rank=r, world_size=world, seed=seed, graphs=False) for r in range(world)]
    G = bs * world
    for epoch in (0, 1):  # a direct computation: one seeded permutation of everything, cut into global batches
        perm = np.random.default_rng([seed, epoch]).permutation(len(ss))
        glob = perm[: len(ss) // G * G].reshape(-1, G)
        for r in range(world):
            assert uni[r].plan(epoch) == [b[r::world].tolist() for b in glob]
    mixed = lambda ld: sum(len({ss[i].task for i in b}) > 1 for b in ld.plan(0)) / len(ld.plan(0))  # noqa: E731
    by_len = data.Loader(ss, tok, bs, world_size=world, seed=seed, order="length", graphs=False)
    assert mixed(uni[0]) == 1.0 and mixed(by_len) < 0.3
    batch = next(iter(uni[0]))
    assert len(set(batch["tasks"])) > 1  # the batches train.py sees


@pytest.mark.parametrize("order", ["uniform", "length"])
def test_resume_exact(tok, order):
    ss = _samples(50) + [data.make_sample(TASKS["molcap"], rec("x", ETOH, f"cap {i}"), "molcap", f"m:{i}")
                         for i in range(10)]  # molcap prompts change per epoch: the resume must follow
    kw = dict(rank=1, world_size=2, seed=5, order=order, graphs=False)
    ref = data.Loader(ss, tok, 4, **kw)
    it = iter(ref)
    stream = [(b["ids"], b["input_ids"]) for b in (next(it) for _ in range(17))]  # crosses two epochs (7 steps each)
    for cut in (0, 3, 7, 11):
        a = data.Loader(ss, tok, 4, **kw)
        ia = iter(a)
        for _ in range(cut):
            next(ia)
        state = json.loads(json.dumps(a.state_dict()))  # it goes through meta.json
        b = data.Loader(ss, tok, 4, **kw)
        b.load_state_dict(state)
        ib = iter(b)
        assert [(x["ids"], x["input_ids"]) for x in (next(ib) for _ in range(17 - cut))] == stream[cut:]
    with pytest.raises(ValueError, match="world_size"):
        data.Loader(ss, tok, 4, world_size=1, seed=5, order=order, graphs=False).load_state_dict(state)
    other = "length" if order == "uniform" else "uniform"
    with pytest.raises(ValueError, match="order"):
        data.Loader(ss, tok, 4, **{**kw, "order": other}).load_state_dict(state)


def test_molcap_question_redrawn_per_epoch():
    ss = [data.make_sample(TASKS["molcap"], rec("x", ETOH, "cap"), "molcap", f"m:{i}", seed=1) for i in range(40)]
    e0 = [data.epoch_prompt(s, 0, 1).prompt for s in ss]
    e1 = [data.epoch_prompt(s, 1, 1).prompt for s in ss]
    assert e0 == [s.prompt for s in ss]  # epoch 0 is the load-time draw
    assert e1 == [data.epoch_prompt(s, 1, 1).prompt for s in ss]  # deterministic
    assert sum(a != b for a, b in zip(e0, e1)) > 20  # 6/7 expected to change
    for p in e1:  # only the question changes
        q, rest = p[len(GRAPH):].split(" The compound sequence is: ")
        assert p.startswith(GRAPH) and q in tasks.MOLCAP_QUESTIONS and rest == ETOH
    other = data.make_sample(TASKS["retrosynthesis"], rec("Propose reactants.", ETOH, BRET), "r", "r:1")
    assert data.epoch_prompt(other, 3, 1) is other


# ----------------------------------------------------------------------------- the graph newline, stage 1

def _release_ids(tok, template, instruction, answer):
    """The release's token sequence built by hand: conv_llama3 / ChatML text with "<image>\\n" + instruction
    in the user turn, split on "<image>", each chunk encoded alone, joined by the image id -200
    ([A] data_pipe/chat_template.py tokenizer_image_token; its extra BOS aside, see the README)."""
    sys_p = tokenizer.SYSTEM_PROMPT
    if template == "llama3":
        text = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + sys_p + "<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\n<image>\n" + instruction + "<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n")
    else:
        text = ("<|im_start|>system\n" + sys_p + "<|im_end|>\n<|im_start|>user\n<image>\n" + instruction +
                "<|im_end|>\n<|im_start|>assistant\n")
    before, after = text.split("<image>")
    enc = lambda t: tok.tok.encode(t, add_special_tokens=False).ids  # noqa: E731
    return enc(before) + [-200] + enc(after) + enc(answer) + [tok.eot_id]


@pytest.mark.parametrize("template", ["chatml", "llama3"])
def test_graph_prompt_tokens_equal_the_release(tok, template):
    if template == "llama3":
        tok = Tokenizer(byte_level_tokenizer(["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                                              "<|eot_id|>", "<|end_of_text|>"]), "llama3")
    graph_cases = [c for c in CASES if c[3] is not None]  # iupac / textguidedmolgen have no graph
    assert len(graph_cases) == 13
    for key, record, _, _ in graph_cases:
        s = data.make_sample(TASKS[key], record, key, "x:1")
        instruction = s.prompt[len(GRAPH):]
        ids, _ = data.encode(s, tok)
        assert ids == _release_ids(tok, template, instruction, s.answer), key
        k = ids.index(-200)  # [.. header .., atoms, "\n", instruction ...]
        assert ids[k + 1] == tok.encode("\n")[0]
        assert ids[k + 2: k + 2 + len(tok.encode(instruction))] == tok.encode(instruction)
        assert data.sample_length(s, tok) == len(ids) - 1 + s.n_atoms
    molcap = data.make_sample(TASKS["molcap"], rec("x", ETOH, "An alcohol."), "molcap", "m:1")
    assert data.encode(molcap, tok)[0] == _release_ids(tok, template, molcap.prompt[len(GRAPH):], molcap.answer)


def test_stage1_prompt_is_graph_and_question_only(tmp_path, tok):
    r = rec("IGNORED", PHOH, "Phenol is an aromatic alcohol.")
    s = data.make_sample(TASKS["molcap"], r, "molcap", "m:1", graph_only=True)
    q = s.prompt[len(GRAPH):]
    assert s.prompt == GRAPH + q and q in tasks.MOLCAP_QUESTIONS  # the release: "<image>\n" + question
    assert PHOH not in s.prompt and "[" not in s.prompt and "IGNORED" not in s.prompt and "sequence" not in s.prompt
    assert s.smiles == "OC1=CC=CC=C1" and s.answer == r["output"]  # the graph still carries the molecule
    assert data.encode(s, tok)[0] == _release_ids(tok, "chatml", q, s.answer)
    assert data.epoch_prompt(s, 2, 0).prompt[len(GRAPH):] in tasks.MOLCAP_QUESTIONS  # redrawn per epoch too
    write(str(tmp_path / "train" / "molcap.json"), [rec("x", ETOH, f"cap {i}") for i in range(5)])
    got = data.load_tasks("molcap", "train", str(tmp_path), graph_only=True, verbose=False)
    assert len(got) == 5 and all(ETOH not in g.prompt and g.prompt[len(GRAPH):] in tasks.MOLCAP_QUESTIONS for g in got)


# ----------------------------------------------------------------------------- --mol-format smiles

@pytest.mark.parametrize("key,record,prompt,smiles", CASES, ids=[c[0] for c in CASES])
def test_smiles_format_prompts_and_answers(key, record, prompt, smiles):
    s = data.make_sample(TASKS[key], record, key, "x:1", mol_format="smiles")
    sf_sample = data.make_sample(TASKS[key], record, key, "x:1")
    assert s.smiles == sf_sample.smiles and s.n_atoms == sf_sample.n_atoms  # the graph does not change
    assert "SELFIES sequence" not in s.prompt
    if TASKS[key].graph not in (None, "placeholders"):  # the input molecules, as canonical SMILES per side
        want = ">>".join(chem.canonical(chem.selfies_to_smiles(x)) for x in record["input"].split(">>"))
        assert s.prompt == prompt.replace("SELFIES", "SMILES").replace(record["input"], want)
        assert "][" not in s.prompt
    else:
        assert s.prompt == prompt
    if TASKS[key].answer == "molecule":
        assert s.answer == chem.canonical(chem.selfies_to_smiles(str(record["output"])))
    else:
        assert s.answer == sf_sample.answer
    with pytest.raises(ValueError, match="mol_format"):
        data.make_sample(TASKS[key], record, key, "x:1", mol_format="inchi")


def test_smiles_format_examples():
    s = data.make_sample(TASKS["reagent"], CASES[1][1], "reagent", "x:1", mol_format="smiles")
    assert s.prompt == GRAPH + "Suggest reagents. The reaction is CCBr.Oc1ccccc1>>CCO" and s.answer == "[Na+]"
    t = data.make_sample(TASKS["molediting"], CASES[5][1], "molediting", "x:1", mol_format="smiles")
    assert t.prompt == GRAPH + "Raise its QED. The compound SMILES sequence is: Oc1ccccc1" and t.answer == "CCO"
    with pytest.raises(ValueError, match="SELFIES"):  # an answer that does not decode: the record is skipped
        data.make_sample(TASKS["retrosynthesis"], rec("P.", ETOH, "[C][Xx9]"), "r", "x:1", mol_format="smiles")


def test_collate_with_graphs(tok):
    s = data.make_sample(TASKS["reagent"], CASES[1][1], "reagent", "x:1")
    t = data.make_sample(TASKS["iupac"], CASES[13][1], "iupac", "x:2")
    b = data.collate([s, t], tok)
    assert b["graphs"][0].num_nodes == s.n_atoms == 10 and b["graphs"][1] is None
    assert isinstance(b["graphs"][0], molecule.MolGraph)


# ----------------------------------------------------------------------------- the demo data

def _canon_inputs(samples):
    out = set()
    for s in samples:
        if s.smiles is not None:
            out.add(chem.canonical(s.smiles))
        inp = s.prompt
        out.add(inp.split(MOL)[-1])
    return out


def test_demo_every_task_no_leakage(demo, tok):
    root, left_out = demo
    assert left_out == {}  # all 16 tasks, iupac included
    with open(os.path.join(root, "manifest.json")) as f:
        man = json.load(f)
    for key in TASKS:
        if key in left_out:
            continue
        tr = data.load_tasks(key, "train", root, verbose=False)
        te = data.load_tasks(key, "test", root, verbose=False)
        assert len(tr) >= 20 and len(te) >= 5, key
        assert len(tr) == man["tasks"][key]["train"] and len(te) == man["tasks"][key]["test"]
        # the same input (prompt and graph molecule) never on both sides
        assert not {(s.prompt, s.smiles) for s in tr} & {(s.prompt, s.smiles) for s in te}, key
    # single-molecule tasks: a molecule's split is global (by hash), across all tasks
    mol_tasks = ["weight", "tpsa", "logp", "molcap", "dqa", "homolumo", "molediting", "retrosynthesis"]
    tr = data.load_tasks(",".join(mol_tasks), "train", root, verbose=False)
    te = data.load_tasks(",".join(mol_tasks), "test", root, verbose=False)
    assert not {chem.canonical(s.smiles) for s in tr} & {chem.canonical(s.smiles) for s in te}
    for key in ("textguidedmolgen", "iupac"):  # text -> molecule: the answer molecule's side is global too
        answers_te = {chem.canonical(chem.selfies_to_smiles(s.answer))
                      for s in data.load_tasks(key, "test", root, verbose=False)}
        assert not answers_te & {chem.canonical(s.smiles) for s in tr}, key
    # every sample fits the max length with the real chat template
    assert max(s.length for s in data.load_tasks("all", "train", root, tokenizer=tok, verbose=False)) <= data.MAX_LEN


def test_demo_manifest_names_sources_and_labels_are_real(demo):
    root, _ = demo
    with open(os.path.join(root, "manifest.json")) as f:
        man = json.load(f)
    assert set(man["tasks"]) == set(TASKS)
    src = {k: v["source"] for k, v in man["tasks"].items()}
    assert "qm9pack" in src["homolumo"] and "chemicals" in src["iupac"] and "pubchem large.tsv" in src["iupac"]
    for k in ("forward", "retrosynthesis", "reagent", "solvent", "catalyst", "experiment"):
        assert "orderly" in src[k] and ".pb.gz" in src[k], k
    for k in ("homolumo", "iupac", "forward", "retrosynthesis", "reagent", "solvent", "catalyst"):
        assert man["tasks"][k]["labels"].startswith("real"), k
    assert "not the release's action sequences" in man["tasks"]["experiment"]["labels"]
    # homolumo answers are QM9's own numbers: look each test molecule up in the shipped CSVs
    with open(os.path.join(root, "test", "property_prediction.json")) as f:
        recs = json.load(f)
    want = {f'"dsgdb9nsd_{r["metadata"]["qm9_index"]:06d}.xyz"': r for r in recs}
    col = {"HOMO energy": "HOMO_au", "LUMO energy": "LUMO_au", "gap": "HOMO_LUMO_gap_au"}
    found = 0
    for name in demo_data.QM9_FILES:
        with open(demo_data._package_file("qm9pack", "data", name), encoding="utf-8") as f:
            header = next(csv.reader([f.readline()]))
            for line in f:
                r = want.get(line.split(",", 1)[0])
                if r is not None:
                    row = dict(zip(header, next(csv.reader([line]))))
                    k = next(v for q, v in col.items() if q in r["instruction"])
                    assert r["output"] == float(row[k])
                    assert chem.canonical(chem.selfies_to_smiles(r["input"])) == chem.canonical(row["SMILES"])
                    found += 1
    assert found == len(recs) > 0


# ----------------------------------------------------------------------------- real benchmark files

@pytest.mark.skipif(not os.path.isdir(SHARED), reason="../shared/data (real benchmark files) not present")
def test_real_data_smoke(tmp_path, tok):
    """Real ChEBI-20 captions and USPTO-50K reactions through the readers, SELFIES, chat encoding and graphs."""
    chebi = os.path.join(SHARED, "captioning", "chebi20_test.txt")
    uspto = os.path.join(SHARED, "forward_retro", "uspto50k_retro_test100_chemllmbench.csv")
    if not (os.path.isfile(chebi) and os.path.isfile(uspto)):
        pytest.skip("the ChEBI-20 / USPTO-50K files are not in ../shared/data")
    os.makedirs(tmp_path / "ChEBI-20_data")
    os.symlink(chebi, tmp_path / "ChEBI-20_data" / "test.txt")  # a link: the file is never copied
    rep = data.Report()
    caps = data.load_tasks("molcap", "test", str(tmp_path), tokenizer=tok, report=rep, verbose=False)
    assert len(caps) + sum(rep.skipped.values()) == 3300 and len(caps) > 3200
    recs = []
    with open(uspto) as f:
        for row in csv.DictReader(f):
            try:
                recs.append(rec("Please suggest potential reactants for the given product.",
                                chem.smiles_to_selfies(row["products_smiles"]),
                                chem.smiles_to_selfies(row["reactants_smiles"]), "test"))
            except ValueError:
                pass
    write(str(tmp_path / "test" / "retrosynthesis.json"), recs)
    retro = data.load_tasks("retrosynthesis", "test", str(tmp_path), tokenizer=tok, verbose=False)
    assert len(retro) == len(recs) >= 95
    b = data.collate(caps[:32] + retro[:32], tok)
    assert all(g.num_nodes == s.n_atoms for g, s in zip(b["graphs"], b["samples"]))
    assert isinstance(b["graphs"][0], molecule.MolGraph)
