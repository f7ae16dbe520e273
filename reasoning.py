"""Rationales: a short, checkable computation written by rdkit before an answer, in one fixed format.

    <think> BODY </think> ANSWER

ANSWER is the record's answer in the release's format (e.g. "78.11"); BODY is one of (sums: integer counts
times values, every term written at one precision, the sum exact at that precision):

    weight      molecular weight: 6 x C 12.011 + 6 x H 1.008 = 78.114                       (benzene)
    tpsa        TPSA N,O: 1 x O(--) 9.23 + 2 x O(=) 17.07 + 1 x OH(-) 20.23 = 63.60            (aspirin)
    logp        Crippen logP: 1 x C1 0.1441 + 1 x C3 -0.2035 + 5 x H1 0.1230 + 1 x H2 -0.2677
                + 1 x O2 -0.2893 = -0.0014                                 (ethanol; one line in the answer)
    molediting  edit: removes F, adds O; QED 0.657 -> 0.636; similarity 0.56
    forward, retrosynthesis (atom-mapped reactions only)
                reaction centre: formed C2-O5; broken C2-O4

weight: atoms per element, implicit H included, times rdkit's standard atomic weights
(Chem.GetPeriodicTable().GetAtomicWeight, what Descriptors.MolWt sums; an isotope-labelled atom its isotope's mass).
tpsa: the polar atoms grouped by environment (element, H count, charge, bond orders) with their contributions of
Ertl, Rohde & Selzer (J. Med. Chem. 2000, 43, 3714), rdMolDescriptors._CalcTPSAContribs; "N,O" is Ertl's
definition (rdkit's default), "N,O,S,P" the one with sulfur and phosphorus (PubChem's).
logp: the atoms, hydrogens included, grouped by their Wildman-Crippen type (Wildman & Crippen, JCICS 1999, 39, 868)
with the type's contribution, rdMolDescriptors._CalcCrippenContribs (what Crippen.MolLogP sums).
molediting: the atoms outside the maximum common substructure of source and answer (rdFMCS), QED before and
after, and Morgan (r=2, 2048 bits) Tanimoto similarity of the answer to the source (verify.py's thresholds).
Reactions: the bonds between atom-mapped atoms that the reaction forms, breaks, or changes in order; a bond from a
mapped atom to an unmapped (leaving) atom names that atom by its element only. Records without atom maps (the
demo's and reactions.py's: ORD reaction SMILES are unmapped there) get no rationale; neither do the other tasks.

A property rationale is written only where rdkit's sum, rounded to the record's answer precision, is the record's
label (a label from another model, e.g. PubChem's XLogP3, keeps its bare answer). The stated sum rounds to the
answer: check() accepts a sum within half a unit of the answer's last decimal.

Reading (answers.cut_answer): the answer is the text after the closing tag; an unclosed rationale, or one with
nothing after it, is no answer. check() is verify.py's test of a rationale against its own answer. Training on
rationales then answers is the recipe of STaR (Zelikman et al., NeurIPS 2022) and rejection-sampling fine-tuning
(Yuan et al., 2023), here with rationales synthesised by rdkit instead of sampled from a model.
"""
import re
from collections import Counter
from decimal import Decimal

from rdkit import Chem, DataStructs, rdBase
from rdkit.Chem import QED, rdFMCS, rdMolDescriptors

from answers import _NUMBER, END_MARKERS, MAX_CHARS, MORGAN_BITS, THINK, as_text, cut_answer, parse_molecule, \
    prompt_molecule

OPEN, CLOSE = THINK
PROPERTY_TASKS = ("weight", "tpsa", "logp")
REACTION_TASKS = ("forward", "retrosynthesis")
TASKS_WITH_RATIONALE = (*PROPERTY_TASKS, "molediting", *REACTION_TASKS)
SUM_TASKS = (*PROPERTY_TASKS, "arith")  # rationales that are one sum (arith.py: the generated word problems)
# decimals of the terms and the sum: rdkit's atomic weights have <= 3, Ertl's contributions 2, Crippen's 4
DECIMALS = {"weight": 3, "tpsa": 2, "logp": 4}
HEADERS = {"weight": "molecular weight", "tpsa": "TPSA", "logp": "Crippen logP"}
MCS_TIMEOUT = 2  # seconds per rdFMCS search (small molecules take milliseconds)
QED_DECIMALS, SIM_DECIMALS = 3, 2
KEY = "Answers with a rationale"  # eval.py's per-task count

_NUM = r"[-+]?\d+(?:\.\d+)?"
_TERM = re.compile(rf"(\d+) x (\S+) ({_NUM})")
_SUM = re.compile(rf"(?P<head>[^:]+): (?P<terms>.+) = (?P<sum>{_NUM})")
_EDIT = re.compile(rf"edit: removes .*, adds .*; QED ({_NUM}) -> ({_NUM}); similarity ({_NUM})")
_MAPPED = re.compile(r":\d+\]")
_BOND = {Chem.BondType.SINGLE: "-", Chem.BondType.DOUBLE: "=", Chem.BondType.TRIPLE: "#",
         Chem.BondType.AROMATIC: ":"}


# ----------------------------------------------------------------------------- the format

def _fixed(x, decimals) -> Decimal:
    return Decimal(repr(float(x))).quantize(Decimal(1).scaleb(-decimals))


def _decimals(text) -> int:
    """Decimals of a written number ("78.11" -> 2, "7.811e1" -> 2, "78" -> 0)."""
    return max(0, -Decimal(text.replace("\u2212", "-")).as_tuple().exponent)


def write_sum(header, terms, decimals) -> str:
    """[(count, label, value)] -> "HEADER: n x LABEL v + ... = S", each value and S at `decimals`."""
    terms = [(n, label, _fixed(v, decimals)) for n, label, v in terms]
    total = sum((n * v for n, _, v in terms), Decimal(0)).quantize(Decimal(1).scaleb(-decimals))
    return f"{header}: " + " + ".join(f"{n} x {label} {v}" for n, label, v in terms) + f" = {total}"


def read_sum(body):
    """"HEADER: n x LABEL v + ... = S" -> ([(count, label, value)], S as text), None if it is not one."""
    m = _SUM.fullmatch(body)
    if m is None:
        return None
    terms = [_TERM.fullmatch(t) for t in m.group("terms").split(" + ")]
    if not all(terms):
        return None
    return [(int(t.group(1)), t.group(2), Decimal(t.group(3))) for t in terms], m.group("sum")


def join(body, answer) -> str:
    """The training answer: "<think> BODY </think> ANSWER" (the answer alone without a body)."""
    return f"{OPEN} {body} {CLOSE} {answer}" if body else answer


def _before_end(text):
    text = as_text(text)
    for marker in END_MARKERS:
        text = text.split(marker)[0]
    return text


def has_rationale(text) -> bool:
    """The text (before its end marker) holds an opening tag: answers.cut_answer reads it after the rationale."""
    return OPEN in _before_end(text)


def split(text):
    """-> (the rationale's body, stripped, or None without one; the answer as answers.cut_answer reads it)."""
    head = _before_end(text)
    if OPEN not in head:
        return None, cut_answer(head)
    body = head.partition(OPEN)[2].partition(CLOSE)[0]
    return body.strip(), cut_answer(head)


# ----------------------------------------------------------------------------- builders

def weight_terms(mol):
    """[(count, element, atomic weight)], implicit H included, C and H first then alphabetical (Hill order)."""
    pt = Chem.GetPeriodicTable()
    counts = Counter()
    for a in Chem.AddHs(mol).GetAtoms():
        iso = a.GetIsotope()
        w = pt.GetMassForIsotope(a.GetAtomicNum(), iso) if iso else pt.GetAtomicWeight(a.GetAtomicNum())
        counts[(f"{iso}{a.GetSymbol()}" if iso else a.GetSymbol(), w)] += 1
    order = {"C": 0, "H": 1}
    return [(n, el, w) for (el, w), n in sorted(counts.items(), key=lambda kv: (order.get(kv[0][0], 2), kv[0][0]))]


def _environment(atom) -> str:
    """'O(=)', 'OH(-)', 'nH(::)', 'N+(-=-)': element (lower case if aromatic), H count, charge, bond orders."""
    sym = atom.GetSymbol().lower() if atom.GetIsAromatic() else atom.GetSymbol()
    h = atom.GetTotalNumHs()
    q = atom.GetFormalCharge()
    charge = "" if q == 0 else ("+" if q > 0 else "-") * abs(q)
    bonds = "".join(sorted(_BOND.get(b.GetBondType(), "~") for b in atom.GetBonds()))
    return f"{sym}{'H' if h else ''}{h if h > 1 else ''}{charge}({bonds})"


def tpsa_terms(mol, include_s_and_p=False):
    """[(count, environment, Ertl contribution)] of the polar atoms, by environment then value."""
    contribs = rdMolDescriptors._CalcTPSAContribs(mol, True, include_s_and_p)
    counts = Counter((_environment(a), round(c, 2)) for a, c in zip(mol.GetAtoms(), contribs) if c)
    return [(n, env, c) for (env, c), n in sorted(counts.items())]


def logp_terms(mol):
    """[(count, Crippen type, contribution)] over all atoms with explicit hydrogens, by type."""
    mh = Chem.AddHs(mol)
    n = mh.GetNumAtoms()
    types, labels = [0] * n, [""] * n  # filled in place by rdkit (pre-sized lists)
    contribs = rdMolDescriptors._CalcCrippenContribs(mh, True, types, labels)
    counts = Counter((t, round(c[0], 4)) for t, c in zip(labels, contribs) if c[0])
    return [(k, t, c) for (t, c), k in sorted(counts.items(), key=lambda kv: _type_order(kv[0][0]))]


def _type_order(label):
    """Crippen type labels in the table's order: "C2" before "C10", then by element."""
    m = re.fullmatch(r"(\D*)(\d*)", label)
    return (m.group(1), int(m.group(2) or 0)) if m else (label, 0)


def _matches(label, total) -> bool:
    """The label's number equals the sum at the label's precision (half a unit of its last decimal)."""
    m = _NUMBER.search(as_text(label))
    if m is None:
        return False
    d = _decimals(m.group(0))
    return abs(Decimal(total) - Decimal(m.group(0).replace("\u2212", "-"))) <= Decimal(5).scaleb(-d - 1)


def property_rationale(task, mol, label):
    """weight / tpsa / logp body for a molecule, or None where rdkit's sum is not the label at its precision
    (tpsa: Ertl's N,O definition, else the one with S and P)."""
    variants = {"weight": [(HEADERS["weight"], weight_terms(mol))], "logp": [(HEADERS["logp"], logp_terms(mol))],
                "tpsa": [("TPSA N,O", tpsa_terms(mol)), ("TPSA N,O,S,P", tpsa_terms(mol, True))]}[task]
    for header, terms in variants:
        zero = f"{0:.{DECIMALS[task]}f}"
        body = write_sum(header, terms, DECIMALS[task]) if terms else f"{header}: 0 x none {zero} = {zero}"
        if _matches(label, read_sum(body)[1]):
            return body
    return None


def _fragment(mol, atoms) -> str:
    if not atoms:
        return "nothing"
    try:
        return Chem.MolFragmentToSmiles(mol, atomsToUse=sorted(atoms), isomericSmiles=False, canonical=True)
    except Exception:
        return f"{len(atoms)} atoms"


def similarity(a, b) -> float:
    """Morgan (r=2, 2048 bits) Tanimoto, verify.py's molediting similarity."""
    return DataStructs.TanimotoSimilarity(MORGAN_BITS.GetFingerprint(a), MORGAN_BITS.GetFingerprint(b))


def edit_rationale(source, target):
    """molediting body: what the edit removes and adds (atoms outside the maximum common substructure),
    QED before -> after, similarity of the target to the source."""
    with rdBase.BlockLogs():
        mcs = rdFMCS.FindMCS([source, target], timeout=MCS_TIMEOUT, ringMatchesRingOnly=True,
                             completeRingsOnly=True)
        core = Chem.MolFromSmarts(mcs.smartsString) if mcs.numAtoms else None
        kept = [set(m.GetSubstructMatch(core)) if core is not None else set() for m in (source, target)]
    removed = [a.GetIdx() for a in source.GetAtoms() if a.GetIdx() not in kept[0]]
    added = [a.GetIdx() for a in target.GetAtoms() if a.GetIdx() not in kept[1]]
    return (f"edit: removes {_fragment(source, removed)}, adds {_fragment(target, added)}; "
            f"QED {QED.qed(source):.{QED_DECIMALS}f} -> {QED.qed(target):.{QED_DECIMALS}f}; "
            f"similarity {similarity(source, target):.{SIM_DECIMALS}f}")


def _mapped_bonds(mol):
    """{(label a, label b): bond symbol} of the bonds with a mapped atom, labels "C2" (mapped) or "Cl" (not)."""
    out = {}
    for b in mol.GetBonds():
        a1, a2 = b.GetBeginAtom(), b.GetEndAtom()
        if not (a1.GetAtomMapNum() or a2.GetAtomMapNum()):
            continue
        ends = sorted((a1, a2), key=lambda a: (a.GetAtomMapNum() == 0, a.GetAtomMapNum()))
        out[tuple((a.GetAtomMapNum(), a.GetSymbol()) for a in ends)] = _BOND.get(b.GetBondType(), "~")
    return out


def reaction_centre(rxn_smiles):
    """An atom-mapped "reactants>agents>products" SMILES -> (formed, broken, changed) bond texts, each sorted by
    map number ("C2-O5"; changed: "C1=C2 to C1-C2"); None if it is unparsable or unmapped on either side."""
    parts = as_text(rxn_smiles).split(" ")[0].split(">")
    if len(parts) != 3 or len(rxn_smiles) > MAX_CHARS:
        return None
    with rdBase.BlockLogs():
        left, right = Chem.MolFromSmiles(parts[0]), Chem.MolFromSmiles(parts[2])
    if left is None or right is None:
        return None
    product_maps = {a.GetAtomMapNum() for a in right.GetAtoms()} - {0}
    if not product_maps or not {a.GetAtomMapNum() for a in left.GetAtoms()} & product_maps:
        return None
    before, after = _mapped_bonds(left), _mapped_bonds(right)
    before = {k: v for k, v in before.items() if k[0][0] in product_maps}  # bonds inside leaving groups: not shown

    def name(ends, sym):
        (m1, s1), (m2, s2) = ends
        return f"{s1}{m1 or ''}{sym}{s2}{m2 or ''}"
    formed = [name(k, v) for k, v in sorted(after.items()) if k not in before]
    broken = [name(k, v) for k, v in sorted(before.items()) if k not in after]
    changed = [f"{name(k, before[k])} to {name(k, v)}" for k, v in sorted(after.items())
               if k in before and before[k] != v]
    return formed, broken, changed


def reaction_rationale(rxn_smiles):
    """Reaction body: "reaction centre: formed ...; broken ...[; changed ...]", None without a mapped centre."""
    got = reaction_centre(rxn_smiles)
    if not got or not any(got):
        return None
    formed, broken, changed = got
    body = f"reaction centre: formed {', '.join(formed) or 'none'}; broken {', '.join(broken) or 'none'}"
    return body + (f"; changed {', '.join(changed)}" if changed else "")


def mapped_reaction(task_key, rec):
    """The record's atom-mapped reaction SMILES: its "reaction_smiles" / "rxn_smiles" (or metadata's), else its
    input and output when they are mapped SMILES themselves; None without atom maps."""
    meta = rec.get("metadata") if isinstance(rec.get("metadata"), dict) else {}
    for where in (rec, meta):
        for k in ("reaction_smiles", "rxn_smiles"):
            v = where.get(k)
            if isinstance(v, str) and ">" in v and _MAPPED.search(v):
                return v
    inp, out = as_text(rec.get("input")), as_text(rec.get("output"))
    if _MAPPED.search(inp) and _MAPPED.search(out):
        return f"{inp}>>{out}" if task_key == "forward" else f"{out}>>{inp}"
    return None


def rationale(task_key, rec, answer=None):
    """The body of a record's rationale (task key of tasks.TASKS), None where the task has none or the record
    gives none. answer: the answer as trained (default the record's output), whose molecule molediting reads."""
    answer = as_text(rec.get("output") if answer is None else answer)
    try:
        if task_key in PROPERTY_TASKS or task_key == "molediting":
            mol, _ = parse_molecule(as_text(rec.get("input")))
            if mol is None:
                return None
            if task_key in PROPERTY_TASKS:
                return property_rationale(task_key, mol, answer)
            target, _ = parse_molecule(answer)
            return edit_rationale(mol, target) if target is not None else None
        if task_key in REACTION_TASKS:
            rxn = mapped_reaction(task_key, rec)
            return reaction_rationale(rxn) if rxn else None
    except Exception:  # an rdkit corner: no rationale, the bare answer
        return None
    return None


def with_rationale(task_key, rec, answer):
    """data.load_tasks(reasoning=True): the answer with the record's rationale before it (unchanged without one)."""
    return join(rationale(task_key, rec, answer), answer)


# ----------------------------------------------------------------------------- checking

def _within(x, ref_text) -> bool:
    """x equals the written number at the written number's precision (half a unit of its last decimal)."""
    return abs(Decimal(x) - Decimal(ref_text)) <= Decimal(5).scaleb(-_decimals(ref_text) - 1)


def check(task, prompt, prediction):
    """verify.py's rationale check: None where the rationale agrees with itself and its answer (or there is none,
    an empty one, or nothing to check for the task), else "rationale unreadable" (a property or edit rationale
    not in the format) or "rationale inconsistent": terms that do not add up to the stated sum, a sum that is not
    the answer at the answer's precision, or molediting's QED / similarity not those of the molecules."""
    body, answer = split(prediction)
    if not body or task not in (*SUM_TASKS, "molediting"):
        return None
    if len(body) > MAX_CHARS:
        return "rationale unreadable"
    if task in SUM_TASKS:
        got, number = read_sum(body), _NUMBER.search(answer)
        if got is None:
            return "rationale unreadable"
        terms, total = got
        if number is None:
            return None  # no answer to compare: verify.py's own reading fails it
        adds_up = _within(sum((n * v for n, _, v in terms), Decimal(0)), total)
        return None if adds_up and _within(Decimal(total), number.group(0).replace("\u2212", "-")) \
            else "rationale inconsistent"
    m = _EDIT.fullmatch(body)
    if m is None:
        return "rationale unreadable"
    source, _ = parse_molecule(prompt_molecule(prompt) or "")
    target, _ = parse_molecule(answer)
    if source is None or target is None:
        return None  # verify.py's own reading fails these
    stated = zip(m.groups(), (QED.qed(source), QED.qed(target), similarity(source, target)))
    return None if all(_within(_fixed(x, 8), s) for s, x in stated) else "rationale inconsistent"


# ----------------------------------------------------------------------------- counting (eval.py)

def count(rows) -> dict:
    """{task: answers whose prediction carries a rationale} of predictions.jsonl rows (0 for a task without)."""
    out = {}
    for r in rows:
        task = as_text(r.get("task"))
        out[task] = out.get(task, 0) + has_rationale(r.get("prediction"))
    return out


def add_counts(results, rows):
    """results {task: {metric: value}} gain KEY, the count of answers with a rationale."""
    for task, n in count(rows).items():
        if task in results:
            results[task][KEY] = n
    return results
