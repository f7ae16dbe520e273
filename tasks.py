"""The 16 Omni-Mol tasks: keys, categories, the release's prompt templates and file names, and how each
task's graph-source molecule is picked (1789336421/Omni-Mol data_pipe/dataset_profiles.py, constants.py)."""
import random
import re
from dataclasses import dataclass

import numpy as np

import arith  # "arith": the generated word problems (arith.py), a key of --tasks outside the 16

from chem import _hash, selfies_text_to_smiles, selfies_to_smiles
from tokenizer import MOL_PLACEHOLDER as MOL  # "<mol>": the release's "<image>"

# The release writes "<image>\n" + instruction and splits the prompt on "<image>", so the chunk after the
# atom tokens is encoded as "\n" + instruction: a "\n" token follows the atoms. Ours is the same text
# with "<mol>" for "<image>" (the tokenizer splits on MOL the same way).
GRAPH = MOL + "\n"
MOL_FORMATS = ("selfies", "smiles")  # the molecules written in prompts and molecule answers

# molcap ignores the record's instruction: the release draws one of these per sample
MOLCAP_QUESTIONS = [
    "Could you give me a brief overview of this molecule?",
    "Could you provide a description of this molecule?",
    "Describe this molecule.",
    "Please give me some details about this molecule.",
    "Provide a brief overview of this molecule.",
    "Provide a description of this molecule.",
    "What can you tell me about this molecule?",
]


# ----------------------------------------------------------------------------- the 16 tasks

@dataclass(frozen=True)
class Task:
    key: str
    category: str          # Mol2Mol / Mol2Num / Mol2Text / Text2Mol
    answer: str            # molecule / number / text
    graph: str | None      # which molecule the graph is built from (see graph_source)
    prompt: str            # "{instruction} ..." template; see build_prompt
    code: str              # the release code's train-file substring (WillDreamer/OmniMol MAP2FILEMAME)
    code_eval: dict        # eval set -> the release code's evaluate/ file
    released: dict         # split -> {eval set: published file stem} (1789336421/Omni-Mol MAP2FILE)
    moit: str | None = None  # metadata.task inside the shared 3D-MoIT file


def _r(train, test=None, **sets):
    return {"train": {"train": train}, "test": sets or {"test": test or train}}


TASKS = {t.key: t for t in [
    Task("forward", "Mol2Mol", "molecule", "first", "{instruction} {input}", "forward",
         {"forward": "forward_reaction_prediction.json"}, _r("forward_prediction")),
    Task("reagent", "Mol2Mol", "molecule", "reactants", "{instruction} The reaction is {input}", "reagent",
         {"reagent": "reagent_prediction.json"}, _r("reagent_prediction")),
    Task("retrosynthesis", "Mol2Mol", "molecule", "whole", "{instruction} The product is: {input}",
         "retrosynthesis", {"retrosynthesis": "retrosynthesis.json"}, _r("retrosynthesis")),
    Task("solvent", "Mol2Mol", "molecule", "reactants", "{instruction} The reaction is {input}.", "solvent",
         {"solvent": "solvent_pred.json"}, _r("solvent_pred")),
    Task("catalyst", "Mol2Mol", "molecule", "reactants", "{instruction} The reaction is {input}.", "catalyst",
         {"catalyst": "catalyst_pred.json"}, _r("catalyst_pred")),
    Task("molediting", "Mol2Mol", "molecule", "whole", "{instruction} The compound SELFIES sequence is: {input}",
         "molecule_editing", {"molediting": "molecule_editing.json"}, _r("molecule_editing")),
    Task("homolumo", "Mol2Num", "number", "whole", "{instruction} The compound SELFIES sequence is: {input}",
         "property", {"homolumo": "property_prediction.json"}, _r("property_prediction")),
    Task("weight", "Mol2Num", "number", "whole", "{instruction} The molecule SELFIES sequence is: {input}",
         "3d_moit", {"weight": "3d_moit_no_homolumo_filtered_test.json"}, _r("Molecular_Weight"),
         moit="Molecular Weight"),
    Task("tpsa", "Mol2Num", "number", "first", "{instruction} The compound SELFIES sequence is: {input}",
         "3d_moit", {"tpsa": "3d_moit_no_homolumo_filtered_test.json"}, _r("TPSA"),
         moit="Topological Polar Surface Area"),
    Task("logp", "Mol2Num", "number", "whole", "{instruction} The molecule SELFIES sequence is: {input}",
         "3d_moit", {"logp": "3d_moit_no_homolumo_filtered_test.json"}, _r("LogP"), moit="LogP"),
    Task("yield", "Mol2Num", "number", "reactants", "{instruction} The reaction is {input}.", "yields_regression",
         {"yield_BH": "yields_regression_BH.json", "yield_SM": "yields_regression_SM.json"},
         _r("yield_regression", yield_BH="yield_regression_BH", yield_SM="yield_regression_SM")),
    Task("molcap", "Mol2Text", "text", "whole", "{question} The compound sequence is: {input}", "molcap_train",
         {"molcap": "molcap_test.json"}, _r("molcap")),
    Task("dqa", "Mol2Text", "text", "first", "{instruction} The compound SELFIES sequence is: {input}",
         "3d_moit", {"dqa": "3d_moit_no_homolumo_filtered_test.json"}, _r("DescriptionQA"), moit="Description"),
    Task("experiment", "Mol2Text", "text", "placeholders", "{instruction}{input}. The Action Sequence: ",
         "exp_procedure_pred_0.5subset", {"experiment": "exp_procedure_pred.json"}, _r("exp_procedure_pred")),
    Task("iupac", "Text2Mol", "molecule", None, "{instruction} The IUPAC name is: {input}", "iupac_0.2subset",
         {"iupac": "iupac2selfies.json"}, _r("IUPAC2SELFIES")),
    Task("textguidedmolgen", "Text2Mol", "molecule", None, "{instruction} The description is: {input}",
         "text_guided", {"textguidedmolgen": "text_guided_mol_generation.json"},
         _r("text_guided_mol_generation")),
]}
EVAL_SETS = [s for t in TASKS.values() for s in t.code_eval]  # yield scores as yield_BH and yield_SM


def build_prompt(task: Task, rec: dict, rng: random.Random | None = None, *, graph_only: bool = False,
                 mol_format: str = "selfies", text_only: bool = False) -> str:
    """The user turn for a record, exactly as the release builds it (with MOL for "<image>").
    graph_only: the release's stage-1 prompt, "<image>\\n" + a molcap question and no molecule text
    ([A] data_pipe/datasets.py PretrainMolDataset). mol_format "smiles": the input's molecules as canonical
    SMILES and "SELFIES" in the template as "SMILES" (the paper's SMILES ablation, [A] --if_smiles).
    text_only: the same text without the graph placeholder, molecules as text only (train.py --graph none: the
    dev tree's --training_recipe puretext, WillDreamer/Omni-Mol scripts/mixtrain_moeloratext.sh, whose
    model_factory.py create_puer_text_model builds a TextModelForConditionalGeneration with no graph tower)."""
    if text_only and graph_only:
        raise ValueError("graph_only (the stage-1 prompt) is the graph alone: it has no text-only form")
    question = ""
    if task.key == "molcap" or graph_only:  # the release draws a question at random, ignores the instruction
        rng = rng or random.Random(_hash(str(rec.get("input"))))
        question = rng.choice(MOLCAP_QUESTIONS)
    if graph_only:
        return GRAPH + question
    template, inp = task.prompt, rec["input"]
    if mol_format == "smiles":
        template, inp = template.replace("SELFIES", "SMILES"), input_as_smiles(task, inp)
    text = template.format(instruction=rec.get("instruction", ""), input=inp, question=question)
    return text if task.graph is None or text_only else GRAPH + text


_TAGGED_SELFIES = re.compile(r"\[START_SELFIES\](.*?)\[END_SELFIES\]")


def input_as_smiles(task: Task, inp: str) -> str:
    """A record's input with its SELFIES written as SMILES ([A] selfies2smiles: canonical, isomeric); text
    inputs (iupac, textguidedmolgen) unchanged; ValueError if a molecule does not decode."""
    if task.graph is None:
        return inp
    if task.graph == "placeholders":  # experiment: $k$ placeholders; tagged SELFIES spans as [A] converts them
        return _TAGGED_SELFIES.sub(lambda m: f"[START_SMILES]{selfies_text_to_smiles(m.group(1))}[END_SMILES]", inp)
    return selfies_text_to_smiles(inp)


def redraw_question(prompt: str, rng: random.Random) -> str:
    """A molcap prompt with its question drawn again (the release draws one per __getitem__, so per epoch)."""
    for head in (GRAPH, ""):  # "": a text-only prompt (build_prompt text_only)
        for q in MOLCAP_QUESTIONS:
            if prompt.startswith(head + q):
                return head + rng.choice(MOLCAP_QUESTIONS) + prompt[len(head + q):]
    return prompt


_PLACEHOLDER = re.compile(r"\$\d+\$")  # the release's regex: $-1$ (the product) is not matched


def graph_source(task: Task, rec: dict) -> str | None:
    """The SMILES the graph is built from (None for text-only tasks); raises ValueError on bad input."""
    if task.graph is None:
        return None
    inp = rec["input"]
    if task.graph == "placeholders":  # experiment: SMILES of every $k$ in the input, from extracted_molecules
        inv = {ph: smi for smi, ph in (rec.get("extracted_molecules") or {}).items()}
        smiles = ".".join(inv[ph] for ph in _PLACEHOLDER.findall(inp) if ph in inv)
        if not smiles:
            raise ValueError("no $k$ placeholder with a molecule in extracted_molecules")
        return smiles
    if task.graph == "reactants":
        if ">>" not in inp:
            raise ValueError("reaction input without '>>'")
        inp = inp.split(">>")[0]
    elif task.graph == "first":
        inp = inp.split(".")[0]
    return selfies_to_smiles(inp)


def scored_as(sample):
    """The name a test sample is scored under: its task key, except yield -> yield_BH / yield_SM (its eval set)."""
    return sample.eval_set if sample.task == "yield" else sample.task


# ----------------------------------------------------------------------------- --tasks specs

def parse_tasks(spec: str) -> dict[str, float]:
    """"all" or "key[:ratio],..." -> {key: ratio}; ValueError naming the valid keys. "all" is the 16 tasks;
    arith (arith.py, generated) is only there when named."""
    if spec is None or spec.strip() == "all":
        return {k: 1.0 for k in TASKS}
    out = {}
    for part in spec.replace("/", ",").split(","):
        part = part.strip()
        if not part:
            continue
        key, _, ratio = part.partition(":")
        key = key.strip()
        if key not in TASKS and key != arith.KEY:
            raise ValueError(f"unknown task {key!r}; valid tasks: {', '.join(TASKS)} (or 'all'), and "
                             f"{arith.KEY} (generated arithmetic word problems)")
        if key in out:
            raise ValueError(f"task {key!r} is given twice in {spec!r}")
        try:
            r = float(ratio) if ratio else 1.0
        except ValueError:
            raise ValueError(f"task {key!r}: ratio {ratio!r} is not a number") from None
        if not 0.0 < r <= 1.0:
            raise ValueError(f"task {key!r}: ratio must be in (0, 1], got {r}")
        out[key] = r
    if not out:
        raise ValueError(f"no tasks in {spec!r}; valid tasks: {', '.join(TASKS)} (or 'all')")
    return out


def subsample(n: int, ratio: float, seed: int, key: str) -> list[int]:
    """Deterministic subset of range(n): round(ratio * n) indices, in their original order."""
    if ratio >= 1.0:
        return list(range(n))
    k = int(round(ratio * n))
    rng = np.random.default_rng([seed, _hash(key) % 2**32])
    return sorted(rng.permutation(n)[:k].tolist())
