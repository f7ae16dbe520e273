"""Reactions from Open Reaction Database (ORD) dataset files (`.pb.gz`, or plain `.pb`) -> records of the
reaction tasks in the release's format, so `--data` can point at ORD files (or a folder of them).

Read with `ord-schema` (the ORD's own protobuf schema: ord_schema.proto.dataset_pb2), never by hand. Where
each part of a reaction goes (1789336421/Omni-Mol data_pipe/dataset_profiles.py):

    forward         input  reactants.agents (SELFIES, '.'-joined)   output product     graph: first reactant
    retrosynthesis  input  product                                  output reactants   graph: product
    reagent         input  reactants>>product                       output agents      graph: reactants
    solvent         input  reactants>>product                       output solvents    graph: reactants
    catalyst        input  reactants>>product                       output catalysts   graph: reactants
    experiment      input  $1$.$2$...>>$-1$ (+ extracted_molecules)  output the procedure text

Reactants and agents follow the reaction SMILES where the record has one (USPTO: Lowe's atom-mapped
`reactants>agents>products`, the split Mol-Instructions' USPTO tasks use: agents = every molecule that
gives no atom to the product, solvents and catalysts included); otherwise (e.g. ELN data sets) the inputs'
roles: REACTANT -> reactants, REAGENT / CATALYST / SOLVENT -> agents. Solvents and catalysts are the
inputs with the SOLVENT / CATALYST role. The product is the desired product of the first outcome.
experiment: the release's answers are action sequences (Smiles2Actions); ORD has the patent's procedure
TEXT instead, which is what these records carry (labelled so in the demo manifest).

Split (metadata.split) by a stable hash: retrosynthesis and forward by the canonical product (so a
molecule's side agrees with the molecule tasks), the others by the canonical reaction. Reactions that
repeat (same reactants, agents, product) are kept once. Unusable reactions (no product, an unparsable
SMILES, SMILES that SELFIES refuses) are skipped and counted; a file that is not an ORD dataset is an
OrdError naming it.
"""
import collections
import functools
import glob
import gzip
import os
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from ord_schema.proto import dataset_pb2
from ord_schema.proto import reaction_pb2 as pb
from rdkit import Chem, rdBase

from chem import _hash, smiles_to_selfies
from tasks import TASKS

ORD_TASKS = ("forward", "retrosynthesis", "reagent", "solvent", "catalyst", "experiment")
TEST_PERCENT = 12  # share of products / reactions on the test side (the demo's molecules use the same rule)
INSTRUCTIONS = {
    "forward": "Based on the given reactants and reagents, suggest a possible product.",
    "retrosynthesis": "Please suggest potential reactants for the given product.",
    "reagent": "Please suggest some possible reagents that could have been used in the following chemical reaction.",
    "solvent": "Please suggest a solvent for this reaction.",
    "catalyst": "Please suggest a catalyst for this reaction.",
    "experiment": "Describe the experimental procedure for the reaction: ",
}


class OrdError(ValueError):
    """A file that cannot be read as an ORD dataset (not gzip, truncated, not the ORD protobuf)."""


def is_test(key: str) -> bool:
    """The split rule shared by the demo's molecules and ORD reactions: a hash of the canonical key."""
    return _hash("split/" + key) % 100 < TEST_PERCENT


@dataclass(frozen=True)
class Reaction:
    id: str          # "<dataset name>/<reaction_id>"
    reactants: str   # canonical SMILES, '.'-joined
    agents: str      # '' when none
    solvents: str
    catalysts: str
    product: str
    procedure: str   # the experimental text ('' when none)
    yield_pct: float | None


def ord_files(path: str) -> list[str]:
    """An ORD file, or the ORD files in a folder (top level and one level down, the ORD data repo's
    data/XX/ layout); [] when there are none."""
    if os.path.isfile(path):
        return [path] if path.endswith((".pb.gz", ".pb")) else []
    if not os.path.isdir(path):
        return []
    return sorted(p for pat in ("*.pb.gz", "*.pb", "*/*.pb.gz", "*/*.pb") for p in glob.glob(os.path.join(path, pat)))


@functools.lru_cache(maxsize=None)
def _unmapped(smi: str) -> str | None:
    """Canonical SMILES without atom-map numbers; None if rdkit cannot parse it."""
    with rdBase.BlockLogs():
        m = Chem.MolFromSmiles(smi)
    if m is None or m.GetNumAtoms() == 0:
        return None
    for a in m.GetAtoms():
        a.SetAtomMapNum(0)
    return Chem.MolToSmiles(m)


def _join(smis, dedup: bool = True):
    """Canonical SMILES of several components, '.'-joined with the fragments sorted (the same molecules
    always read the same); a component listed twice (DMSO in every stock solution) counts once when
    `dedup`, while the fragments within one component (a salt's ions) all stay. None if any is unparsable."""
    comps = []
    for s in smis:
        c = _unmapped(s)
        if c is None:
            return None
        if not (dedup and c in comps):
            comps.append(c)
    return ".".join(sorted(f for c in comps for f in c.split(".")))


def _smiles_of(compound) -> str | None:
    for i in compound.identifiers:
        if i.type == pb.CompoundIdentifier.SMILES:
            return i.value
    return None


def _dataset(path: str):
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if path.endswith(".gz"):
            raw = gzip.decompress(raw)
        ds = dataset_pb2.Dataset.FromString(raw)
    except (OSError, EOFError, DecodeError) as e:  # gzip.BadGzipFile is an OSError
        raise OrdError(f"{path}: not a readable ORD dataset ({type(e).__name__}: {e})") from None
    if not ds.reactions:
        raise OrdError(f"{path}: an ORD dataset with no reactions (or not an ORD file)")
    return ds


def _reaction(r, name: str, skipped: collections.Counter) -> Reaction | None:
    roles = collections.defaultdict(list)  # role -> SMILES of the input components
    for key in sorted(r.inputs):  # map order is not stable; sorted keys are
        for c in r.inputs[key].components:
            s = _smiles_of(c)
            if s:
                roles[c.reaction_role].append(s)
    rxn = next((i.value for i in r.identifiers if i.type in (pb.ReactionIdentifier.REACTION_CXSMILES,
                                                              pb.ReactionIdentifier.REACTION_SMILES)), None)
    products = [p for o in r.outcomes[:1] for p in o.products if p.reaction_role in (pb.ReactionRole.PRODUCT, 0)]
    desired = [p for p in products if p.is_desired_product] or products
    product = _smiles_of(desired[0]) if desired else None
    if rxn:
        parts = rxn.split(" ")[0].split(">")
        if len(parts) != 3:
            skipped["malformed reaction SMILES"] += 1
            return None
        reactants = _join(parts[0].split("."), dedup=False)  # fragments of one reaction SMILES side
        agents = _join([p for p in parts[1].split(".") if p], dedup=False)
        if product is None and parts[2]:
            product = max(parts[2].split("."), key=len)  # the largest product fragment
    else:
        reactants = _join(roles[pb.ReactionRole.REACTANT])
        agents = _join(roles[pb.ReactionRole.REAGENT] + roles[pb.ReactionRole.CATALYST]
                       + roles[pb.ReactionRole.SOLVENT])
    if not product:
        skipped["no product"] += 1
        return None
    product = _unmapped(product)
    if not product:
        skipped["unparsable product SMILES"] += 1
        return None
    solvents, catalysts = _join(roles[pb.ReactionRole.SOLVENT]), _join(roles[pb.ReactionRole.CATALYST])
    if not reactants or None in (agents, solvents, catalysts):
        skipped["no reactant or an unparsable SMILES"] += 1
        return None
    yld = next((m.percentage.value for p in desired[:1] for m in p.measurements
                if m.type == pb.ProductMeasurement.YIELD and m.HasField("percentage")), None)
    return Reaction(f"{name}/{r.reaction_id}", reactants, agents, solvents, catalysts, product,
                    r.notes.procedure_details.strip(), yld)


@functools.lru_cache(maxsize=32)
def _read(path: str, mtime: float):
    ds = _dataset(path)
    name = ds.name or ds.dataset_id or os.path.basename(path)
    skipped, out, seen = collections.Counter(), [], set()
    for r in ds.reactions:
        x = _reaction(r, name, skipped)
        if x is None:
            continue
        key = (x.reactants, x.agents, x.product)
        if key in seen:
            skipped["duplicate reaction"] += 1
            continue
        seen.add(key)
        out.append(x)
    return tuple(out), dict(skipped)


def read_ord(path: str) -> tuple[list[Reaction], dict]:
    """-> (reactions, {reason: count} of those skipped). Cached per file (the six tasks read it once)."""
    recs, skipped = _read(path, os.path.getmtime(path))
    return list(recs), dict(skipped)


@functools.lru_cache(maxsize=None)
def _sf(smi: str) -> str:
    return smiles_to_selfies(smi)


def record(x: Reaction, task: str) -> dict | None:
    """One reaction -> the task's record (release format), or None if the reaction has nothing for it
    (no agents / solvent / catalyst / procedure). ValueError where SELFIES refuses a molecule."""
    meta = {"source": x.id}
    prod, reac = _sf(x.product), _sf(x.reactants)
    rxn_key = x.reactants + ">>" + x.product
    if task == "forward":
        inp, out, key = reac + ("." + _sf(x.agents) if x.agents else ""), prod, x.product
        meta["task"] = "forward_reaction_prediction"
    elif task == "retrosynthesis":
        inp, out, key = prod, reac, x.product
    elif task in ("reagent", "solvent", "catalyst"):
        label = {"reagent": x.agents, "solvent": x.solvents, "catalyst": x.catalysts}[task]
        if not label:
            return None
        inp, out, key = reac + ">>" + prod, _sf(label), rxn_key
    elif task == "experiment":
        if not x.procedure:
            return None
        mols = [m for m in (x.reactants + "." + x.agents).split(".") if m and m != x.product]
        ph = {m: f"${k + 1}$" for k, m in enumerate(dict.fromkeys(mols))}
        inp, out, key = ".".join(ph.values()) + ">>$-1$", x.procedure, rxn_key
        ph[x.product] = "$-1$"
        rec = {"instruction": INSTRUCTIONS[task], "input": inp, "output": out, "extracted_molecules": ph}
        rec["metadata"] = {"split": "test" if is_test(key) else "train", **meta}
        return rec
    else:
        raise KeyError(f"{task} is not an ORD task ({', '.join(ORD_TASKS)})")
    if x.yield_pct is not None:
        meta["yield"] = round(x.yield_pct, 2)
    return {"instruction": INSTRUCTIONS[task], "input": inp, "output": out,
            "metadata": {"split": "test" if is_test(key) else "train", **meta}}


def task_records(path: str, task: str, skipped: collections.Counter | None = None) -> list[dict]:
    """Every usable reaction of an ORD file as records of one task (both splits, metadata.split set).
    `skipped` (optional) counts what was left out and why."""
    reactions, why = read_ord(path)
    skipped = skipped if skipped is not None else collections.Counter()
    skipped.update(why)
    out = []
    for x in reactions:
        try:
            r = record(x, task)
        except ValueError:
            skipped["SMILES not encodable as SELFIES"] += 1
            continue
        if r is None:
            skipped[f"nothing for {task}"] += 1
        else:
            out.append(r)
    return out


def left_out(root: str) -> dict:
    """A data source of ORD files only -> {task: why} for the tasks it cannot feed; {} otherwise."""
    if not ord_files(root):
        return {}
    if os.path.isdir(root) and (glob.glob(os.path.join(root, "*.json*")) or
                                any(os.path.isdir(os.path.join(root, d)) for d in ("train", "test", "evaluate"))):
        return {}  # a record folder that also holds ORD files: the record files decide
    return {k: "not derivable from ORD reaction files" for k in TASKS if k not in ORD_TASKS}
