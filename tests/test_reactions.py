"""reactions.py: ORD dataset files -> the reaction tasks' records in the release's format (where reactants,
agents, solvents and catalysts go), the split rule, --data pointing at ORD files, and bad input (a corrupt
file is a named error; an unparsable SMILES is skipped and counted). The test writes its own ORD files
with ord-schema's protobuf classes; expected SELFIES come from selfies.encoder on hand-written SMILES."""
import collections
import gzip
import os

import pytest
import selfies
from ord_schema.proto import dataset_pb2, reaction_pb2 as pb

import data
import reactions
from demo_data import ORD_DIR, _package_file
from tasks import TASKS, build_prompt, graph_source

ROLE = pb.ReactionRole


def _component(inp, smiles, role, name=None):
    c = inp.components.add()
    if name:
        c.identifiers.add(type=pb.CompoundIdentifier.NAME, value=name)
    c.identifiers.add(type=pb.CompoundIdentifier.SMILES, value=smiles)
    c.reaction_role = role


def _product(r, smiles, yield_pct=None):
    p = r.outcomes.add().products.add()
    p.identifiers.add(type=pb.CompoundIdentifier.SMILES, value=smiles)
    p.is_desired_product = True
    p.reaction_role = ROLE.PRODUCT
    if yield_pct is not None:
        m = p.measurements.add(type=pb.ProductMeasurement.YIELD)
        m.percentage.value = yield_pct


def uspto_reaction(rid="ord-1", product="CCOc1ccccc1"):
    """A USPTO-style record: an atom-mapped reaction SMILES (reactants > agents > product) plus inputs
    with ORD roles, as Lowe's extraction lands in ORD (reagents carry the REACTANT role there)."""
    r = pb.Reaction(reaction_id=rid)
    r.identifiers.add(type=pb.ReactionIdentifier.REACTION_CXSMILES, is_mapped=True,
                      value="[CH3:1][CH2:2]Br.[OH:3][c:4]1[cH:5][cH:6][cH:7][cH:8][cH:9]1>[Na+].[OH-].O.[Pd]>"
                            "[CH3:1][CH2:2][O:3][c:4]1[cH:5][cH:6][cH:7][cH:8][cH:9]1 |f:2.3|")
    inp = r.inputs["m1_m2"]
    _component(inp, "CCBr", ROLE.REACTANT, "bromoethane")
    _component(inp, "Oc1ccccc1", ROLE.REACTANT, "phenol")
    _component(r.inputs["m3"], "[Na+].[OH-]", ROLE.REACTANT, "sodium hydroxide")
    _component(r.inputs["m4"], "O", ROLE.SOLVENT, "water")
    _component(r.inputs["m5"], "[Pd]", ROLE.CATALYST, "palladium")
    _product(r, product, 81.5)
    r.notes.procedure_details = "  Phenol and bromoethane were stirred in water with NaOH.  "
    return r


def eln_reaction(rid="ord-2"):
    """An ELN-style record: no reaction SMILES, roles only; DMSO repeated in two stock solutions."""
    r = pb.Reaction(reaction_id=rid)
    _component(r.inputs["amine"], "C1CNCCC1c1ccccc1", ROLE.REACTANT)
    _component(r.inputs["amine"], "CS(C)=O", ROLE.SOLVENT)
    _component(r.inputs["halide"], "Brc1cccnc1", ROLE.REACTANT)
    _component(r.inputs["halide"], "CS(C)=O", ROLE.SOLVENT)
    _component(r.inputs["base"], "C1CCC2=NCCCN2CC1", ROLE.REAGENT)
    _component(r.inputs["cat"], "CC(=O)[O-].CC(=O)[O-].[Pd+2]", ROLE.CATALYST)
    _product(r, "c1ccc(C2CCN(c3cccnc3)CC2)cc1")
    return r


def write_ord(path, rxns, name="test set"):
    ds = dataset_pb2.Dataset(name=name, dataset_id="ord_dataset-test")
    ds.reactions.extend(rxns)
    with gzip.open(path, "wb") as f:
        f.write(ds.SerializeToString())
    return str(path)


def sf(smi):
    return selfies.encoder(smi)


def test_read_uspto_reaction_parts(tmp_path):
    p = write_ord(tmp_path / "a.pb.gz", [uspto_reaction()])
    (x,), skipped = reactions.read_ord(p)
    assert skipped == {}
    assert x.reactants == "CCBr.Oc1ccccc1"              # mapped side, maps removed, fragments sorted
    assert x.agents == "O.[Na+].[OH-].[Pd]"           # the middle of the reaction SMILES, as USPTO lists it
    assert x.solvents == "O" and x.catalysts == "[Pd]"
    assert x.product == "CCOc1ccccc1" and x.yield_pct == pytest.approx(81.5)
    assert x.procedure == "Phenol and bromoethane were stirred in water with NaOH."
    assert x.id == "test set/ord-1"


def test_every_reaction_task_record_in_release_format(tmp_path):
    p = write_ord(tmp_path / "a.pb.gz", [uspto_reaction()])
    (x,), _ = reactions.read_ord(p)
    r = {t: reactions.record(x, t) for t in reactions.ORD_TASKS}
    reac, prod = sf("CCBr") + "." + sf("Oc1ccccc1"), sf("CCOc1ccccc1")
    assert (r["forward"]["input"], r["forward"]["output"]) == (reac + "." + sf("O.[Na+].[OH-].[Pd]"), prod)
    assert (r["retrosynthesis"]["input"], r["retrosynthesis"]["output"]) == (prod, reac)
    assert (r["reagent"]["input"], r["reagent"]["output"]) == (reac + ">>" + prod, sf("O.[Na+].[OH-].[Pd]"))
    assert (r["solvent"]["input"], r["solvent"]["output"]) == (reac + ">>" + prod, sf("O"))
    assert (r["catalyst"]["input"], r["catalyst"]["output"]) == (reac + ">>" + prod, sf("[Pd]"))
    e = r["experiment"]
    assert e["input"] == "$1$.$2$.$3$.$4$.$5$.$6$>>$-1$"
    assert e["extracted_molecules"] == {"CCBr": "$1$", "Oc1ccccc1": "$2$", "O": "$3$", "[Na+]": "$4$",
                                        "[OH-]": "$5$", "[Pd]": "$6$", "CCOc1ccccc1": "$-1$"}
    assert e["output"] == x.procedure
    for t, rec in r.items():
        assert rec["instruction"] == reactions.INSTRUCTIONS[t] and rec["metadata"]["split"] in ("train", "test")
        # the release's prompt and graph source read these records
        assert graph_source(TASKS[t], rec)
        assert TASKS[t].prompt.split("{input}")[0].format(instruction=rec["instruction"]) in build_prompt(TASKS[t], rec)
    assert graph_source(TASKS["forward"], r["forward"]) == "CCBr"            # first component
    assert graph_source(TASKS["experiment"], e) == "CCBr.Oc1ccccc1.O.[Na+].[OH-].[Pd]"
    # the split: product for retrosynthesis / forward, the reaction for the others
    assert r["retrosynthesis"]["metadata"]["split"] == ("test" if reactions.is_test("CCOc1ccccc1") else "train")
    reagent_test = reactions.is_test("CCBr.Oc1ccccc1>>CCOc1ccccc1")
    assert r["reagent"]["metadata"]["split"] == ("test" if reagent_test else "train")


def test_eln_reaction_uses_roles(tmp_path):
    p = write_ord(tmp_path / "b.pb.gz", [eln_reaction()])
    (x,), _ = reactions.read_ord(p)
    assert x.reactants == "Brc1cccnc1.c1ccc(C2CCNCC2)cc1"
    assert x.solvents == "CS(C)=O"                               # listed twice, counted once
    assert x.catalysts == "CC(=O)[O-].CC(=O)[O-].[Pd+2]"          # both acetates of Pd(OAc)2 stay
    assert x.agents == "C1CCC2=NCCCN2CC1.CC(=O)[O-].CC(=O)[O-].CS(C)=O.[Pd+2]"
    assert x.procedure == "" and reactions.record(x, "experiment") is None


def test_duplicates_and_unparsable_smiles_are_skipped_and_counted(tmp_path):
    bad = uspto_reaction("ord-3", product="C1CC(")  # unparsable product
    bad.identifiers[0].value = "CCBr.Oc1ccccc1>>C1CC("
    nothing = pb.Reaction(reaction_id="ord-4")
    _component(nothing.inputs["a"], "CCO", ROLE.REACTANT)       # no outcome, no product
    p = write_ord(tmp_path / "c.pb.gz", [uspto_reaction(), uspto_reaction("ord-dup"), bad, nothing])
    xs, skipped = reactions.read_ord(p)
    assert [x.id for x in xs] == ["test set/ord-1"]
    assert skipped == {"duplicate reaction": 1, "unparsable product SMILES": 1, "no product": 1}
    c = collections.Counter()
    assert len(reactions.task_records(p, "catalyst", c)) == 1 and c == skipped


def test_selfies_refusal_is_counted(tmp_path):
    r = uspto_reaction("ord-5", product="O=I(=O)c1ccccc1")  # iodylbenzene: rdkit parses it, SELFIES refuses
    c = collections.Counter()
    assert reactions.task_records(write_ord(tmp_path / "d.pb.gz", [r]), "retrosynthesis", c) == []
    assert c == {"SMILES not encodable as SELFIES": 1}


@pytest.mark.parametrize("content", [b"not gzip at all", gzip.compress(b"\x0a\xff\xff garbage"), b""])
def test_corrupt_ord_file_is_a_named_error(tmp_path, content):
    p = tmp_path / "broken.pb.gz"
    p.write_bytes(content)
    with pytest.raises(reactions.OrdError, match="broken.pb.gz"):
        reactions.read_ord(str(p))
    with pytest.raises(ValueError, match="broken.pb.gz"):  # the loader passes it on
        data.load_tasks("forward", "train", str(p), verbose=False)


def test_truncated_ord_file_is_a_named_error(tmp_path):
    good = write_ord(tmp_path / "g.pb.gz", [uspto_reaction()])
    raw = open(good, "rb").read()
    p = tmp_path / "cut.pb.gz"
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(reactions.OrdError, match="cut.pb.gz"):
        reactions.read_ord(str(p))


def test_data_points_at_ord_files(tmp_path):
    """--data FILE.pb.gz or a folder of them: the reaction tasks train and test, the others are left out."""
    phenols = ["Oc1ccccc1", "Oc1ccc(C)cc1", "Oc1ccc(Cl)cc1", "Oc1ccc(F)cc1", "Oc1ccc(Br)cc1", "Oc1ccccc1C",
               "Oc1cccc(C)c1", "Oc1ccncc1", "Oc1cccnc1", "Oc1ccc(N)cc1", "Oc1ccc(C#N)cc1", "Oc1ccc(CC)cc1"]
    rx = []
    for i, ph in enumerate(phenols):  # twelve ethyl aryl ethers
        r = uspto_reaction(f"ord-{i}", product="CCO" + ph[1:])
        r.identifiers[0].value = f"CCBr.{ph}>[Na+].[OH-].O.[Pd]>CCO{ph[1:]}"
        rx.append(r)
    os.makedirs(tmp_path / "ord" / "ab")
    f = write_ord(tmp_path / "ord" / "ab" / "ord_dataset-x.pb.gz", rx)
    for src in (f, str(tmp_path / "ord")):
        root, left_out = data.resolve_data(src)
        assert set(left_out) == set(TASKS) - set(reactions.ORD_TASKS)
        n = {}
        for t in reactions.ORD_TASKS:
            tr = data.load_tasks(t, "train", src, verbose=False)
            te = data.load_tasks(t, "test", src, verbose=False)
            n[t] = len(tr) + len(te)
            assert not {(s.prompt, s.smiles) for s in tr} & {(s.prompt, s.smiles) for s in te}, t
        assert n == {t: 12 for t in reactions.ORD_TASKS}
    rep = data.Report()
    got = data.load_tasks("all", "train", f, report=rep, verbose=False)
    assert {s.task for s in got} <= set(reactions.ORD_TASKS)


def test_ord_data_source_counts_skips(tmp_path):
    f = write_ord(tmp_path / "e.pb.gz", [uspto_reaction(), uspto_reaction("ord-dup")])
    rep = data.Report()
    data.load_tasks("forward", "train", f, report=rep, verbose=False)
    data.load_tasks("forward", "test", f, report=rep, verbose=False)
    assert rep.counts["forward"]["duplicate reaction"] == 2  # once per split read


def test_the_demo_reads_orderly_files():
    files = reactions.ord_files(_package_file("orderly", *ORD_DIR, folder=True))
    assert len(files) == 12
    xs, _ = reactions.read_ord([p for p in files if "85c00026681b46f89ef8634d2b8618c3" in p][0])
    assert 4000 < len(xs) <= 4837  # uspto-grants-2001_07: 4,837 reactions, duplicates dropped
    assert sum(bool(x.catalysts) for x in xs) > 400 and all(x.product for x in xs)
