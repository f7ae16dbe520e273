"""Sequence packing (packing.py, model doc_ids): the row plan against hand-worked cases and its
invariants, per-document positions and masks against naive loops, FlexAttention's document mask
against the dense one, and train.py's loss of a packed micro-batch equal to the unpacked one (per
sample, and every trainable gradient) on the tiny model with graphs spliced in. tiny_batch, tiny_data,
train_args, read_log, log_keys: conftest.py."""
import os

import pytest
import torch

import model as M
import moge
import packing
import train
from train import TrainStep
from tokenizer import MOL_TOKEN_ID


def test_plan_rows_first_fit_decreasing_by_hand():
    # 5 -> row0 (room 2); 4 -> row1 (room 3); 3 -> row1 (room 0); 2 -> row0 (room 0)
    assert packing.plan_rows([5, 3, 4, 2], 7) == [[0, 3], [2, 1]]
    assert packing.plan_rows([3, 3, 3], 9) == [[0, 1, 2]]
    assert packing.plan_rows([9, 1], 5) == [[0], [1]]  # over-long sample: a row of its own


def test_plan_rows_invariants():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        n, cap = int(torch.randint(1, 20, (1,), generator=g)), int(torch.randint(10, 60, (1,), generator=g))
        lengths = torch.randint(1, cap + 1, (n,), generator=g).tolist()
        rows = packing.plan_rows(lengths, cap)
        assert sorted(i for r in rows for i in r) == list(range(n))          # every sample exactly once
        assert all(sum(lengths[i] for i in r) <= cap for r in rows)
        assert len(rows) <= n and len(rows) >= -(-sum(lengths) // cap)


def naive_positions_and_mask(doc):
    B, T = doc.shape
    pos = torch.zeros(B, T, dtype=torch.long)
    mask = torch.zeros(B, 1, T, T, dtype=torch.bool)
    for b in range(B):
        for q in range(T):
            pos[b, q] = sum(1 for k in range(q) if doc[b, k] == doc[b, q] and all(
                doc[b, j] == doc[b, q] for j in range(k, q + 1)))
            for k in range(q + 1):
                mask[b, 0, q, k] = bool(doc[b, k] == doc[b, q])
    return pos, mask


def test_doc_positions_and_mask_against_loops():
    doc = torch.tensor([[0, 0, 0, 1, 1, 2, -1, -1], [0, 1, 1, 1, 1, 1, 1, -1]])
    pos, mask = naive_positions_and_mask(doc)
    assert torch.equal(M.doc_positions(doc), pos)
    assert torch.equal(M.doc_mask(doc, "dense"), mask)


def test_flex_document_mask_equals_dense():
    pytest.importorskip("torch.nn.attention.flex_attention")
    model, _ = M.load_model("tiny")
    doc = torch.tensor([[0] * 9 + [1] * 20 + [2] * 3 + [-1] * 8, [0] * 33 + [-1] * 7])
    ids = torch.randint(3, 300, doc.shape, generator=torch.Generator().manual_seed(0))
    out = {}
    for backend in ("dense", "flex"):
        os.environ["OMNIMOL_ATTN"] = backend
        try:
            with torch.no_grad():  # CPU FlexAttention has no backward (the CUDA one does: test_gpu.py)
                out[backend] = model(ids, doc_ids=doc)
        finally:
            del os.environ["OMNIMOL_ATTN"]
    torch.testing.assert_close(out["flex"], out["dense"], atol=1e-5, rtol=1e-5)


def test_packed_rows_give_each_sample_its_solo_logits():
    """The independent reference: each sample run alone, unpadded, with the plain causal model."""
    model, _ = M.load_model("tiny")
    g = torch.Generator().manual_seed(1)
    seqs = [torch.randint(3, 300, (n,), generator=g) for n in (7, 30, 12, 5)]
    L = max(len(s) for s in seqs)
    emb = torch.zeros(len(seqs), L, model.config.hidden_size)
    mask = torch.zeros(len(seqs), L, dtype=torch.long)
    for b, s in enumerate(seqs):
        emb[b, :len(s)], mask[b, :len(s)] = model.embed(s), 1
    p = packing.pack(emb, mask, None, max_len=40)
    assert len(p.rows) < len(seqs)
    logits = model(inputs_embeds=p.embeds, doc_ids=p.doc_ids)
    for b, s in enumerate(seqs):
        solo = model(s[None])[0]
        got = logits[p.owner == b]
        torch.testing.assert_close(got, solo, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("recipe", ["moge", "gal"])
def test_packed_loss_and_gradients_equal_unpacked(recipe, tiny_batch, adapted_tiny):
    model, tok = adapted_tiny(recipe, 2)
    ids, labels, graphs = tiny_batch(tok)
    lengths = [len(i) - 1 + (gr.num_nodes if gr else 0) if MOL_TOKEN in i else len(i)
               for i, gr in zip(ids, graphs)]
    max_len = 3 * max(lengths)
    assert len(packing.plan_rows(lengths, max_len)) < len(ids)  # packing really merges samples
    params = moge.trainable_parameters(model)
    res = {}
    for pack_len in (0, max_len):
        ce, _, n_tok = TrainStep(model, pack_len=pack_len).train()(ids, labels, graphs)
        grads = torch.autograd.grad(ce.sum(), list(params.values()), allow_unused=True)
        res[pack_len] = (ce.detach(), grads, n_tok)
    (ce0, g0, n0), (ce1, g1, n1) = res[0], res[max_len]
    assert n0 == n1 == sum(lengths)
    torch.testing.assert_close(ce1, ce0, atol=1e-5, rtol=1e-5)
    for name, a, b in zip(params, g0, g1):
        if a is None:
            assert b is None, name
        else:
            torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4, msg=name)


MOL_TOKEN = MOL_TOKEN_ID


def test_train_py_pack_and_prefetch_keep_the_loss_curve(tiny_data, train_args, read_log, log_keys, tmp_path):
    """train.py end to end: --pack gives the unpacked run's loss and gradient norm (dropout and the
    balance loss off: dropout masks follow tensor shapes, the balance loss counts padding), and
    --prefetch 0 (inline collate) the same log as the default background prefetch, exactly."""
    data_dir = tiny_data
    common = ("--batch-size", 4, "--max-steps", 3, "--lora-dropout", 0, "--aux-coef", 0)
    train.main(train_args(data_dir, tmp_path / "pad", *common))
    train.main(train_args(data_dir, tmp_path / "pack", *common, "--pack"))
    train.main(train_args(data_dir, tmp_path / "sync", *common, "--prefetch", 0))
    pad, pk, sync = (read_log(tmp_path / n) for n in ("pad", "pack", "sync"))
    for a, b, c in zip(pad, pk, sync):
        assert a["tokens"] == b["tokens"]
        for k in ("ce", "grad_norm"):
            assert b[k] == pytest.approx(a[k], rel=1e-5), (a["step"], k)
        assert {k: a[k] for k in log_keys} == {k: c[k] for k in log_keys}
    assert pad[-1]["ce"] != pad[0]["ce"]
