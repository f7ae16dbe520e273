"""The static-cache decode path (model.Decoder: StaticKVCache, fixed-shape step, CUDA-graph captured on
GPU) against the growing-cache path (EagerDecoder) on CPU, where both run eagerly: the same greedy
tokens and per-step logits, the same sampled tokens under the same generator (identical logits feed
identical draws), with left padding, graphs spliced in and MoGE layers; and the StaticKVCache's
masked attention over all slots against HF-style attention over the filled prefix. decode_prompts:
conftest.py."""
import torch

import model as M
import molecule
import moge


def tiny_trained():
    torch.manual_seed(0)
    m, tok = M.load_model("tiny")
    molecule.attach_molecule(m)
    moge.attach_adapters(m, moge.MoGEConfig(r=4, dropout=0.0, n_experts=3, top_k=2))
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for n, p in moge.trainable_parameters(m).items():
            if n.endswith("_B") or n.endswith("lora_B"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return m.eval(), tok


def test_static_greedy_tokens_and_logits_equal_eager(decode_prompts):
    m, tok = tiny_trained()
    emb, mask = decode_prompts(m, tok)
    assert mask.sum(1).unique().numel() > 1  # left padding really happens
    with torch.no_grad():
        steps = {}
        for cls in (M.EagerDecoder, M.Decoder):
            dec = cls(m, emb, mask, 12)
            logits = [dec.prefill()]
            for _ in range(11):
                logits.append(dec(logits[-1][:, -1].argmax(-1)))
            steps[cls] = torch.cat(logits, 1)
    torch.testing.assert_close(steps[M.Decoder], steps[M.EagerDecoder], atol=1e-5, rtol=1e-5)
    eos = [tok.eot_id]
    a = m.generate(inputs_embeds=emb, attention_mask=mask, max_new_tokens=20, static_cache=False, eos_token_ids=eos)
    b = m.generate(inputs_embeds=emb, attention_mask=mask, max_new_tokens=20, static_cache=True, eos_token_ids=eos)
    assert a == b and any(len(s) for s in a)


def test_static_sampling_equals_eager_with_the_same_generator(decode_prompts):
    m, tok = tiny_trained()
    emb, mask = decode_prompts(m, tok)
    out = [m.generate(inputs_embeds=emb, attention_mask=mask, max_new_tokens=16, temperature=1.0, top_p=0.9,
                      generator=torch.Generator().manual_seed(5), static_cache=s) for s in (False, True)]
    assert out[0] == out[1]


def test_list_prompts_static_default_on_cpu_is_eager():
    m, tok = tiny_trained()
    ids = [[5, 6, 7, 8, 9], [10, 11]]
    assert m.generate(ids, max_new_tokens=6) == m.generate(ids, max_new_tokens=6, static_cache=True)
    # the static cache rounds its length up to 128 slots; more than that still works
    long = [list(range(3, 140))]
    assert m.generate(long, max_new_tokens=3) == m.generate(long, max_new_tokens=3, static_cache=True)


def test_num_samples_share_one_prefill_and_equal_repeated_prompts(decode_prompts):
    """generate(num_samples=n) expands the prefilled cache n times: the same tokens as the prompts repeated
    n times (rows prompt-major), sampled with the same generator, on both decode paths."""
    m, tok = tiny_trained()
    embeds, mask = decode_prompts(m, tok)
    for static in (False, True):
        kw = dict(max_new_tokens=6, temperature=1.0, static_cache=static)
        shared = m.generate(inputs_embeds=embeds, attention_mask=mask, num_samples=3,
                            generator=torch.Generator().manual_seed(5), **kw)
        repeated = m.generate(inputs_embeds=embeds.repeat_interleave(3, 0), attention_mask=mask.repeat_interleave(3, 0),
                              generator=torch.Generator().manual_seed(5), **kw)
        assert shared == repeated and len(shared) == 3 * embeds.shape[0]
        assert len({tuple(s) for s in shared[:3]}) > 1  # the samples of one prompt differ
