"""Benchmarks measured side by side in one run; results go into BENCHMARKS.md by hand.

    python bench.py --generate     # batched KV-cache generation vs transformers generate (CPU, SmolLM2)
    python bench.py --train        # training tokens/s vs transformers + peft LoRA (see train section)
    python bench.py --moge         # MoGE FFN layer vs dense FFN + GAL vs the release's deep-copy loop (GPU)
    python moge_kernels/bench.py        # grouped-LoRA kernel vs the torch paths (GPU)
    python bench.py --gpu          # the whole model on one GPU: training, eval generation, MoGE layer (bench_gpu.py)
    python bench.py --gpu --dry-run  # the same script with tiny shapes, to check it end to end (CPU)
"""
import argparse
import copy
import os
import platform
import sys
import time

import torch

import bench_gpu
import model as M
import molecule
import moge
from train import TrainStep
from tokenizer import IGNORE_INDEX


def machine() -> str:
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {dev}, torch {torch.__version__}"


def bench_generate(args):
    """Same weights (the converted SmolLM2 folder), same prompts, greedy, exactly N new tokens each."""
    import transformers  # optional (requirements-dev.txt): only the comparison needs it
    ours, tok = M.load_model("default")
    hf = transformers.AutoModelForCausalLM.from_pretrained(ours.name_or_path, dtype=torch.float32).eval()
    questions = ["What is the chemical formula of water?", "Describe benzene.", "Name a noble gas.",
                 "What is the molecular weight of ethanol, roughly?", "Explain what a catalyst does in one line.",
                 "Is methane polar?", "What is SMILES?", "Give an example of an aromatic compound and why."]
    prompts = [tok.encode_chat(q)[0] for q in questions[: args.batch]]
    L = max(map(len, prompts))
    ids = torch.tensor([[tok.pad_token_id] * (L - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in prompts])
    n = args.new_tokens

    def run_ours():
        out = ours.generate(prompts, max_new_tokens=n, pad_token_id=tok.pad_token_id)  # no EOS: n tokens each
        assert all(len(o) == n for o in out)
        return out

    # no stop token on either side: both do exactly n decode steps (min_new_tokens would instead mask
    # the EOS logit in transformers and change the tokens, not only the length)
    hf.generation_config.eos_token_id = None

    def run_hf():
        out = hf.generate(ids, attention_mask=mask, max_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)
        return [o[L:].tolist() for o in out]

    res = {}
    for name, fn in (("ours", run_ours), ("transformers", run_hf)):
        fn()  # warm-up
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
        res[name] = (min(times), out)
    same = sum(a == b for a, b in zip(res["ours"][1], res["transformers"][1]))
    print(f"machine: {machine()}; torch threads {torch.get_num_threads()}")
    print(f"batch {len(prompts)}, prompt lengths {min(map(len, prompts))}-{L}, {n} new tokens, greedy, "
          f"best of {args.repeats}")
    print("| impl | time (s) | new tokens/s |\n|---|---|---|")
    for name, (t, _) in res.items():
        print(f"| {name} | {t:.2f} | {len(prompts) * n / t:.1f} |")
    print(f"ratio ours/transformers tokens/s: {res['transformers'][0] / res['ours'][0]:.2f}x; "
          f"identical greedy outputs: {same}/{len(prompts)}")


def bench_train(args, batch=4, seq_len=256, r=64):
    """Training tokens/s of train.py's step (GAL and MoGE recipes) against HF transformers + peft LoRA on
    the same SmolLM2 weights (model.py's converted safetensors folder): same tokens, labels, batch and
    sequence length, same rank, alpha, dropout and targets (q/k/v/o/gate/up/down), fp32, AdamW, grad
    clip, CPU. Two label settings: every token supervised, and only the last sixth (answers are ~1/6 of
    the demo's tokens; the prompt carries no loss). After one warm-up step each, the timed steps of the
    three set-ups alternate, so load from other processes hits them alike; the best and the median step
    time of each are reported (on a shared machine the best is the least disturbed)."""
    import peft  # optional (requirements-dev.txt): only the comparison needs it
    import transformers  # optional, as peft
    ids = torch.randint(0, 49152, (batch, seq_len), generator=torch.Generator().manual_seed(0))  # SmolLM2 vocab
    prompt = torch.arange(seq_len) < seq_len - seq_len // 6
    settings = {"all tokens supervised": ids, "last 1/6 supervised": ids.masked_fill(prompt, IGNORE_INDEX)}
    labels = {}  # the setting being timed

    def ours(recipe):
        torch.manual_seed(0)
        m, _ = M.load_model("default")
        molecule.attach_molecule(m)
        moge.attach_adapters(m, moge.MoGEConfig(recipe=recipe, r=r))
        step = TrainStep(m).train()
        params = [p for p in m.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-5)

        def run():
            lab = labels["now"]
            ce, aux, _ = step(list(ids), list(lab), [None] * batch)
            (ce.sum() / (lab[:, 1:] != IGNORE_INDEX).sum() + 0.01 * aux).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return run, m.name_or_path

    def hf(path):
        m = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        cfg = peft.LoraConfig(r=r, lora_alpha=16, lora_dropout=0.05, task_type="CAUSAL_LM", target_modules=[
            "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        m = peft.get_peft_model(m, cfg).train()
        params = [p for p in m.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-5)

        def run():
            m(input_ids=ids, labels=labels["now"]).loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return run

    gal, path = ours("gal")
    runs = {"transformers + peft LoRA": hf(path), "ours, gal": gal, "ours, moge": ours("moge")[0]}
    print(f"torch threads {torch.get_num_threads()}; SmolLM2-135M-Instruct ({path}); batch {batch} x {seq_len} "
          f"tokens, r {r}, alpha 16, dropout 0.05, fp32, AdamW; {args.repeats} interleaved steps after 1 warm-up")
    for setting, lab in settings.items():
        labels["now"] = lab
        times = {k: [] for k in runs}
        for fn in runs.values():  # warm-up
            fn()
        for _ in range(args.repeats):
            for k, fn in runs.items():
                t = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t)
        best = {k: min(v) for k, v in times.items()}
        med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
        peft_best, peft_med = best["transformers + peft LoRA"], med["transformers + peft LoRA"]
        print(f"\n{setting}\n| impl | best step (s) | tokens/s (best) | vs peft (best) | median step (s) | "
              "vs peft (median) |\n|---|---|---|---|---|---|")
        for k in runs:
            print(f"| {k} | {best[k]:.2f} | {batch * seq_len / best[k]:.0f} | {peft_best / best[k]:.2f}x | "
                  f"{med[k]:.2f} | {peft_med / med[k]:.2f}x |")
        print(f"moge / gal step time: {best['ours, moge'] / best['ours, gal']:.2f}x (best), "
              f"{med['ours, moge'] / med['ours, gal']:.2f}x (median); all step times (s): "
              + "; ".join(f"{k}: {', '.join(f'{t:.2f}' for t in v)}" for k, v in times.items()))


def bench_moge(args, T=8192):
    """MoGE FFN layer (moge.py) fwd+bwd vs a dense frozen FFN with one GAL adapter per linear vs the
    release's deep-copy loop (targets: MoGE <= 1.3x the dense FFN + GAL): bf16 base weights, fp32 adapters,
    training mode."""
    from triton.testing import do_bench  # optional triton (moge_kernels/ falls back to torch): this GPU path needs it
    from moge_kernels.bench import D, FFN, R  # moge_kernels/bench.py imports triton.testing at import, as above
    torch.manual_seed(0)
    mlp = torch.nn.Module()
    mlp.gate_proj, mlp.up_proj = torch.nn.Linear(D, FFN, bias=False), torch.nn.Linear(D, FFN, bias=False)
    mlp.down_proj = torch.nn.Linear(FFN, D, bias=False)
    mlp = mlp.cuda().to(torch.bfloat16).requires_grad_(False)
    cfg = moge.MoGEConfig()
    fast = moge.MoGEFFN(copy.deepcopy(mlp), cfg).cuda()
    with torch.no_grad():  # B is zero at init: give it values so nothing is timed on zeros
        for name in ("gate", "up", "down"):
            getattr(fast.experts, f"{name}_B").normal_(0, 0.01)
    ref = moge.ReferenceMoGE(fast).cuda()
    dense = copy.deepcopy(mlp)
    gcfg = moge.MoGEConfig(recipe="gal")
    for name in ("gate_proj", "up_proj", "down_proj"):
        moge.to_gal(getattr(dense, name), gcfg)
    dense_fwd = lambda h: dense.down_proj(torch.nn.functional.silu(dense.gate_proj(h)) * dense.up_proj(h))  # noqa
    h = torch.randn(T, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    dy = torch.randn(T, D, device="cuda", dtype=torch.bfloat16)
    res = {}
    for name, f in (("MoGE (shared bases, grouped_lora)", fast), ("dense FFN + GAL", dense_fwd),
                    ("release deep-copy loop", ref)):
        res[name] = do_bench(lambda: f(h).backward(dy), warmup=25, rep=100, return_mode="median")
    if args.profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                fast(h).backward(dy)
            torch.cuda.synchronize()
        print(f"\nprofile MoGE layer fwd+bwd T={T} (5 steps)")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=16))
    base = res["dense FFN + GAL"]
    print(f"\nMoGE FFN layer fwd+bwd, T={T}, d={D}, FFN={FFN}, r={R}, 5 experts top-2 + shared, bf16")
    print("| layer | ms | vs dense FFN + GAL |\n|---|---|---|")
    for name, ms in res.items():
        print(f"| {name} | {ms:.3f} | {ms / base:.2f}x |")
    speedup = res['release deep-copy loop'] / res['MoGE (shared bases, grouped_lora)']
    print(f"MoGE vs deep-copy loop: {speedup:.2f}x faster")


if __name__ == "__main__":
    if "--gpu" in sys.argv[1:]:  # the whole-model GPU benchmark has its own options (bench_gpu.py --help)
        bench_gpu.main([a for a in sys.argv[1:] if a != "--gpu"])
        sys.exit(0)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generate", action="store_true", help="batched generation vs transformers (CPU)")
    ap.add_argument("--train", action="store_true", help="training tokens/s vs transformers + peft (CPU)")
    ap.add_argument("--moge", action="store_true", help="MoGE FFN layer fwd+bwd vs dense FFN + GAL (GPU)")
    ap.add_argument("--profile", action="store_true", help="with --moge: CUDA profile of the MoGE layer")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if not (args.generate or args.train or args.moge):
        ap.error("choose --generate, --train and/or --moge")
    if args.generate:
        bench_generate(args)
    if args.train:
        bench_train(args)
    if args.moge:
        assert torch.cuda.is_available(), "the MoGE layer benchmark needs a CUDA GPU"
        bench_moge(args)
