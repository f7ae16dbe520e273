"""train.py --task-loss (the dev tree's use_task_loss): train.task_balanced_loss against a hand computation and
against a line-by-line transcription of the dev tree's token-level code (WillDreamer/OmniMol
model/modeling_llava.py, GraphLlavaForConditionalGeneration.forward, the `if use_task_loss:` blocks), value and
gradient; and train.py runs with it and records it."""
import json

import pytest
import torch
import torch.nn.functional as F

import checkpoint
import train


def test_hand_computed_value_and_gradient():
    ce = torch.tensor([2.0, 4.0, 3.0], requires_grad=True)  # per-sample CE sums
    loss = train.task_balanced_loss(ce, ["a", "a", "b"], [2, 2, 3])
    la, lb, eps = 6.0 / 4, 3.0 / 3, 1e-5  # task means: (2 + 4) / (2 + 2) tokens, 3 / 3 tokens
    assert loss.item() == pytest.approx((la / (la + eps) + lb / (lb + eps)) / 2, abs=1e-7)
    loss.backward()
    want = [0.5 * (1 / 4) / (la + eps), 0.5 * (1 / 4) / (la + eps), 0.5 * (1 / 3) / (lb + eps)]
    assert ce.grad.tolist() == pytest.approx(want, rel=1e-6)


def _dev_tree_loss(logits, labels, this_task_ids):
    """The dev tree's use_task_loss branch, transcribed (logits (B, T, V), labels with -100)."""
    shift_logits = logits[..., :-1, :].contiguous().view(-1, logits.shape[-1])
    shift_labels = labels[..., 1:].contiguous().view(-1)
    loss = F.cross_entropy(shift_logits, shift_labels, reduction="none")  # CrossEntropyLoss(reduce=False)
    loss = loss.view(labels.shape[0], -1)
    loss_dict = {}
    for t_id in set(ele.item() for ele in this_task_ids):
        indices = torch.where(this_task_ids == t_id)
        loss_dict[str(t_id)] = loss[indices[0]]
    balanced_loss = 0
    for t_loss in loss_dict.values():
        t_loss = t_loss.view(-1)
        mask = t_loss > 0
        t_loss = t_loss.sum() / mask.sum() if t_loss.sum().item() != 0 else t_loss.sum()
        balanced_loss += t_loss / (t_loss.detach() + 1e-5)
    return balanced_loss / len(loss_dict)


def test_equals_the_dev_tree_on_a_padded_batch():
    g = torch.Generator().manual_seed(0)
    B, T, V = 5, 9, 11
    logits = torch.randn(B, T, V, generator=g, requires_grad=True)
    labels = torch.full((B, T), -100)
    for b, (start, end) in enumerate([(3, 9), (5, 7), (2, 9), (6, 9), (4, 6)]):  # answers of different lengths
        labels[b, start:end] = torch.randint(0, V, (end - start,), generator=g)
    task_ids = torch.tensor([0, 3, 0, 4, 3])
    ref = _dev_tree_loss(logits, labels, task_ids)
    (g_ref,) = torch.autograd.grad(ref, logits)
    tok = F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), reduction="none").view(B, -1)
    ce = tok.sum(1)  # what train.TrainStep returns: per-sample CE sums over answer tokens
    ours = train.task_balanced_loss(ce, task_ids.tolist(), (labels[:, 1:] != -100).sum(1).tolist())
    (g_ours,) = torch.autograd.grad(ours, logits, retain_graph=True)
    assert ours.item() == pytest.approx(ref.item(), abs=1e-6)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-5, atol=1e-8)
    # and not the plain token mean, whose gradient weighs tasks by their tokens
    (g_mean,) = torch.autograd.grad(ce.sum() / (labels[:, 1:] != -100).sum(), logits)
    assert not torch.allclose(g_mean, g_ref, rtol=1e-2)


def test_train_py_runs_with_task_loss(tiny_data, train_args, read_log, tmp_path):
    out = tmp_path / "tl"
    train.main(train_args(tiny_data, out, "--batch-size", 4, "--max-steps", 2, "--task-loss", "--grad-accum", 2))
    log = read_log(out)
    assert len(log) == 2 and all(r["grad_norm"] > 0 and not r["skipped"] for r in log)
    meta = json.load(open(checkpoint.steps(out)[-1] + "/meta.json"))
    assert meta["args"]["task_loss"] is True
    assert "use_task_loss" in train.get_parser().format_help()
