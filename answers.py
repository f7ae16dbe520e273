"""Reading an answer out of model text: where it ends, the molecule or the number in it, one InChI, one Morgan
fingerprint. metrics.py, verify.py, baselines.py, significance.py, mcq.py, eval.py and rl.py read answers
here, so a score, a verdict, a baseline and a reward see the same molecule and the same number.

    cut_answer("CCO<|im_end|>junk")          -> "CCO"
    mol_from_text("[C][C][O]")               -> (Mol, "CCO")     the release's reading: canonical, stereo stripped
    parse_molecule("C(C)(C)(C)(C)C")         -> (None, "invalid molecule")   the strict reading, with a reason
    first_number("C12 weighs 180.2 g/mol")   -> 180.2            a number starts a word; non-finite is no number
    first_number("LogP -1.2", release_compat=True) -> 1.2        the release's first unsigned number

Nothing here raises on model output, and every reader stops at MAX_CHARS characters (longer is no answer),
which bounds the time per answer: selfies.decoder is superlinear in the length of its input.
"""
import math
import re

import selfies
from rdkit import Chem, RDLogger, rdBase
from rdkit.Chem import rdFingerprintGenerator

RDLogger.DisableLog("rdApp.*")

# Where an answer ends: the release cuts at Llama-3's <|eot_id|> only; other chat templates end in these.
END_MARKERS = ("<|eot_id|>", "<|im_end|>", "<|end_of_text|>", "<|endoftext|>", "</s>")
RELEASE_EOS = "<|eot_id|>"
# A rationale before the answer (reasoning.py): "<think> ... </think> ANSWER"
THINK = ("<think>", "</think>")
# Bounds on the work per answer: the release generates at most 512 tokens (a few thousand characters), and
# InChI handles at most 1024 atoms; the biggest molecules of the data (ChEBI-20) have a few hundred heavy atoms.
MAX_CHARS = 10_000
MAX_ATOMS = 500

MORGAN_COUNT = rdFingerprintGenerator.GetMorganGenerator(radius=2)              # == AllChem.GetMorganFingerprint(m, 2)
MORGAN_BITS = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)  # == ...AsBitVect(m, 2, 2048)

_SELFIES_LIKE = re.compile(r"(?:\[[^\[\]\s]+\]|\.)+")
_SELFIES_ONLY = re.compile(r"(?:\[[^\[\]\s]*\]|\.)+")
_SELFIES_RUN = re.compile(r"(?:\[[^\[\]\s]+\])+")
_RELEASE_NUMBER = re.compile(r"\d+(?:\.\d+)?")
# a number starts a word: the sign counts where it is not a hyphen inside a word ("3-methyl"), and a digit inside
# a word ("C12", "[Ring1]") is not a number
_NUMBER = re.compile(r"(?<![\w.])[-+\u2212]?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")


# ----------------------------------------------------------------------------- text

def as_text(x) -> str:
    """Any value a row may hold -> str: bytes decode as UTF-8 with replacement, lone surrogates (which rdkit
    cannot take) become '?', None is empty."""
    if x is None:
        return ""
    if isinstance(x, bytes):
        x = x.decode("utf-8", errors="replace")
    elif not isinstance(x, str):
        x = str(x)
    return x.encode("utf-8", errors="replace").decode("utf-8")


def until_end(text, markers=END_MARKERS):
    """The text before the first end marker (a rationale kept): what an answer is before cut_answer reads it."""
    for marker in markers:
        text = text.split(marker)[0]
    return text


def cut_answer(text, release_compat=False):
    """The answer part of a decoded generation: text before the first end marker, stripped (the release
    cuts at <|eot_id|> only and does not strip). A rationale (reasoning.py) is dropped: where the text holds
    "<think>", the answer is what follows the first "</think>" after it, "" if there is none (a rationale
    without an answer); text without "<think>" reads exactly as before. release_compat drops a rationale too,
    with the whitespace after "</think>": the release's answers have none, so none of its numbers change."""
    text = until_end(text or "", (RELEASE_EOS,) if release_compat else END_MARKERS)
    if THINK[0] in text:
        _, closed, after = text.partition(THINK[0])[2].partition(THINK[1])
        text = after.lstrip() if closed else ""
    return text if release_compat else text.strip()


# ----------------------------------------------------------------------------- molecules, the release's reading

def mol_from_selfies(s):
    """SELFIES -> (rdkit Mol, canonical SMILES without stereo) or (None, None), as the release does:
    decode, parse, write canonical non-isomeric SMILES, parse that again. Never raises."""
    if not s or len(s) > MAX_CHARS:
        return None, None
    try:
        smiles = selfies.decoder(s)
    except Exception:
        return None, None
    if not smiles:  # e.g. "hello" decodes to "" (no SELFIES tokens): not a molecule
        return None, None
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None, None
    can = Chem.MolToSmiles(mol, isomericSmiles=False, canonical=True)
    mol = Chem.MolFromSmiles(can)
    return (mol, can) if mol is not None else (None, None)


def mol_from_smiles(s):
    """SMILES -> (rdkit Mol, canonical SMILES without stereo) or (None, None), canonicalised as
    mol_from_selfies. Never raises. Non-ASCII text is not a SMILES: rdkit would skip such bytes
    ("\ufffd\ufffdC" would parse as methane)."""
    if not s or not s.isascii() or len(s) > MAX_CHARS:
        return None, None
    try:
        mol = Chem.MolFromSmiles(s)
        if mol is None or mol.GetNumAtoms() == 0:
            return None, None
        can = Chem.MolToSmiles(mol, isomericSmiles=False, canonical=True)
        mol = Chem.MolFromSmiles(can)
    except Exception:
        return None, None
    return (mol, can) if mol is not None else (None, None)


def looks_like_selfies(s):
    """Only bracket tokens and dots ("[C][=O].[Na+1]"); a SMILES of bracket atoms only also qualifies."""
    return bool(s) and _SELFIES_LIKE.fullmatch(s) is not None


def mol_from_text(s, release_compat=False):
    """A molecule answer in either format: SELFIES when it looks like SELFIES and decodes, else SMILES
    ("[Na+].[Cl-]" is no SELFIES: "[Na+]" is not a SELFIES token). With release_compat, SELFIES only
    (the release's decode of its SELFIES run)."""
    if release_compat:
        return mol_from_selfies(s)
    got = mol_from_selfies(s) if looks_like_selfies(s) else (None, None)
    return got if got[0] is not None else mol_from_smiles(s)


def inchi(mol):
    """Standard InChI, None where InChI gives none (e.g. some exotic valences)."""
    try:
        with rdBase.BlockLogs():
            return Chem.MolToInchi(mol) or None
    except Exception:
        return None


def same_molecule(a, b):
    """Two molecules (SELFIES or SMILES) are the same: InChI equality after the release's stereo stripping."""
    (ma, _), (mb, _) = mol_from_text(a), mol_from_text(b)
    ia = inchi(ma) if ma is not None else None
    return ia is not None and mb is not None and ia == inchi(mb)


def prompt_molecule(prompt):
    """The input molecule (SELFIES or SMILES) of a prompt. Every task puts it at the end ("... The molecule
    SELFIES sequence is: [C][C][O]"): the last word (a reaction's product side) when it parses; else the
    last run of [..] tokens; None if there is neither, or the last word is longer than MAX_CHARS."""
    words = as_text(prompt).split()
    if words and len(words[-1]) > MAX_CHARS:
        return None
    last = words[-1].rstrip(".").split(">>")[-1] if words else ""
    if mol_from_text(last)[0] is not None:
        return last
    runs = _SELFIES_RUN.findall(as_text(prompt))
    return runs[-1] if runs else None


# ----------------------------------------------------------------------------- molecules, the strict reading

def parse_molecule(text):
    """SELFIES or SMILES -> (rdkit Mol without stereo, None) or (None, reason) with a reason of verify.py's
    REASONS. A string made only of [..] tokens (and '.') is read as SELFIES (SMILES would also accept
    "[C][C]", as radicals); anything else, or SELFIES the decoder rejects, as SMILES. Sanitised strictly
    (a wrong valence is "invalid molecule", not a silently repaired molecule); stereo dropped, as the
    release scores molecules."""
    text = as_text(text).strip()
    if not text:
        return None, "empty"
    if len(text) > MAX_CHARS:
        return None, "too long"
    smiles = None
    if _SELFIES_ONLY.fullmatch(text):
        try:
            smiles = selfies.decoder(text)
        except Exception:
            smiles = None
        if smiles == "" or (smiles is not None and not smiles.strip(".")):
            return None, "unparsable"  # e.g. "[nop]" or unknown tokens only: no atoms
    if smiles is None:
        if not text.isascii() or any(c.isspace() for c in text):
            return None, "unparsable"  # SMILES is ASCII without spaces (rdkit skips some non-ASCII bytes silently)
        smiles = text
    with rdBase.BlockLogs():
        raw = Chem.MolFromSmiles(smiles, sanitize=False)
        if raw is None or raw.GetNumAtoms() == 0:
            return None, "unparsable"
        if raw.GetNumAtoms() > MAX_ATOMS:
            return None, "too long"
        try:
            Chem.SanitizeMol(raw)
        except Exception:
            return None, "invalid molecule"
        Chem.RemoveStereochemistry(raw)
    return raw, None


# ----------------------------------------------------------------------------- numbers

def first_number(text, release_compat=False):
    """The first number of the text that starts a word ("-1.2 g/mol" -> -1.2, "LogP = .5" -> 0.5, "C12 weighs
    180.2" -> 180.2; a Unicode minus and exponents count); None if there is none, the text is longer than
    MAX_CHARS, or the number is not finite ("1e309"). release_compat: the release's reading, the first
    unsigned decimal anywhere ("LogP -1.2" -> 1.2, "C12 weighs 180.2" -> 12)."""
    text = as_text(text)
    if len(text) > MAX_CHARS:
        return None
    m = (_RELEASE_NUMBER if release_compat else _NUMBER).search(text)
    x = float(m.group(0).replace("\u2212", "-")) if m else None
    return x if x is not None and math.isfinite(x) else None


def strict_float(text):
    """float(text) as the release parses HOMO/LUMO and yields; None if it is not a finite number."""
    try:
        x = float(text)
    except (TypeError, ValueError, OverflowError):
        return None
    return x if math.isfinite(x) else None
