"""Data-file readers: the release's JSON / JSON-lines record files, ChEBI-20 text files, and where each
task's files sit in a data folder (the published layout, the release code's layout, a flat folder); and an
error of writing a file, in words (disk_error)."""
import errno
import json
import os

import reactions
from chem import canonical, smiles_to_selfies
from tasks import Task


def read_records(path: str, task: str | None = None, skipped=None) -> list[dict]:
    """A JSON list of records, JSON lines, a ChEBI-20 text file (CID, SMILES, description), or an ORD
    dataset file (.pb.gz / .pb: that task's records, reactions.py; reactions left out are counted in the
    Counter `skipped`). A malformed JSON line is a ValueError naming the file and the line; an unreadable
    ORD file is a reactions.OrdError naming the file."""
    if reactions.ord_files(path) == [path]:
        return reactions.task_records(path, task, skipped)
    if path.endswith((".txt", ".tsv")):
        return read_chebi20(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); task files are UTF-8 JSON") from None
    head = text.lstrip()[:1]
    if head == "[":
        try:
            recs = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: line {e.lineno}: malformed JSON ({e.msg})") from None
    else:
        recs = []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                recs.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {i}: malformed JSON line ({e.msg})") from None
    for i, r in enumerate(recs):
        if not isinstance(r, dict):
            raise ValueError(f"{path}: record {i + 1} is a {type(r).__name__}, not a JSON object")
    return recs


def read_jsonl(path: str, required=(), expected: str = "") -> list[dict]:
    """One JSON object per line (predictions.jsonl, mcq.jsonl). Bytes that are not UTF-8 are replaced (a
    model's bytes never stop a run); a line that is not a JSON object, or lacks a `required` key, is a
    ValueError naming the file and the line."""
    rows = []
    with open(path, "rb") as f:
        for i, raw in enumerate(f, 1):
            line = raw.decode("utf-8", errors="replace")
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i}: not a JSON line ({e})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{i}: a JSON {type(row).__name__}, not an object")
            missing = [k for k in required if k not in row]
            if missing:
                raise ValueError(f"{path}:{i}: missing key(s) {missing}"
                                 + (f"; expected {expected}" if expected else ""))
            rows.append(row)
    return rows


def read_chebi20(path: str) -> list[dict]:
    """ChEBI-20 (MolT5) split files -> molcap records; split from the file name (train/validation/test)."""
    try:
        return _read_chebi20(path)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None


def _read_chebi20(path: str) -> list[dict]:
    name = os.path.basename(path).lower()
    split = "test" if "test" in name else "validation" if "valid" in name else "train"
    recs = []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if [h.lower() for h in header[:3]] != ["cid", "smiles", "description"]:
            raise ValueError(f"{path}: line 1: expected a ChEBI-20 header 'CID<TAB>SMILES<TAB>description', "
                             f"got {header}")
        for i, line in enumerate(f, 2):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3:
                raise ValueError(f"{path}: line {i}: expected 3 tab-separated fields, got {len(parts)}")
            smi = parts[1].replace("\\\\", "\\")  # MolT5's files double every backslash (bond stereo)
            try:
                inp = smiles_to_selfies(smi)
            except ValueError:
                try:
                    inp = smiles_to_selfies(canonical(smi) or smi)
                except ValueError:
                    inp = None  # skipped and counted downstream
            recs.append({"instruction": "", "input": inp, "output": parts[2], "id": f"CID{parts[0]}",
                         "metadata": {"split": split, "smiles": smi}})
    return recs


def task_files(root: str, task: Task, split: str) -> list[tuple[str, str, bool]]:
    """-> [(path, eval set, from a split folder)] for a task in a data folder, published names first,
    then the release code's names, then a flat folder. Empty if nothing matches."""
    return [(p, task.key if es in ("train", "test") else es, sf) for p, es, sf in _task_files(root, task, split)]


def _task_files(root, task, split):
    out = []
    sets = task.released["train" if split == "train" else "test"]
    sub = "train" if split == "train" else "test"
    for es, stem in sets.items():  # 1. the published dataset
        for ext in (".json", ".jsonl"):
            p = os.path.join(root, sub, stem + ext)
            if os.path.isfile(p):
                out.append((p, es if split != "train" else task.key, True))
                break
    if out:
        return out
    if split == "train":  # 2. the release code: first listdir hit of the substring (sorted: deterministic)
        d = os.path.join(root, "train")
        if os.path.isdir(d):
            hits = sorted(f for f in os.listdir(d) if task.code in f)
            if task.key == "yield":  # the release would take only the first; BH and SM both train here
                out = [(os.path.join(d, f), task.key, True) for f in hits]
            elif hits:
                out = [(os.path.join(d, hits[0]), task.key, True)]
    else:
        for sub in ("evaluate", "test"):
            for es, fname in task.code_eval.items():
                p = os.path.join(root, sub, fname)
                if os.path.isfile(p):
                    out.append((p, es, True))
            if out:
                return out
    if out:
        return out
    if task.key == "molcap":  # ChEBI-20 text files
        for cand in (f"ChEBI-20_data/{'train' if split == 'train' else 'test'}.txt",):
            p = os.path.join(root, cand)
            if os.path.isfile(p):
                return [(p, "molcap", True)]
    # 3. flat folder holding both splits (filtered by metadata.split)
    names = [s + ext for s in sets.values() for ext in (".json", ".jsonl")]
    names += list(task.code_eval.values()) if split != "train" else []
    for n in names:
        p = os.path.join(root, n)
        if os.path.isfile(p):
            es = next((e for e, s in sets.items() if n.startswith(s + ".")), None) or \
                next((e for e, f in task.code_eval.items() if f == n), task.key)
            out.append((p, es if split != "train" else task.key, False))
    if not out and os.path.isdir(root):
        hits = sorted(f for f in os.listdir(root) if task.code in f and f.endswith((".json", ".jsonl")))
        out = [(os.path.join(root, hits[0]), task.key, False)] if hits else []
    if not out and task.key in reactions.ORD_TASKS:  # 4. ORD dataset files (a file or a folder of them)
        out = [(p, task.key, False) for p in reactions.ord_files(root)]
    return out


def disk_error(e: OSError, path) -> str:
    """An OSError of writing, in words: a full disk and a read-only file system say so, with the path."""
    why = {errno.ENOSPC: "the disk is full (ENOSPC)", errno.EROFS: "the file system is read-only (EROFS)",
           errno.EACCES: "permission denied (EACCES)", errno.EDQUOT: "the disk quota is exceeded (EDQUOT)"}
    return f"cannot write {getattr(e, 'filename', None) or path}: {why.get(e.errno, e.strerror or str(e))}"
