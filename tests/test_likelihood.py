"""likelihood.answer_logprobs against a per-sample, per-position loop over the full logits."""
import torch

import likelihood
import model as M
import molecule
from tokenizer import IGNORE_INDEX, MOL_PLACEHOLDER


def test_answer_logprobs_match_a_direct_loop():
    torch.manual_seed(0)
    m, tok = M.load_model("tiny")
    molecule.attach_molecule(m)
    m.eval()
    items = [(MOL_PLACEHOLDER + "What is it?", molecule.smiles_to_graph("CCO")), ("Name water.", None),
             (MOL_PLACEHOLDER + "And this?", molecule.smiles_to_graph("c1ccccc1O"))]
    answers = ["[C][C][O]", "H2O", "phenol, a longer answer than the others"]
    got = likelihood.answer_logprobs(m, tok, items, answers, batch_size=2)  # padded batches of 2 and 1
    for (user, g), a, lp in zip(items, answers, got):
        ids, lab = tok.encode_chat(user, a)
        emb, _, labels = molecule.embed_inputs(m, [ids], [g], labels=[lab])
        with torch.no_grad():
            logits = m(inputs_embeds=emb)[0].double()
        ref = [torch.log_softmax(logits[t], -1)[labels[0, t + 1]].item()
               for t in range(labels.shape[1] - 1) if labels[0, t + 1] != IGNORE_INDEX]
        assert len(ref) == len(tok.encode(a)) + 1  # the answer tokens and the end-of-turn token
        assert torch.allclose(lp.double(), torch.tensor(ref, dtype=torch.float64), atol=1e-5)
        assert not lp.requires_grad


def test_answer_logprobs_grad_reaches_the_projector():
    m, tok = M.load_model("tiny")
    molecule.attach_molecule(m)
    items = [(MOL_PLACEHOLDER + "Hi", molecule.smiles_to_graph("CC"))]
    lp = likelihood.answer_logprobs(m, tok, items, ["ok"], grad=True)
    lp[0].sum().backward()
    assert m.mm_projector.weight.grad is not None and m.mm_projector.weight.grad.abs().sum() > 0
