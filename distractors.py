"""Chemically edited molecules: the near misses a multiple-choice question offers beside the right molecule.

    edits(mol)                      -> [(kind, Mol)], each sanitised, distinct by InChI, none the input
    edits(mol, kinds=("halogen",))  -> only those edits
    within_atoms(mol, pool)         -> every heavy element of mol at most as often as in pool (a Counter)
    as_text(mol, like)              -> the molecule written as `like` is (SELFIES or SMILES, rdkit canonical)

Distractors drawn from other records differ from the right answer in everything, so a model-free shortcut
(the option most similar to the input molecule) finds the answer; an edit keeps the answer's surface and changes
its chemistry, as ChemBench (Mirza et al., Nat. Chem. 2025) and MolPuzzle (Guo et al., NeurIPS 2024 D&B) build
their wrong options. The kinds (each a function Mol -> candidate Mols, every site tried):
- "move":     a substituent moved to another position of its ring (a regioisomer: same formula)
- "halogen":  F, Cl, Br, I swapped for another halogen
- "bond":     a non-aromatic bond order changed by one (C-C <-> C=C, C=C <-> C#C, C=O <-> C-OH)
- "stereo":   a tetrahedral centre inverted or made unspecified (same formula; standard InChI tells them apart,
              a stereo-free comparison such as verify.py's does not)
- "ch2":      a CH2 inserted into or removed from a chain, a terminal methyl added or removed (homologues)
- "isostere": a classical isostere (Grimm's hydride displacement; Meanwell, J. Med. Chem. 2011, 54, 2529):
              -O- <-> -S- <-> -NH-, -OH <-> -NH2, C=O -> C=S, aromatic CH <-> N, -Cl <-> -CH3
Every candidate must sanitise in rdkit (Chem.SanitizeMol) and have a standard InChI other than the input's.
"""
import re
from collections import Counter

import numpy as np
import selfies
from rdkit import Chem, DataStructs, rdBase

import answers
import verify

HALOGENS = (9, 17, 35, 53)
_TOKENS = re.compile(r"\[[^\[\]]+\]|[^\s\[\]]+")  # SELFIES tokens, else words (as shortcuts.py)
KINDS = ("move", "halogen", "bond", "stereo", "ch2", "isostere")
DRAWS = 256         # random option subsets tried per question (choose)
MAX_PER_KIND = 6    # candidates kept per kind (sites are tried in atom order; enough for 3 distractors)
HARD_OTHERS = 6     # other-record answers are drawn from this many most similar (mcq.HARD_POOL)


def _finish(rw):
    """An edited RWMol -> a sanitised Mol, or None. Hydrogens are recomputed from valence (explicit H counts
    of edited atoms were cleared by the edit)."""
    mol = rw.GetMol()
    try:
        with rdBase.BlockLogs():
            Chem.SanitizeMol(mol)
            out = Chem.MolFromSmiles(Chem.MolToSmiles(mol))  # round trip: what a reader of the option gets
    except Exception:
        return None
    return out if out is not None and out.GetNumAtoms() else None


def _reset(atom):
    atom.SetNumExplicitHs(0)
    atom.SetNoImplicit(False)
    atom.SetNumRadicalElectrons(0)


def _rw(mol):
    rw = Chem.RWMol(mol)
    Chem.Kekulize(rw, clearAromaticFlags=True)
    return rw


def _move(mol):
    """A substituent (a non-ring single bond from a ring atom) moved to another H-bearing atom of that ring."""
    ring_info = mol.GetRingInfo()
    for bond in mol.GetBonds():
        if bond.IsInRing() or bond.GetBondType() != Chem.BondType.SINGLE:
            continue
        for ring_atom, sub in ((bond.GetBeginAtom(), bond.GetEndAtom()), (bond.GetEndAtom(), bond.GetBeginAtom())):
            if not ring_atom.IsInRing():
                continue
            for ring in ring_info.AtomRings():
                if ring_atom.GetIdx() not in ring:
                    continue
                for target in ring:
                    t = mol.GetAtomWithIdx(target)  # a regioisomer: an atom like the old attachment point
                    if (target == ring_atom.GetIdx() or t.GetTotalNumHs() == 0
                            or t.GetAtomicNum() != ring_atom.GetAtomicNum()
                            or t.GetIsAromatic() != ring_atom.GetIsAromatic()):
                        continue
                    rw = _rw(mol)
                    rw.RemoveBond(ring_atom.GetIdx(), sub.GetIdx())
                    rw.AddBond(target, sub.GetIdx(), Chem.BondType.SINGLE)
                    for i in (ring_atom.GetIdx(), target):
                        _reset(rw.GetAtomWithIdx(i))
                    yield _finish(rw)


def _halogen(mol):
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() in HALOGENS:
            for z in HALOGENS:
                if z != atom.GetAtomicNum():
                    rw = Chem.RWMol(mol)
                    rw.GetAtomWithIdx(atom.GetIdx()).SetAtomicNum(z)
                    yield _finish(rw)


def _bond(mol):
    step = {Chem.BondType.SINGLE: (Chem.BondType.DOUBLE,), Chem.BondType.DOUBLE: (Chem.BondType.SINGLE,
            Chem.BondType.TRIPLE), Chem.BondType.TRIPLE: (Chem.BondType.DOUBLE,)}
    for bond in mol.GetBonds():
        if bond.GetIsAromatic() or bond.GetBondType() not in step:
            continue
        for new in step[bond.GetBondType()]:
            rw = _rw(mol)
            rw.GetBondWithIdx(bond.GetIdx()).SetBondType(new)
            for a in (bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()):
                _reset(rw.GetAtomWithIdx(a))
            yield _finish(rw)


def _stereo(mol):
    flip = {Chem.ChiralType.CHI_TETRAHEDRAL_CW: Chem.ChiralType.CHI_TETRAHEDRAL_CCW,
            Chem.ChiralType.CHI_TETRAHEDRAL_CCW: Chem.ChiralType.CHI_TETRAHEDRAL_CW}
    for atom in mol.GetAtoms():
        if atom.GetChiralTag() in flip:
            for tag in (flip[atom.GetChiralTag()], Chem.ChiralType.CHI_UNSPECIFIED):
                rw = Chem.RWMol(mol)
                rw.GetAtomWithIdx(atom.GetIdx()).SetChiralTag(tag)
                yield _finish(rw)


def _ch2(mol):
    """Homologues: a CH2 into a non-ring single C-X bond, a chain CH2 out, a methyl on or off."""
    for bond in mol.GetBonds():  # insert between the two atoms of a chain bond
        a, b = bond.GetBeginAtom(), bond.GetEndAtom()
        if bond.IsInRing() or bond.GetBondType() != Chem.BondType.SINGLE or 6 not in (a.GetAtomicNum(),
                                                                                      b.GetAtomicNum()):
            continue
        rw = _rw(mol)
        rw.RemoveBond(a.GetIdx(), b.GetIdx())
        c = rw.AddAtom(Chem.Atom(6))
        rw.AddBond(a.GetIdx(), c, Chem.BondType.SINGLE)
        rw.AddBond(c, b.GetIdx(), Chem.BondType.SINGLE)
        yield _finish(rw)
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() != 6 or atom.IsInRing() or atom.GetIsAromatic() or atom.GetFormalCharge():
            continue
        bonds = list(atom.GetBonds())
        single = all(b.GetBondType() == Chem.BondType.SINGLE for b in bonds)
        if atom.GetDegree() == 2 and single and atom.GetTotalNumHs() == 2:  # excise a chain CH2
            n1, n2 = (nb.GetIdx() for nb in atom.GetNeighbors())
            rw = _rw(mol)
            rw.AddBond(n1, n2, Chem.BondType.SINGLE)
            rw.RemoveAtom(atom.GetIdx())
            yield _finish(rw)
        if atom.GetDegree() == 1 and single and atom.GetTotalNumHs() == 3:  # drop a methyl
            nb = atom.GetNeighbors()[0].GetIdx()
            rw = _rw(mol)
            rw.RemoveAtom(atom.GetIdx())
            _reset(rw.GetAtomWithIdx(nb if nb < atom.GetIdx() else nb - 1))
            yield _finish(rw)
    for atom in mol.GetAtoms():  # add a methyl where a carbon has an H
        if atom.GetAtomicNum() == 6 and atom.GetTotalNumHs() > 0:
            rw = _rw(mol)
            c = rw.AddAtom(Chem.Atom(6))
            rw.AddBond(atom.GetIdx(), c, Chem.BondType.SINGLE)
            _reset(rw.GetAtomWithIdx(atom.GetIdx()))
            yield _finish(rw)


def _isostere(mol):
    for atom in mol.GetAtoms():
        z, hs, arom = atom.GetAtomicNum(), atom.GetTotalNumHs(), atom.GetIsAromatic()
        single = all(b.GetBondType() == Chem.BondType.SINGLE for b in atom.GetBonds())
        double = [b for b in atom.GetBonds() if b.GetBondType() == Chem.BondType.DOUBLE]
        charge = atom.GetFormalCharge()
        new = []
        if charge == 0 and not arom and single:
            new = {8: (16, 7), 16: (8, 7), 7: (8, 16) if atom.GetDegree() <= 2 and hs >= 1 else ()}.get(z, ())
            on_carbon = atom.GetDegree() == 1 and atom.GetNeighbors()[0].GetAtomicNum() == 6
            if z == 17 and on_carbon:
                new = (6,)
            if z == 6 and on_carbon and hs == 3:
                new = (17,)
        elif charge == 0 and not arom and z == 8 and atom.GetDegree() == 1 and len(double) == 1:
            new = (16,)   # C=O -> C=S
        elif charge == 0 and arom and z == 6 and hs == 1 and atom.GetDegree() == 2:
            new = (7,)    # aromatic CH -> N (benzene -> pyridine)
        elif charge == 0 and arom and z == 7 and hs == 0 and atom.GetDegree() == 2:
            new = (6,)    # aromatic N -> CH
        for nz in new:
            rw = Chem.RWMol(mol)
            a = rw.GetAtomWithIdx(atom.GetIdx())
            a.SetAtomicNum(nz)
            _reset(a)
            yield _finish(rw)


EDITS = {"move": _move, "halogen": _halogen, "bond": _bond, "stereo": _stereo, "ch2": _ch2, "isostere": _isostere}


def edits(mol, kinds=KINDS, max_per_kind=MAX_PER_KIND):
    """-> [(kind, Mol)]: edited molecules, each sanitised and with a standard InChI other than mol's and every
    earlier candidate's; in kind order, then site order (deterministic)."""
    if mol is None:
        return []
    seen = {answers.inchi(mol)}
    out = []
    for kind in kinds:
        n = 0
        try:
            candidates = list(EDITS[kind](mol))
        except Exception:  # an rdkit corner (an unkekulisable input): no candidates of this kind
            candidates = []
        for cand in candidates:
            key = answers.inchi(cand) if cand is not None else None
            if key is None or key in seen:
                continue
            seen.add(key)
            out.append((kind, cand))
            n += 1
            if n >= max_per_kind:
                break
    return out


def within_atoms(mol, pool: Counter) -> bool:
    """Every heavy element of mol at most as often as in pool: the molecule is made from those atoms only."""
    return all(pool[z] >= n for z, n in verify.heavy_atoms(mol).items())


def as_text(mol, like: str) -> str:
    """mol in the format of the text `like`: SELFIES of rdkit's canonical SMILES (as the data's SELFIES are
    written) when `like` is SELFIES, else canonical SMILES."""
    smiles = Chem.MolToSmiles(mol)
    if answers.looks_like_selfies(like):
        try:
            return selfies.encoder(smiles)
        except Exception:
            return ""
    return smiles


def stereo_mol(text):
    """SELFIES or SMILES -> Mol with its stereo kept (answers.mol_from_text strips it), or None."""
    if answers.looks_like_selfies(text):
        try:
            text = selfies.decoder(text)
        except Exception:
            return None
    with rdBase.BlockLogs():
        return Chem.MolFromSmiles(text) if text else None


# ----------------------------------------------------------------------------- the distractors of one question

def _key(text):
    return answers.mol_from_text(str(text).strip())[1]


def candidates(task, prompt, answer, rng, n, others=(), counts=None):
    """-> [(key, text)]: the distractor candidates of choose() (its docstring says which), each a molecule
    other than the answer, the prompt's input and each other, and judged wrong by verify.py."""
    input_text = answers.prompt_molecule(prompt) or ""
    input_mol = answers.mol_from_text(input_text)[0]
    used = {_key(answer), _key(input_text)} - {None}
    pool = verify.heavy_atoms(input_mol) if task == "forward" and input_mol is not None else None

    def edited(text, seen, itself=False):
        out = []
        mol0 = stereo_mol(text)
        for _, mol in ([("itself", mol0)] if itself and mol0 is not None else []) + edits(mol0):
            opt = as_text(mol, answer)
            key = _key(opt)
            if key and key not in used and key not in seen and verify.verify(task, prompt, opt, answer).score == 0:
                seen.add(key)
                out.append((pool is None or within_atoms(mol, pool), key, opt))
        return out

    seen = set()
    cands = edited(answer, seen)
    if cands:
        cands += edited(cands[int(rng.integers(len(cands)))][2], seen)
    if task in ("molediting", "retrosynthesis") and input_text:  # retrosynthesis: an edited product as "reactant"
        cands += edited(input_text, seen)
    if task == "forward" and input_mol is not None:  # the two largest starting materials, unreacted or edited
        with rdBase.BlockLogs():
            comps = sorted(Chem.GetMolFrags(input_mol, asMols=True), key=lambda m: -m.GetNumHeavyAtoms())[:2]
        for comp in comps:
            cands += edited(Chem.MolToSmiles(comp), seen, itself=True)
    if pool is not None and sum(c[0] for c in cands) >= n:
        cands = [c for c in cands if c[0]]
    cands = [(k, o) for _, k, o in cands]
    rest = []
    for k, o in others:
        if k not in used and k not in seen and verify.verify(task, prompt, o, answer).score == 0:
            seen.add(k)
            rest.append((k, o))
    cands += rest[:HARD_OTHERS]
    if counts is not None:  # the task's frequent answers too, so that "the most frequent answer" is no guide
        cands += sorted(rest[HARD_OTHERS:], key=lambda ko: -counts.get(ko[0], 0))[:HARD_OTHERS]
    return cands


def choose(task, prompt, answer, rng, n, others=(), counts=None, draws=DRAWS):
    """n distractor texts for a question whose right option is `answer`: edits of it mixed with other records'
    answers (`others`: [(key, text)], best first), each a different molecule (stereo-free canonical SMILES)
    from the answer, from every other option and from the prompt's input, and each judged wrong by
    verify.verify(task, prompt, option, answer) (a verifier that passes two options would make two right).

    Candidates: edits of the answer, edits of one (random) edit of it, for molediting edits of the input (an
    edit that does not do what was asked), for retrosynthesis edits of the product (a "reactant" that lacks an
    atom the product needs), for forward the two largest reactants unchanged (no reaction) and edited, and the
    HARD_OTHERS best other-record answers, given `counts` also the HARD_OTHERS most frequent ones; forward:
    candidates made only of the reactants' heavy atoms are used when there are enough. Of `draws` random n-subsets the
    one is kept whose answer ranks (among the options) closest to target ranks drawn uniformly from 0..n,
    one per surface feature: Morgan similarity to the input, mean similarity to the other options, length,
    token overlap with the prompt and, given `counts` (answers of the task by key), how often the option is
    another question's answer. So on each feature the answer is the largest (or smallest) of the options
    about 1 / (n + 1) of the time, as any option is. [] if there are fewer than n candidates. Deterministic."""
    cands = candidates(task, prompt, answer, rng, n, others, counts)
    input_mol = answers.mol_from_text(answers.prompt_molecule(prompt) or "")[0]
    if len(cands) < n:
        return []
    texts = [answer] + [o for _, o in cands]
    fps = [answers.MORGAN_BITS.GetFingerprint(m) if (m := answers.mol_from_text(t.strip())[0]) is not None
           else None for t in texts]
    pair = np.array([[DataStructs.TanimotoSimilarity(a, b) if a is not None and b is not None else 0.0
                      for b in fps] for a in fps])
    src = answers.MORGAN_BITS.GetFingerprint(input_mol) if input_mol is not None else None
    prompt_tokens = set(_TOKENS.findall(prompt))
    own = _key(answer)
    fixed = [  # per option, features that do not depend on the other options
        [DataStructs.TanimotoSimilarity(src, f) if src is not None and f is not None else 0.0 for f in fps],
        [float(len(t)) for t in texts],
        [len(set(tk) & prompt_tokens) / len(set(tk)) if (tk := _TOKENS.findall(t)) else 0.0 for t in texts]]
    if counts is not None:
        keys = [own] + [k for k, _ in cands]
        fixed.append([counts.get(k, 0) - (k == own) for k in keys])
    best, best_cost = None, None
    target = rng.integers(n + 1, size=len(fixed) + 1)  # one rank per feature, consensus last
    weights = [3.0, 1.0, 1.0] + [3.0] * (counts is not None) + [1.0]  # similarity and majority are the strongest
    for _ in range(draws):
        sub = rng.choice(len(cands), n, replace=False) + 1
        opts = np.concatenate([[0], sub])
        feats = [np.asarray(f)[opts] for f in fixed]
        feats.append(np.array([pair[i, [j for j in opts if j != i]].mean() for i in opts]))  # consensus
        cost = sum(w * abs(_rank(f) - t) for f, t, w in zip(feats, target, weights))
        if best_cost is None or cost < best_cost:
            best, best_cost = sorted(sub.tolist()), cost
    return [texts[j] for j in best]


def _rank(values):
    """How many options beat option 0 on a feature (a tie counts half)."""
    return float(np.sum(values[1:] > values[0]) + 0.5 * np.sum(values[1:] == values[0]))
