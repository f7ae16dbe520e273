"""convert.py on a synthetic release checkpoint for the tiny model: the release's exact key names and
shapes (peft adapter_model.safetensors + non_lora_trainables.bin, 1789336421/Omni-Mol utils.py
seperate_save_lora), converted, loaded by eval's loader and held against an independent reference that
consumes the release tensors BY THEIR RELEASE NAMES in a release-shaped model (peft LoRA linears with
the release's GAL formula, DeepseekV2MoE's deep-copied experts + shared expert + moe_gate, the
NaiveLinear projector). Plus every refusal, the stage-1 projector and the CLI."""
import copy
import json
import os
import types

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import checkpoint
import convert
import eval as eval_
import model as M
import moge
import molecule
from tokenizer import MOL_TOKEN_ID

R, ALPHA, E, TOP_K, MOE = 4, 16.0, 3, 2, [1]      # tiny has 2 layers: layer 0 dense, layer 1 MoE
P, LM = "base_model.model.", "base_model.model.language_model."
MOE_CONFIG = {"moe_mode": "second_quarter", "num_experts": E, "top_k_experts": TOP_K, "use_residual": True,
              "router_aux_loss_coef": 0.01, "moe_class": "deepseek"}


def _proj_shapes(cfg):
    d, f, hd = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    attn = {"q_proj": (d, cfg.num_attention_heads * hd), "k_proj": (d, cfg.num_key_value_heads * hd),
            "v_proj": (d, cfg.num_key_value_heads * hd), "o_proj": (cfg.num_attention_heads * hd, d)}
    mlp = {"gate_proj": (d, f), "up_proj": (d, f), "down_proj": (f, d)}
    return attn, mlp


def release_checkpoint(folder, seed=0, with_base_copies=False, moe=MOE, dtype=torch.float32):
    """Write checkpoint-197148/ as the release saves it (MoE layers `moe`, tensors in `dtype`: a bf16 run
    saves bf16); -> (adapter tensors, non-lora tensors), as saved."""
    cfg = M.ModelConfig(**M.TINY)
    g = torch.Generator().manual_seed(seed)
    attn, mlp = _proj_shapes(cfg)
    lora = {}

    def add(prefix, d_in, d_out):
        lora[f"{prefix}.lora_A.weight"] = (torch.rand(R, d_in, generator=g) * 2 - 1) / d_in ** 0.5
        lora[f"{prefix}.lora_B.weight"] = torch.randn(d_out, R, generator=g) * 0.05     # non-zero: adapters matter
        # [alpha, beta, p] around the init [16, 0, 0.5], some outside the clamps (both sides must clamp)
        lora[f"{prefix}.lora_learnable_alpha.weights"] = torch.tensor([ALPHA, 0.0, 0.5]) + \
            (torch.rand(3, generator=g) * 2 - 1) * torch.tensor([0.15, 0.08, 0.02])

    for i in range(cfg.num_hidden_layers):
        for n, (a, b) in attn.items():
            add(f"{LM}model.layers.{i}.self_attn.{n}", a, b)
        copies = [f"experts.{e}." for e in range(E)] + ["shared_experts."] if i in moe else [""]
        for c in copies:
            for n, (a, b) in mlp.items():
                add(f"{LM}model.layers.{i}.mlp.{c}{n}", a, b)
    non_lora = {f"{P}mm_projector.weight.weight": torch.randn(cfg.hidden_size, 300, generator=g) * 0.02,
                f"{P}mm_projector.weight.bias": torch.randn(cfg.hidden_size, generator=g) * 0.02}
    for i in moe:
        non_lora[f"{LM}model.layers.{i}.mlp.moe_gate.weight"] = torch.randn(E, cfg.hidden_size, generator=g)
    if with_base_copies:  # as in a full export: each copy's frozen base weight (= the base FFN)
        base, _ = M.load_model("tiny")
        for i in MOE:
            for c in [f"experts.{e}." for e in range(E)] + ["shared_experts."]:
                for n in mlp:
                    w = getattr(base.model.layers[i].mlp, n).weight.detach().clone()
                    non_lora[f"{LM}model.layers.{i}.mlp.{c}{n}.base_layer.weight"] = w
    lora, non_lora = ({k: v.to(dtype) for k, v in sd.items()} for sd in (lora, non_lora))
    write_checkpoint(folder, lora, non_lora, llava_cfg={"moe_config": {**MOE_CONFIG, "moe_layers_idx": moe}})
    return lora, non_lora


def write_checkpoint(folder, lora, non_lora, adapter_cfg=None, llava_cfg=None):
    os.makedirs(folder, exist_ok=True)
    save_file(lora, os.path.join(folder, "adapter_model.safetensors"))
    torch.save(non_lora, os.path.join(folder, "non_lora_trainables.bin"))
    ac = {"peft_type": "LORA", "r": R, "lora_alpha": ALPHA, "lora_dropout": 0.05, "use_rslora": False,
          "use_learnable_alpha": True, "bias": "none", "base_model_name_or_path": "tiny"}
    lc = {"projector_type": "naive_linear", "norm_topk_prob": None,
          "text_config": {k: M.TINY[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                                  "vocab_size")},
          "moe_config": {**MOE_CONFIG, "moe_layers_idx": MOE}}
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        json.dump({**ac, **(adapter_cfg or {})}, f)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({**lc, **(llava_cfg or {})}, f)


# ----------------------------------------------------------------------------- the release-shaped reference

class LearnableAlpha(nn.Module):  # release peft/.../lora/layer.py LearnableAlphaLayer
    def __init__(self, rank, alpha):
        super().__init__()
        self.weights = nn.Parameter(torch.tensor([alpha, 0, 0.5]))
        self.alpha, self.rank = alpha, float(rank)

    def forward(self, x):
        alpha, beta, p = self.weights.unbind(0)
        return x * (alpha.clamp(self.alpha - 0.1, self.alpha + 0.1) / self.rank ** p.clamp(0.49, 0.51)
                    + beta.clamp(-0.05, 0.05))


class PeftLinear(nn.Module):  # peft lora.Linear.forward, use_learnable_alpha branch, eval (no dropout)
    def __init__(self, base):
        super().__init__()
        self.base_layer = base
        self.lora_A = nn.Linear(base.in_features, R, bias=False)
        self.lora_B = nn.Linear(R, base.out_features, bias=False)
        self.lora_learnable_alpha = LearnableAlpha(R, ALPHA)

    def forward(self, x):
        return self.base_layer(x) + self.lora_learnable_alpha(self.lora_B(self.lora_A(x)))


class ExpertMLP(nn.Module):  # a deepcopy of LlamaMLP with every linear peft-wrapped
    def __init__(self, mlp):
        super().__init__()
        for n in ("gate_proj", "up_proj", "down_proj"):
            setattr(self, n, PeftLinear(copy.deepcopy(getattr(mlp, n))))

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Gate(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(E, d))


class ReleaseMoE(nn.Module):  # DeepseekV2MoE: softmax router in fp32, greedy top-k, no renorm, + shared expert
    def __init__(self, mlp, d):
        super().__init__()
        self.experts = nn.ModuleList(ExpertMLP(mlp) for _ in range(E))
        self.shared_experts = ExpertMLP(mlp)
        self.moe_gate = Gate(d)

    def forward(self, x):
        h = x.reshape(-1, x.shape[-1])
        scores = F.linear(h.float(), self.moe_gate.weight.float()).softmax(-1)
        w, idx = torch.topk(scores, TOP_K, dim=-1, sorted=False)
        y = self.shared_experts(h)
        for t in range(h.shape[0]):                       # one token, one slot at a time
            for j in range(TOP_K):
                y[t] = y[t] + w[t, j] * self.experts[int(idx[t, j])](h[t:t + 1])[0]
        return y.view(x.shape)


class NaiveLinear(nn.Module):  # release model/modeling_projector.py
    def __init__(self, mm, text):
        super().__init__()
        self.weight = nn.Linear(mm, text)


class ReleaseLike(nn.Module):
    """Module names = the release's minus `base_model.model.`, so its tensors load by name."""

    def __init__(self, base, moe):
        super().__init__()
        lm = copy.deepcopy(base)
        for i, layer in enumerate(lm.model.layers):
            for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
                setattr(layer.self_attn, n, PeftLinear(getattr(layer.self_attn, n)))
            if i in moe:
                layer.mlp = ReleaseMoE(layer.mlp, base.config.hidden_size)
            else:
                for n in ("gate_proj", "up_proj", "down_proj"):
                    setattr(layer.mlp, n, PeftLinear(getattr(layer.mlp, n)))
        self.language_model = lm
        self.mm_projector = NaiveLinear(300, base.config.hidden_size)


def reference(lora, non_lora, moe=MOE):
    base, _ = M.load_model("tiny")
    ref = ReleaseLike(base, moe).eval()
    sd = {k.removeprefix(P): v.float() for k, v in {**lora, **non_lora}.items() if ".base_layer." not in k}
    missing, unexpected = ref.load_state_dict(sd, strict=False)
    assert not unexpected
    assert not [k for k in missing if any(s in k for s in ("lora_", "moe_gate", "mm_projector"))], missing
    return base, ref


def inputs(tok):
    ids = [tok.encode("The molecule ") + [MOL_TOKEN_ID] + tok.encode(" is an alcohol."),
           tok.encode("Phenol ") + [MOL_TOKEN_ID] + tok.encode(" burns")]
    return ids, [molecule.smiles_to_graph("CCO"), molecule.smiles_to_graph("c1ccccc1O")]


def logits_of(lm_root, proj, ids, graphs, lm):
    shim = types.SimpleNamespace(model=lm_root, graph_tower=molecule.random_gin(0), mm_projector=proj)
    emb, mask, _ = molecule.embed_inputs(shim, ids, graphs)
    with torch.no_grad():
        return lm(inputs_embeds=emb, attention_mask=mask), mask


# ----------------------------------------------------------------------------- tests

@pytest.mark.parametrize("moe,dtype", [(MOE, torch.float32), ([], torch.float32), (MOE, torch.bfloat16)])
def test_release_checkpoint_converts_to_the_same_function(tmp_path, capsys, moe, dtype):
    ck = tmp_path / "checkpoint-197148"
    lora, non_lora = release_checkpoint(ck, moe=moe, dtype=dtype)
    out = tmp_path / "ours"
    meta = convert.convert_release(str(ck), str(out), model_path="tiny")
    log = capsys.readouterr().out
    assert ("MoE layers [1], 3 experts + 1 shared, top-2" if moe else "no MoE layers (recipe gal)") in log
    assert "no frozen base weights" in log and meta["step"] == 197148
    assert meta["moge"]["recipe"] == ("moge" if moe else "gal")
    if moe:
        assert meta["moge"]["moe_layers"] == moe and meta["moge"]["top_k"] == TOP_K
    ours, tok, _ = checkpoint.load_model(str(out), "cpu", torch.float32, log=lambda *a: None)
    base, ref = reference(lora, non_lora, moe)
    ids, graphs = inputs(tok)
    got, mask = logits_of(ours.model, ours.mm_projector, ids, graphs, ours)
    want, _ = logits_of(ref.language_model.model, ref.mm_projector.weight, ids, graphs, ref.language_model)
    plain, _ = logits_of(base.model, ref.mm_projector.weight, ids, graphs, base)
    m = mask.bool()
    assert (got[m] - want[m]).abs().max().item() < 1e-5
    assert (got[m] - plain[m]).abs().max().item() > 1e-2        # the adapters change the function
    if not moe:
        assert not moge.moge_layers(ours)
        return
    counts = next(iter(moge.router_stats(ours).values()))
    assert sum(c > 0 for c in counts) >= 2, counts                 # routing really picks different experts
    # the stacked experts hold the release's tensors in order, the shared expert last
    ex = ours.model.layers[1].mlp.experts
    assert torch.equal(ex.up_B[2], lora[f"{LM}model.layers.1.mlp.experts.2.up_proj.lora_B.weight"].float())
    shared_gal = lora[f"{LM}model.layers.1.mlp.shared_experts.down_proj.lora_learnable_alpha.weights"]
    assert torch.equal(ex.down_gal[E], shared_gal.float())


def test_base_copies_in_the_checkpoint_are_checked(tmp_path, capsys):
    ck = tmp_path / "checkpoint-1"
    lora, non_lora = release_checkpoint(ck, with_base_copies=True)
    convert.convert_release(str(ck), str(tmp_path / "ok"), model_path="tiny")
    assert f"{(E + 1) * 3} frozen base tensors in the checkpoint, all equal" in capsys.readouterr().out
    key = f"{LM}model.layers.1.mlp.experts.1.up_proj.base_layer.weight"
    non_lora[key] = non_lora[key].clone()
    non_lora[key][0, 0] += 1e-3
    write_checkpoint(ck, lora, non_lora)
    differ = r"frozen base weights differ[\s\S]*experts\.1\.up_proj\.base_layer"
    with pytest.raises(convert.ConversionError, match=differ):
        convert.convert_release(str(ck), str(tmp_path / "bad"), model_path="tiny")
    assert not (tmp_path / "bad").exists()


class NotATensor:  # pickled by reference: torch.load(weights_only=True) must refuse it
    pass


@pytest.mark.parametrize("case", ["missing", "mis-shaped", "unexpected", "pickle", "alpha==r", "norm_topk", "layers"])
def test_refusals_name_what_is_wrong(tmp_path, case):
    ck = tmp_path / "checkpoint-5"
    lora, non_lora = release_checkpoint(ck)
    ac, lc = {}, {}
    if case == "missing":
        key = f"{LM}model.layers.1.mlp.experts.2.down_proj.lora_B.weight"
        del lora[key]
        match = f"missing tensors \\(1\\): {key}"
    elif case == "mis-shaped":
        key = f"{LM}model.layers.0.self_attn.k_proj.lora_B.weight"
        lora[key] = torch.zeros(33, R)
        match = r"k_proj\.lora_B\.weight: file \(33, 4\) vs expected \(32, 4\)"
    elif case == "unexpected":
        key = f"{LM}model.layers.0.self_attn.q_proj.lora_magnitude_vector.weight"   # DoRA
        lora[key] = torch.ones(64)
        match = f"unexpected tensors \\(1\\): {key}"
    elif case == "pickle":
        non_lora["evil"] = NotATensor()
        match = "weights_only"
    elif case == "alpha==r":
        ac = {"lora_alpha": R}
        match = "skips GAL"
    elif case == "norm_topk":
        lc = {"norm_topk_prob": True}
        match = "does not renormalise"
    else:                                                          # a MoE layer the 2-layer base does not have
        non_lora[f"{LM}model.layers.5.mlp.moe_gate.weight"] = torch.zeros(E, 64)
        lc = {"moe_config": {**MOE_CONFIG, "moe_layers_idx": [1, 5]}}
        match = r"MoE layers \[1, 5\] but --model has 2 layers"
    if case == "pickle":
        write_checkpoint(ck, lora, {})
        torch.save(non_lora, ck / "non_lora_trainables.bin")
    else:
        write_checkpoint(ck, lora, non_lora, ac, lc)
    with pytest.raises(convert.ConversionError, match=match):
        convert.convert_release(str(ck), str(tmp_path / "out"), model_path="tiny")
    with pytest.raises(SystemExit, match="error: "):              # the CLI: one line, no traceback
        convert.main(["release", str(ck), str(tmp_path / "out"), "--model", "tiny", "--mol-format", "selfies"])
    assert not (tmp_path / "out").exists()


def test_file_types_and_the_projector_options(tmp_path):
    ck = tmp_path / "checkpoint-7"
    lora, non_lora = release_checkpoint(ck)
    with pytest.raises(convert.ConversionError, match="unknown file type"):
        convert.read_tensors(str(ck / "adapter_config.json"))
    convert.convert_release(str(ck), str(tmp_path / "st"), model_path="tiny")
    want = load_file(str(tmp_path / "st" / "adapters.safetensors"))
    # adapter_model.bin instead of .safetensors (older peft), with peft's in-memory `.default` names
    os.remove(ck / "adapter_model.safetensors")
    torch.save({k.replace(".lora_A.", ".lora_A.default.").replace(".lora_B.", ".lora_B.default."): v
                for k, v in lora.items()}, ck / "adapter_model.bin")
    convert.convert_release(str(ck), str(tmp_path / "bin"), model_path="tiny")
    got = load_file(str(tmp_path / "bin" / "adapters.safetensors"))
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    # a stage-2 checkpoint without its projector: --projector fills it; with one, --projector is ambiguous
    proj = {"mm_projector.weight.weight": non_lora.pop(f"{P}mm_projector.weight.weight"),
            "mm_projector.weight.bias": non_lora.pop(f"{P}mm_projector.weight.bias")}
    torch.save(proj, tmp_path / "mm_projector.bin")
    write_checkpoint(ck, lora, non_lora)
    with pytest.raises(convert.ConversionError, match="--projector"):
        convert.convert_release(str(ck), str(tmp_path / "a"), model_path="tiny")
    projector = str(tmp_path / "mm_projector.bin")
    convert.convert_release(str(ck), str(tmp_path / "a"), model_path="tiny", projector=projector)
    m, _, _ = checkpoint.load_model(str(tmp_path / "a"), "cpu", torch.float32, log=lambda *a: None)
    assert torch.equal(m.mm_projector.weight, proj["mm_projector.weight.weight"])
    write_checkpoint(ck, lora, {**non_lora, **{P + k: v for k, v in proj.items()}})
    with pytest.raises(convert.ConversionError, match="already holds"):
        convert.convert_release(str(ck), str(tmp_path / "b"), model_path="tiny", projector=projector)


def test_stage1_projector_becomes_a_stage1_checkpoint(tmp_path, capsys):
    g = torch.Generator().manual_seed(1)
    proj = {"mm_projector.weight.weight": torch.randn(64, 300, generator=g),
            "mm_projector.weight.bias": torch.randn(64, generator=g)}
    torch.save(proj, tmp_path / "mm_projector.bin")
    convert.main(["projector", str(tmp_path / "mm_projector.bin"), str(tmp_path / "s1"), "--model", "tiny"])
    assert "stage 1" in capsys.readouterr().out
    # the layout of train.py's own stage-1 checkpoints, which train.py --init-from reads (tests/test_train.py)
    saved = load_file(str(tmp_path / "s1" / "adapters.safetensors"))
    assert sorted(saved) == ["mm_projector.bias", "mm_projector.weight"]
    m, _, meta = checkpoint.load_model(str(tmp_path / "s1"), "cpu", torch.float32, log=lambda *a: None)
    assert meta["moge"] is None and torch.equal(m.mm_projector.bias, proj["mm_projector.weight.bias"])
    # wrong hidden size, a two-layer projector: named errors
    torch.save({"mm_projector.weight.weight": torch.zeros(65, 300), "mm_projector.weight.bias": torch.zeros(65)},
               tmp_path / "wide.bin")
    with pytest.raises(convert.ConversionError, match=r"\(65, 300\).*needs \(64, 300\)"):
        convert.convert_projector(str(tmp_path / "wide.bin"), str(tmp_path / "x"), "tiny")
    torch.save({"mm_projector.w1.weight": torch.zeros(64, 300), "mm_projector.w1.bias": torch.zeros(64)},
               tmp_path / "mlp.bin")
    with pytest.raises(convert.ConversionError, match="two-layer"):
        convert.convert_projector(str(tmp_path / "mlp.bin"), str(tmp_path / "x"), "tiny")


def test_mol_format_is_required_stored_and_read_back_by_eval(tmp_path, capsys, eval_data_folder):
    ck = tmp_path / "checkpoint-9"
    release_checkpoint(ck)
    out = tmp_path / "ours"
    with pytest.raises(SystemExit) as e:                           # required: the checkpoint does not say
        convert.main(["release", str(ck), str(out), "--model", "tiny"])
    assert e.value.code == 2 and "--mol-format" in capsys.readouterr().err
    convert.main(["release", str(ck), str(out), "--model", "tiny", "--mol-format", "smiles"])
    assert "prompts: smiles, bos 1" in capsys.readouterr().out
    meta = json.loads((out / "meta.json").read_text())
    assert meta["args"]["mol_format"] == "smiles"
    assert meta["args"]["bos"] == 1                                # ChatML (tiny): no BOS; Llama-3 gets 2
    data_dir = eval_data_folder(tmp_path / "data")
    ev = tmp_path / "ev"
    eval_.main(["--ckpt", str(out), "--data", str(data_dir), "--tasks", "weight", "--limit", "2", "--greedy",
                "--max-new-tokens", "3", "--no-nll", "--no-baselines", "--out", str(ev)])
    rows = [json.loads(line) for line in (ev / "predictions.jsonl").read_text().splitlines()]
    assert {r["prompt"].split()[-1] for r in rows} == {"CCO", "CC(=O)Nc1ccc(O)cc1"}  # SMILES, not SELFIES
    res = json.loads((ev / "results.json").read_text())["_meta"]
    assert res["mol_format"] == "smiles" and res["bos"] == 1
    meta["args"]["bos"] = 2                                        # eval takes the stored count ...
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="no begin-of-text token"):
        eval_.main(["--ckpt", str(out), "--data", str(data_dir), "--tasks", "weight", "--out", str(ev)])
    assert eval_.parse_args(["--bos", "1"]).bos == 1 and eval_.parse_args([]).bos is None  # ... unless given
    help_text = " ".join(convert.MOL_FORMAT_EVIDENCE.values())
    assert "mixtrain_auto_eval.sh:78" in help_text and "dataset_profiles.py:218" in help_text
