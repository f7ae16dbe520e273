"""export.py: a lora / rslora / gal checkpoint of the tiny model, exported as a peft adapter and as a merged HF
checkpoint, loads in peft + transformers (the independent reference) and gives our model's logits on text-only
prompts; MoGE is refused with its reason; the graph modality lands beside the weights."""
import dataclasses
import json
import os

import pytest
import torch
from safetensors.torch import load_file

import checkpoint
import convert
import export
import model as M
import moge
import molecule
import train

transformers = pytest.importorskip("transformers")  # optional packages: the reference implementation
peft = pytest.importorskip("peft")

# fp32 on CPU, logits of std ~2 that the adapters move by up to 3-6: peft computes the same function in another
# order (measured max |diff| 3.8e-6 for lora, rslora and gal); a merged weight is W + delta rounded once to fp32
# (measured 5.7e-6 to 7.6e-6)
ATOL = RTOL = 1e-5
MERGED_ATOL = 3e-5
RECIPES = ("lora", "rslora", "gal")


def _make_checkpoint(out, recipe, r=4, step=2):
    """The tiny model with recipe's adapters, trained-looking (B != 0; GAL scalars spread over and past their
    clamps), laid out as train.py writes a checkpoint."""
    model, _ = M.load_model("tiny")
    molecule.attach_molecule(model)
    cfg = moge.MoGEConfig(recipe=recipe, r=r)
    moge.attach_adapters(model, cfg)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for n, p in moge.trainable_parameters(model).items():
            if n.endswith(".gal"):  # [alpha, beta, p] around [alpha0, 0, 0.5], past the clamps for some layers
                p.copy_(torch.tensor([cfg.alpha, 0.0, 0.5]) + (torch.rand(3, generator=g) - 0.5) * torch.tensor(
                    [0.4, 0.2, 0.04]))
            else:
                p.normal_(0.0, 0.05, generator=g)
    step_dir = out / "checkpoints" / f"step_{step:06d}"
    os.makedirs(step_dir)
    moge.save_adapters(model, str(step_dir / "adapters.safetensors"))
    meta = {"step": step, "args": {"model": "tiny", "seed": 42, "recipe": recipe, "gin": None, "lora_r": r},
            "base_model": "tiny", "gin": "random init (seed 0)", "model_config": model.config.to_hf(), "stage": 2,
            "moge": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "adapter_dtype"}}
    (step_dir / "meta.json").write_text(json.dumps(meta))
    return step_dir


@pytest.fixture(scope="module")
def hf_base(tmp_path_factory):
    """The tiny base model as an HF folder (config.json + model.safetensors + tokenizer.json)."""
    path = tmp_path_factory.mktemp("tiny_hf")
    base, tok = M.load_model("tiny")
    export.save_hf(base, str(path), tok)
    return str(path)


def _ids():
    return torch.randint(0, 320, (2, 40), generator=torch.Generator().manual_seed(5))


def _ours(step_dir, ids):
    model, _, _ = checkpoint.load_model(step_dir, "cpu", torch.float32, log=lambda *a: None)
    with torch.no_grad():
        return model(ids)


def test_base_folder_matches_transformers(hf_base):
    """The HF side itself: transformers on the saved tiny base equals our tiny model."""
    ours, _ = M.load_model("tiny")
    hf = transformers.LlamaForCausalLM.from_pretrained(hf_base, dtype=torch.float32).eval()
    ids = _ids()
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, ours(ids), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("recipe", RECIPES)
def test_peft_export_gives_our_logits(tmp_path, hf_base, recipe):
    step_dir = _make_checkpoint(tmp_path / "run", recipe)
    dest = tmp_path / "peft"
    info = export.export_peft(tmp_path / "run", dest)  # the run folder: its newest step
    assert info["recipe"] == recipe and info["tensors"] == 2 * 7 * 2
    cfg = json.loads((dest / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and cfg["lora_alpha"] == 16.0 and cfg["use_rslora"] == (recipe == "rslora")
    assert sorted(cfg["target_modules"]) == sorted(export.TARGETS)
    keys = set(load_file(dest / "adapter_model.safetensors"))
    assert "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight" in keys
    assert "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight" in keys
    ids = _ids()
    ref = _ours(step_dir, ids)
    base = transformers.LlamaForCausalLM.from_pretrained(hf_base, dtype=torch.float32)
    with torch.no_grad():
        plain = base(ids).logits
        hf = peft.PeftModel.from_pretrained(base, str(dest)).eval()
        got = hf(ids).logits
    assert (ref - plain).abs().max() > 1e-2  # the adapters change the logits, so a dropped one would show
    torch.testing.assert_close(got, ref, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("recipe", RECIPES)
def test_merged_export_gives_our_logits(tmp_path, recipe):
    step_dir = _make_checkpoint(tmp_path / "run", recipe)
    dest = tmp_path / "merged"
    info = export.export_merged(step_dir, dest)
    assert info["merged"] == 2 * 7
    for f in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (dest / f).is_file(), f
    assert not any(k.startswith(("graph_tower.", "mm_projector.")) for k in load_file(dest / "model.safetensors"))
    ids = _ids()
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(dest)).eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, _ours(step_dir, ids), atol=MERGED_ATOL, rtol=RTOL)
    ours, tok = M.load_model(str(dest))  # and our loader reads it back, tokenizer included
    assert tok.encode("CCO") == M.load_model("tiny")[1].encode("CCO")


def test_gal_fold_formula():
    """peft's alpha0 / r times the folded B is GAL's gamma times B."""
    B, gamma, r, a0 = torch.randn(8, 4), torch.tensor(2.013), 4, 16.0
    torch.testing.assert_close(a0 / r * export.gal_folded_B(B, gamma, a0, r), gamma * B)


def test_side_files(tmp_path):
    step_dir = _make_checkpoint(tmp_path / "run", "gal")
    export.export_peft(step_dir, tmp_path / "peft")
    sd = load_file(step_dir / "adapters.safetensors")
    proj = load_file(tmp_path / "peft" / "mm_projector.safetensors")
    assert set(proj) == {"mm_projector.weight", "mm_projector.bias"}
    torch.testing.assert_close(proj["mm_projector.weight"], sd["mm_projector.weight"], atol=0, rtol=0)
    gin = load_file(tmp_path / "peft" / "graph_tower.safetensors")
    molecule.check_gin_state_dict(gin)  # MoleculeSTM's layout, loadable by molecule.load_gin
    want = molecule.random_gin(0).state_dict()
    assert all(torch.equal(gin[k], want[k]) for k in want)
    info = json.loads((tmp_path / "peft" / "omnimol.json").read_text())
    assert info["mol_format"] == "selfies" and info["gal_scale"] == "folded into lora_B"
    readme = (tmp_path / "peft" / "README.md").read_text()
    assert "text-only" in readme and "PeftModel.from_pretrained" in readme


def test_moge_is_refused(tmp_path, tiny_checkpoint, tiny_data):
    step_dir, _ = tiny_checkpoint(tmp_path / "run", tiny_data)
    for fn, what in ((export.export_peft, "peft LoRA adapter"), (export.export_merged, "dense weight")):
        with pytest.raises(export.ExportError, match=f"MoGE checkpoint.*cannot be exported.*{what}"):
            fn(step_dir, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    with pytest.raises(SystemExit, match="router picks, per token"):  # the command line: a one-line error
        convert.main(["export-peft", str(tmp_path / "run"), str(tmp_path / "dest")])


def test_refuses_a_used_destination(tmp_path):
    _make_checkpoint(tmp_path / "run", "lora")
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "keep.txt").write_text("mine")
    with pytest.raises(export.ExportError, match="not an empty folder"):
        export.export_peft(tmp_path / "run", tmp_path / "dest")
    assert (tmp_path / "dest" / "keep.txt").read_text() == "mine"


def test_cli_on_a_trained_run(tmp_path, tiny_data, train_args, hf_base):
    """train.py 2 steps with --recipe gal, then `convert.py export-peft` and `export-merged` on its run folder."""
    out = tmp_path / "out"
    train.main(train_args(tiny_data, out, "--recipe", "gal", "--max-steps", 2, "--batch-size", 2))
    convert.main(["export-peft", str(out), str(tmp_path / "peft")])
    convert.main(["export-merged", str(out), str(tmp_path / "merged")])
    ids = _ids()
    ref = _ours(checkpoint.resolve(out), ids)
    base = transformers.LlamaForCausalLM.from_pretrained(hf_base, dtype=torch.float32)
    merged = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged")).eval()
    with torch.no_grad():
        got = peft.PeftModel.from_pretrained(base, str(tmp_path / "peft")).eval()(ids).logits
        torch.testing.assert_close(got, ref, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(merged(ids).logits, ref, atol=MERGED_ATOL, rtol=RTOL)
