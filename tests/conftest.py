"""What the test files share: the repository root on sys.path (the tests import the scripts as modules,
whatever the working directory), Triton's interpreter on machines without a CUDA GPU, and the fixtures
several test files use: a tiny data folder and train.py's arguments for it, the log reader, a packed
micro-batch, left-padded decode prompts, and a tiny stage-2 checkpoint with its data folder.

Fixtures that stand for helpers return the helper (a callable), so a test calls e.g.
`train_args(tiny_data, tmp_path / "out", "--max-steps", 2)`."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402 (after the sys.path line, like every import below)

# Triton kernels run in the interpreter when there is no CUDA GPU; the variable must be set before
# anything imports triton (moge.py imports moge_kernels/, which imports triton).
if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import dataclasses  # noqa: E402
import json  # noqa: E402

import pytest  # noqa: E402
import selfies  # noqa: E402

import model as M  # noqa: E402
import moge  # noqa: E402
import molecule  # noqa: E402
from tokenizer import MOL_PLACEHOLDER as MOL  # noqa: E402

SMILES = ["CCO", "c1ccccc1", "CC(=O)O", "CCN", "OCCO", "CCCC", "C1CC1", "CC(C)O", "CC#N", "C=CC=C",
          "CS", "NCC(=O)O"]
TINY_TASKS = "forward,molcap,iupac"  # a reaction task, a caption task, a text-only task (no graph)
# the log fields that must agree between two train.py runs that should be the same (timings may not)
LOG_KEYS = ("loss", "ce", "aux", "lr", "grad_norm", "skipped", "tokens")


# ----------------------------------------------------------------------------- the repository

@pytest.fixture(scope="session")
def repo():
    """The repository root, absolute: scripts run as subprocesses are named by it."""
    return ROOT


# ----------------------------------------------------------------------------- train.py on a tiny data folder

@pytest.fixture(scope="session")
def smiles():
    """12 small molecules (the tiny data folders' inputs)."""
    return list(SMILES)


@pytest.fixture(scope="session")
def tiny_tasks():
    """The tasks of tiny_data, as train.py's --tasks."""
    return TINY_TASKS


@pytest.fixture(scope="session")
def log_keys():
    return LOG_KEYS


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """16 records per task of TINY_TASKS in the published layout (PATH/train/<stem>.json), SELFIES inputs."""
    root = tmp_path_factory.mktemp("tinydata")
    os.makedirs(root / "train")
    sf = selfies.encoder
    recs = {"forward_prediction": [], "molcap": [], "IUPAC2SELFIES": []}
    for i, s in enumerate(SMILES + SMILES[:4]):
        split = {"split": "train"}
        recs["forward_prediction"].append({"instruction": "Predict the product.", "input": f"{sf(s)}.{sf('O')}",
                                           "output": sf(s), "metadata": split})
        recs["molcap"].append({"instruction": "", "input": sf(s), "output": f"Molecule {i}, {len(s)} chars.",
                               "metadata": split})
        recs["IUPAC2SELFIES"].append({"instruction": "Give the SELFIES.", "input": f"name-{i}", "output": sf(s),
                                      "metadata": split})
    for stem, r in recs.items():
        (root / "train" / f"{stem}.json").write_text(json.dumps(r))
    return str(root)


def _train_args(data_dir, out, *extra):
    return ["--model", "tiny", "--data", data_dir, "--tasks", TINY_TASKS, "--out", str(out), "--lora-r", "4",
            "--max-len", "512", "--threads", "1", *map(str, extra)]


@pytest.fixture(scope="session")
def train_args():
    """train_args(data_dir, out, *extra) -> train.py's argv for the tiny model on TINY_TASKS (extra: str()'d)."""
    return _train_args


def _read_log(out):
    with open(os.path.join(out, "log.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="session")
def read_log():
    """read_log(out) -> the records of OUT/log.jsonl (train.py and rl.py)."""
    return _read_log


# ----------------------------------------------------------------------------- model inputs

def _adapted_tiny(recipe, seed):
    """The tiny model with the molecule tower and 3-expert adapters (no dropout), B matrices random (B = 0 at init
    would leave the A gradients zero)."""
    torch.manual_seed(0)
    model, tok = M.load_model("tiny")
    molecule.attach_molecule(model)
    moge.attach_adapters(model, moge.MoGEConfig(recipe=recipe, r=4, dropout=0.0, n_experts=3, top_k=2))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in moge.trainable_parameters(model).items():
            if n.endswith("_B") or n.endswith("lora_B"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model, tok


@pytest.fixture(scope="session")
def adapted_tiny():
    """adapted_tiny(recipe, seed) -> (model, tok): the tiny model with trained-looking adapters."""
    return _adapted_tiny


def _tiny_batch(tok):
    smiles = ["CCO", "c1ccccc1O", None, "CC(=O)Nc1ccc(O)cc1", None, "C1CC1", "CCN(CC)CC"]
    ids, labels, graphs = [], [], []
    for i, s in enumerate(smiles):
        prompt = (f"Describe {MOL} briefly, item {i}." if s else f"Name {i * 'x'} a noble gas.")
        a, lab = tok.encode_chat(prompt, f"answer {i} " + "y" * (3 * i))
        ids.append(a), labels.append(lab), graphs.append(molecule.smiles_to_graph(s) if s else None)
    return ids, labels, graphs


@pytest.fixture(scope="session")
def tiny_batch():
    """tiny_batch(tok) -> (ids, labels, graphs): 7 chat samples of different lengths, 5 with a molecule graph."""
    return _tiny_batch


def _decode_prompts(m, tok):
    texts = [(f"Describe {MOL}.", "CCO"), ("Name a noble gas, please, in one word.", None),
             (f"What is {MOL}?", "c1ccccc1O")]
    ids = [tok.encode_chat(t)[0] for t, _ in texts]
    graphs = [molecule.smiles_to_graph(s) if s else None for _, s in texts]
    return molecule.embed_inputs(m, ids, graphs, padding_side="left")[:2]


@pytest.fixture(scope="session")
def decode_prompts():
    """decode_prompts(m, tok) -> (inputs_embeds, attention_mask): 3 left-padded prompts, 2 with a graph."""
    return _decode_prompts


# ----------------------------------------------------------------------------- a tiny checkpoint for eval.py

def _eval_data_folder(root):
    """A few test records per task in the published dataset's layout (test/<stem>.json)."""
    mols = ["CCO", "CC(=O)Nc1ccc(O)cc1", "c1ccccc1O"]
    mw = "What is the molecular weight of this molecule?"
    retro = "Please suggest potential reactants for the given product."
    recs = {
        "Molecular_Weight": [(mw, sf, "46.07") for sf in map(selfies.encoder, mols)],
        "retrosynthesis": [(retro, selfies.encoder(m), selfies.encoder("CC(=O)O.Nc1ccc(O)cc1")) for m in mols[1:]],
        "molcap": [("", selfies.encoder(m), "The molecule is an alcohol.") for m in mols],
    }
    train = {  # a training split for the baselines and answer budgets (molcap has none: it must be left out)
        "Molecular_Weight": [(mw, selfies.encoder(m), w)
                             for m, w in (("CCCO", "60.10"), ("c1ccccc1", "78.11"), ("CC(=O)Nc1ccc(O)cc1", "151.16"))],
        "retrosynthesis": [(retro, selfies.encoder("CC(=O)Oc1ccccc1"), selfies.encoder("CC(=O)O.Oc1ccccc1"))],
    }
    for split, sets in (("test", recs), ("train", train)):
        os.makedirs(root / split)
        for stem, rs in sets.items():
            (root / split / f"{stem}.json").write_text(json.dumps(
                [{"instruction": i, "input": x, "output": y, "metadata": {"split": split}} for i, x, y in rs]))
    return root


@pytest.fixture(scope="session")
def eval_data_folder():
    """eval_data_folder(root) -> root, holding test records of weight, retrosynthesis and molcap and
    training records of the first two."""
    return _eval_data_folder


def _tiny_checkpoint(out, data_dir, r=4, step=3):
    model, _ = M.load_model("tiny")
    molecule.attach_molecule(model)
    cfg = moge.MoGEConfig(r=r)
    moge.attach_adapters(model, cfg)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # trained-looking adapters (B != 0), so a checkpoint that failed to load would show
        for p in moge.trainable_parameters(model).values():
            p.normal_(0.0, 0.02, generator=g)
    step_dir = out / "checkpoints" / f"step_{step:06d}"
    os.makedirs(step_dir)
    moge.save_adapters(model, str(step_dir / "adapters.safetensors"))
    meta = {"step": step, "args": {"model": "tiny", "data": str(data_dir), "seed": 42, "recipe": "moge", "gin": None},
            "base_model": "tiny", "gin": "random init (seed 0)", "model_config": model.config.to_hf(),
            "moge": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "adapter_dtype"}}
    (step_dir / "meta.json").write_text(json.dumps(meta))
    (step_dir / "optimizer.pt").write_bytes(b"")  # eval does not read it
    return step_dir, moge.adapter_state_dict(model)


@pytest.fixture(scope="session")
def tiny_checkpoint():
    """tiny_checkpoint(out, data_dir, r=4, step=3) -> (OUT/checkpoints/step_NNNNNN, its adapter tensors): the
    tiny model with a molecule encoder and MoGE adapters (random, B != 0), as train.py lays a checkpoint out."""
    return _tiny_checkpoint
