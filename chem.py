"""Molecule strings: SMILES <-> SELFIES, canonical SMILES, heavy-atom counts, and the stable hash that
splits data by molecule. Plain rdkit / selfies, no torch (molecule.py is the graph modality)."""
import hashlib

import selfies as sf
from rdkit import Chem, rdBase


def selfies_to_smiles(s: str) -> str:
    """SELFIES -> SMILES (selfies.decoder); ValueError if it does not decode to a molecule."""
    try:
        smi = sf.decoder(s)
    except Exception as e:  # DecoderError and friends
        raise ValueError(f"undecodable SELFIES ({type(e).__name__})") from None
    if not smi:
        raise ValueError("SELFIES decodes to an empty molecule")
    return smi


def smiles_to_selfies(smi: str) -> str:
    """SMILES -> SELFIES; ValueError where selfies refuses (hypervalent atoms, ~0.2% of NCI)."""
    try:
        out = sf.encoder(smi)
    except Exception as e:
        raise ValueError(f"SMILES not encodable as SELFIES ({type(e).__name__})") from None
    if out is None:
        raise ValueError("SMILES not encodable as SELFIES")
    return out


def selfies_text_to_smiles(text: str) -> str:
    """A molecule field ("a.b", or a reaction "a.b>>c") from SELFIES to canonical isomeric SMILES per
    side, as the release's SMILES ablation writes it ([A] data_pipe/datasets.py selfies2smiles: rdkit's
    canonical SMILES, or the decoded string where rdkit cannot parse it); ValueError if undecodable."""
    return ">>".join(canonical(s) or s for s in map(selfies_to_smiles, text.split(">>")))


def heavy_atoms(smi: str) -> int:
    """Heavy atoms of an rdkit-parsed SMILES (= graph nodes = atom tokens); ValueError if unparsable."""
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smi)
    if mol is None or mol.GetNumAtoms() == 0:
        raise ValueError("rdkit cannot parse the graph-source molecule")
    return mol.GetNumAtoms()


def canonical(smi: str, isomeric: bool = True) -> str | None:
    with rdBase.BlockLogs():
        m = Chem.MolFromSmiles(smi)
    return Chem.MolToSmiles(m, isomericSmiles=isomeric) if m is not None else None


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big")
