"""Frozen base weights in bf16 (train.py --base-dtype, the CUDA default) with fp32 trainable masters,
tested on CPU: dtypes after loading + attaching, a train step's loss close to the fp32 model's and
gradients arriving in fp32, the base untouched by an optimizer step, and train.py running with it.
tiny_batch, smiles: conftest.py."""
import json
import os

import pytest
import selfies
import torch

import model as M
import molecule
import moge
import train
from train import TrainStep


def build(dtype, recipe="moge"):
    torch.manual_seed(0)
    m, tok = M.load_model("tiny", dtype=dtype)
    molecule.attach_molecule(m)
    moge.attach_adapters(m, moge.MoGEConfig(recipe=recipe, r=4, dropout=0.0, n_experts=3, top_k=2))
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for n, p in moge.trainable_parameters(m).items():
            if n.endswith("_B") or n.endswith("lora_B"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return m, tok


def test_bf16_base_fp32_masters_and_a_train_step(tiny_batch):
    m16, tok = build(torch.bfloat16)
    trainable = moge.trainable_parameters(m16)
    assert trainable and all(p.dtype == torch.float32 for p in trainable.values())  # adapters, routers, GAL, projector
    assert any(".router." in n for n in trainable) and any(n.endswith("gal") for n in trainable)
    base = {n: p for n, p in m16.named_parameters() if n not in trainable and not n.startswith("graph_tower.")}
    assert base and all(p.dtype == torch.bfloat16 and not p.requires_grad for p in base.values())
    assert all(p.dtype == torch.float32 for n, p in m16.named_parameters() if n.startswith("graph_tower."))
    ids, labels, graphs = tiny_batch(tok)
    ce16, aux16, _ = TrainStep(m16).train()(ids, labels, graphs)
    m32, _ = build(torch.float32)
    ce32, _, _ = TrainStep(m32).train()(ids, labels, graphs)
    assert torch.isfinite(ce16).all() and torch.isfinite(aux16)
    torch.testing.assert_close(ce16.float(), ce32, rtol=3e-2, atol=0.0)                 # bf16 rounding
    (ce16.sum() + 0.01 * aux16).backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in trainable.values())
    before = {n: p.detach().clone() for n, p in base.items()}
    opt = torch.optim.AdamW(trainable.values(), lr=1e-2)
    opt.step()
    assert all(torch.equal(before[n], p) for n, p in base.items())


def test_train_py_with_bf16_base_on_cpu(tmp_path, smiles):
    root = tmp_path / "d"
    os.makedirs(root / "train")
    recs = [{"instruction": "", "input": selfies.encoder(s), "output": f"Molecule {i}.", "metadata": {"split": "train"}}
            for i, s in enumerate(smiles)]
    (root / "train" / "molcap.json").write_text(json.dumps(recs))
    out = tmp_path / "o"
    train.main(["--model", "tiny", "--data", str(root), "--tasks", "molcap", "--out", str(out), "--lora-r", "4",
                "--max-len", "512", "--threads", "1", "--batch-size", "2", "--max-steps", "2",
                "--base-dtype", "bfloat16", "--pack"])
    log = [json.loads(ln) for ln in open(out / "log.jsonl")]
    assert len(log) == 2 and all(r["ce"] == r["ce"] and r["ce"] > 0 for r in log)


@pytest.mark.parametrize("recipe", ["gal", "moge"])
def test_cast_low_rank_in_bf16(recipe):
    """eval.py on a GPU: bf16 base + moge.cast_low_rank. GALLinear casts A/B to the activation dtype
    anyway, so the gal logits are bit-identical; MoGE experts on the CPU torch path computed in fp32
    from A/B, so there the change is bf16 rounding. Routers and GAL scalars stay fp32."""
    m, tok = build(torch.bfloat16, recipe)
    ids = torch.randint(3, 300, (2, 29), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        before = m(ids)
        n = moge.cast_low_rank(m, torch.bfloat16)
        after = m(ids)
    trainable = moge.trainable_parameters(m)
    assert n == sum(1 for k in trainable if k.endswith(("_A", "_B"))) > 0
    assert all(p.dtype == torch.float32 for k, p in trainable.items() if ".router." in k or k.endswith("gal"))
    if recipe == "gal":
        assert torch.equal(before, after)
    else:
        # bf16 rounding, relative to the logits' scale (the tiny model's logits have std ~2)
        torch.testing.assert_close(after.float(), before.float(), atol=1e-2 * before.abs().max().item(), rtol=2e-2)
