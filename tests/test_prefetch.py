"""data.Prefetcher (train.py --prefetch): the same batches in the same order as the synchronous Loader
across epochs, graphs included; a resume from its state_dict continues exactly where the consumer was
(not where the background thread had got to); a collate error reaches the training thread."""
import numpy as np
import pytest

import data
import model as M
from tokenizer import MOL_PLACEHOLDER as MOL

SMILES = ["CCO", "c1ccccc1", "CC(=O)O", "CCN", "OCCO", "CCCC", "C1CC1", "CC(C)O", "CC#N", "C=CC=C", None, None]


@pytest.fixture(scope="module")
def samples_tok():
    _, tok = M.load_model("tiny")
    samples = [data.Sample(task="molcap" if s else "iupac", eval_set="x", id=f"f:{i}",
                           prompt=f"Describe {MOL} {i}." if s else f"Name {i}.", answer="y" * (i + 1), smiles=s,
                           length=40 + 3 * i) for i, s in enumerate(SMILES)]
    return samples, tok


def same(a, b):
    assert a["ids"] == b["ids"] and a["input_ids"] == b["input_ids"] and a["labels"] == b["labels"]
    for ga, gb in zip(a["graphs"], b["graphs"]):
        assert (ga is None) == (gb is None)
        if ga is not None:
            assert ga.num_nodes == gb.num_nodes
            for k in ("x", "edge_index", "edge_attr"):
                assert np.array_equal(np.asarray(getattr(ga, k)), np.asarray(getattr(gb, k)))


def take(it, n):
    return [next(it) for _ in range(n)]


def loader(samples, tok, **kw):
    return data.Loader(samples, tok, 3, seed=7, group=2, **kw)


def test_prefetched_batches_equal_synchronous(samples_tok):
    samples, tok = samples_tok
    ref = take(iter(loader(samples, tok)), 10)   # 4 batches per epoch: crosses two epoch boundaries
    for depth in (1, 3):
        got = take(iter(data.Prefetcher(loader(samples, tok), depth=depth)), 10)
        for a, b in zip(ref, got):
            same(a, b)


def test_prefetch_resume_is_exact(samples_tok):
    samples, tok = samples_tok
    ref = take(iter(loader(samples, tok)), 9)
    pf = data.Prefetcher(loader(samples, tok), depth=3)
    it = iter(pf)
    take(it, 5)
    sd = pf.state_dict()
    assert (sd["epoch"], sd["step"]) == (1, 1)          # consumed 5 = 4 + 1; the thread is 3 ahead
    assert pf.loader.state_dict()["step"] != sd["step"] or pf.loader.state_dict()["epoch"] != sd["epoch"]
    pf2 = data.Prefetcher(loader(samples, tok), depth=2)
    pf2.load_state_dict(sd)
    for a, b in zip(ref[5:], take(iter(pf2), 4)):
        same(a, b)
    plain = loader(samples, tok)                          # the plain Loader resumes from it too
    plain.load_state_dict(sd)
    same(ref[5], next(iter(plain)))


def test_prefetch_error_reaches_the_consumer(samples_tok, monkeypatch):
    samples, tok = samples_tok
    pf = data.Prefetcher(loader(samples, tok), depth=2)

    def boom(*a):
        raise RuntimeError("collate failed")
    monkeypatch.setattr(pf.loader, "collate", boom)
    with pytest.raises(RuntimeError, match="collate failed"):
        next(iter(pf))
