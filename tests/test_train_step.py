"""train.py's TrainStep computes the output head at the answer positions only (model.forward's `at`): its
per-sample losses and every trainable gradient equal the plain reference, the full (B, T, V) logits indexed
at the same positions, packed and unpacked, on the tiny model with MoGE adapters and graphs spliced in.
tiny_batch: conftest.py."""
import pytest
import torch
import torch.nn.functional as F

import model as M
import moge
import molecule
import packing
from tokenizer import IGNORE_INDEX
from train import TrainStep


def reference_ce(model, ids, labels, graphs, pack_len):
    """The plain loss: logits at every position, then the answer positions picked out."""
    emb, mask, labels = molecule.embed_inputs(model, ids, graphs, labels=labels)
    if pack_len:
        p = packing.pack(emb, mask, labels, pack_len)
        logits, tgt, owner = model(inputs_embeds=p.embeds, doc_ids=p.doc_ids), p.targets, p.owner
    else:
        logits, tgt, owner = model(inputs_embeds=emb), labels[:, 1:], None
    b, t = (tgt != IGNORE_INDEX).nonzero(as_tuple=True)
    tok_ce = F.cross_entropy(logits[b, t].float(), tgt[b, t], reduction="none")
    sample = b if owner is None else owner[b, t]
    return torch.zeros(len(labels)).index_add(0, sample, tok_ce)


@pytest.mark.parametrize("pack_len", [0, 400])
def test_head_at_answers_equals_full_logits(pack_len, tiny_batch, adapted_tiny):
    model, tok = adapted_tiny("moge", 3)
    ids, labels, graphs = tiny_batch(tok)
    params = moge.trainable_parameters(model)
    model.train()
    fast, _, _ = TrainStep(model, pack_len=pack_len).train()(ids, labels, graphs)
    g_fast = torch.autograd.grad(fast.sum(), list(params.values()), allow_unused=True)
    ref = reference_ce(model, ids, labels, graphs, pack_len)
    g_ref = torch.autograd.grad(ref.sum(), list(params.values()), allow_unused=True)
    assert (ref > 0).all()
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    n_grads = 0
    for name, a, b in zip(params, g_ref, g_fast):
        if a is None:
            assert b is None, name
        else:
            torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4, msg=name)
            n_grads += int(a.abs().sum() > 0)
    assert n_grads > len(params) // 2  # the comparison covers real gradients, not zeros


def test_forward_at_equals_indexed_logits():
    model, _ = M.load_model("tiny")
    ids = torch.randint(3, 300, (3, 11), generator=torch.Generator().manual_seed(0))
    b, t = torch.tensor([0, 0, 2, 1]), torch.tensor([3, 10, 0, 7])
    with torch.no_grad():
        torch.testing.assert_close(model(ids, at=(b, t)), model(ids)[b, t], atol=1e-5, rtol=1e-5)
