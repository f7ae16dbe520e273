"""Benchmarks measured side by side in one run; results go into BENCHMARKS.md by hand.

    python bench.py --generate     # batched KV-cache generation vs transformers generate (CPU, SmolLM2)
    python bench.py --train        # training tokens/s vs transformers + peft LoRA (see train section)
    python kernels/bench.py        # grouped-LoRA kernel and MoGE layer (GPU)
"""
import argparse
import os
import platform
import time

import torch


def machine() -> str:
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {dev}, torch {torch.__version__}"


def bench_generate(args):
    """Same weights (the converted SmolLM2 folder), same prompts, greedy, exactly N new tokens each."""
    import transformers
    import model as M
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


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generate", action="store_true", help="batched generation vs transformers (CPU)")
    ap.add_argument("--train", action="store_true", help="training tokens/s vs transformers + peft (CPU)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if not (args.generate or args.train):
        ap.error("choose --generate and/or --train")
    if args.generate:
        bench_generate(args)
    if args.train:
        from train import bench_train  # the training benchmark lives beside the loop it measures
        bench_train(args)
