"""Reinforcement learning with verifiable rewards (GRPO) on top of a train.py checkpoint.

    python rl.py --ckpt out/checkpoints/step_000016 --tasks weight,tpsa,logp --partial-credit   # CPU demo sizes
    torchrun --nproc_per_node=8 rl.py --ckpt OUT --tasks weight,tpsa,logp,forward --data PATH --out rl_out
    python rl.py ... --resume                     # continue from the newest rl_out/checkpoints/step_*
    python eval.py --ckpt rl_out                  # an RL checkpoint is a train.py checkpoint: eval scores it

Reads top to bottom: arguments -> compute_init -> the SFT checkpoint (checkpoint.load_model) and the
frozen reference adapters -> prompts -> optimizer -> rewards, advantages and the GRPO loss -> the loop.

One step is GRPO (Shao et al. 2024, DeepSeekMath section 4.1.2), on the adapters, routers and projector
that stage 2 of train.py trains (the base model and the GIN stay frozen):
 1. sample: each rank takes P prompts (data.Loader, sharded and resumable as in train.py) and samples G
    answers per prompt in ONE batched KV-cache generate call under no_grad, which also returns the
    old-policy log-probs of the sampled tokens (model.generate(return_logprobs=True)): no second model;
 2. reward: verify.verify(task, prompt, answer, reference).score, optionally shaped (shaped_reward);
 3. advantage per group of G answers to one prompt: A = (r - mean) / (std + 1e-4); --no-std: r - mean
    (Dr. GRPO, Liu et al. 2025). A group whose answers all score the same has A = 0;
 4. reference (--kl-coef > 0 or --log-kl): log pi_ref of the sampled tokens from one no-grad teacher-forced
    pass with the starting checkpoint's adapter tensors swapped in (one base model in memory, never two);
 5. update: one teacher-forced pass with gradients over the SAMPLED TOKEN IDS (likelihood.answer_logprobs
    with answer_ids: decoded text re-encoded can tokenize differently) gives log pi_theta; per answer token
        loss = -min(rho A, clip(rho, 1 - eps, 1 + eps_high) A) + beta KL,   rho = pi_theta / pi_old,
        KL = pi_ref / pi_theta - log(pi_ref / pi_theta) - 1   (Schulman's k3 estimator, >= 0, as GRPO)
    summed over the answer tokens of all ranks and divided by their global count (token-level, as DAPO, Yu
    et al. 2025: long answers are not down-weighted), plus the MoGE balance loss as in train.py.

Deliberate choices: the policy is softmax(logits / T) at the sampling temperature (TRL's GRPOTrainer does
the same); top-p / top-k are cuts in the sampler, not part of the policy's log-probs. Adapter dropout is OFF (the
model runs in eval mode): the sampling pass and the trained pass must be one function, or rho is noise
(at step 0 rho = 1 up to the KV-cache vs full-pass float differences, logged as logp_gap). When beta = 0 a
sequence with A = 0 has no gradient, so it skips the training pass (it still counts in the token count).
Gradients of the (small) trainable tensors are summed over ranks with one all-reduce instead of a DDP
wrapper, so a rank whose groups carry no signal takes part without a forward pass.

Same discipline as train.py: exact resume (sampler RNG, data position, optimizer), checkpoints in train.py's
format written atomically (meta.json keeps the SFT run's model/recipe/adapter config, so eval.py loads an RL
checkpoint unchanged; the RL state sits under meta["rl"]), a non-finite guard, tqdm, OUT/log.jsonl (one JSON
object per step: reward, verified score, reward per task, verdict reasons, KL, entropy, answer length, ...)
and OUT/reward.png if matplotlib is installed.
"""
import argparse
import collections
import contextlib
import json
import math
import os
import time

import torch
import torch.distributed as dist
from tqdm import tqdm

import answers
import checkpoint
import curve
import data
import likelihood
import metrics
import moge
import molecule
import verify
from ddp import add_device_arguments, all_sum, check_device, compute_init, print0, rank0_first

# Defaults that depend on the data: `--data demo` (the default of a demo checkpoint) is sized so that a
# run finishes in minutes on CPU cores; otherwise a starting point for a GPU run (tune to your budget).
# The demo's micro-batch of 4 sequences keeps the SmolLM2 update pass near 4 GB of host memory.
DEMO = dict(prompts=2, group_size=4, max_new_tokens=24, max_steps=8, lr=2e-5, micro_batch=4)
FULL = dict(prompts=8, group_size=8, max_new_tokens=256, max_steps=500, lr=1e-5, micro_batch=16)


# ----------------------------------------------------------------------------- arguments

def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("what to train")
    g.add_argument("--ckpt", required=True, help="the train.py checkpoint to start from: a step folder "
                   "(OUT/checkpoints/step_NNNNNN) or an OUT folder (its newest); stage 2 (adapters)")
    g.add_argument("--tasks", default="weight,tpsa,logp", help="comma list of task keys whose train prompts "
                   "are used (their answers must be verifiable, see verify.py)")
    g.add_argument("--data", default=None, help="demo or a data folder; default: the checkpoint's data")
    g.add_argument("--out", default="rl_out", help="run folder: log.jsonl, reward.png, checkpoints/")

    g = p.add_argument_group("sampling (per rank and step: prompts x group-size answers)")
    g.add_argument("--prompts", type=int, default=None, help=f"prompts per rank per step; default "
                   f"{FULL['prompts']} ({DEMO['prompts']} with --data demo)")
    g.add_argument("--group-size", type=int, default=None, help=f"answers sampled per prompt (GRPO's G); "
                   f"default {FULL['group_size']} ({DEMO['group_size']} with --data demo)")
    g.add_argument("--temperature", type=float, default=1.0, help="sampling temperature; the trained policy "
                   "is softmax(logits / T)")
    g.add_argument("--top-p", type=float, default=1.0, help="nucleus cut of the sampler")
    g.add_argument("--top-k", type=int, default=0, help="keep the k largest logits in the sampler (0: off; "
                   "eval.py's default is 50, the release's HF default)")
    g.add_argument("--max-new-tokens", type=int, default=None, help=f"answer budget; default "
                   f"{FULL['max_new_tokens']} ({DEMO['max_new_tokens']} with --data demo: its property "
                   "answers are ~6 tokens)")
    g.add_argument("--max-len", type=int, default=None, help="longest prompt + answer in tokens (atoms "
                   "included); longer prompts are dropped and counted. Default: the checkpoint's")

    g = p.add_argument_group("objective")
    g.add_argument("--clip-eps", type=float, default=0.2, help="PPO clip: rho in [1 - eps, 1 + eps_high]")
    g.add_argument("--clip-eps-high", type=float, default=None, help="upper clip (DAPO's clip-higher uses "
                   "0.28); default: --clip-eps")
    g.add_argument("--kl-coef", type=float, default=0.0, help="beta of the KL penalty to the starting "
                   "policy (DeepSeekMath uses 0.04); > 0 costs one more no-grad forward per step")
    g.add_argument("--log-kl", action="store_true", help="measure the KL to the starting policy even when "
                   "--kl-coef is 0 (the same extra forward)")
    g.add_argument("--no-std", action="store_true", help="advantages r - mean without dividing by the "
                   "group's std (Dr. GRPO)")
    g.add_argument("--updates", type=int, default=1, help="optimizer updates per batch of samples (GRPO's "
                   "mu); > 1 reuses the samples off-policy, where the clip matters")
    g.add_argument("--micro-batch", type=int, default=None, help="sequences per forward/backward of the update "
                   f"(gradients accumulate; memory grows with it); 0: all of a rank's sequences at once. Default "
                   f"{FULL['micro_batch']} ({DEMO['micro_batch']} with --data demo)")
    g.add_argument("--aux-coef", type=float, default=None, help="MoGE balance-loss weight; default: the "
                   "checkpoint's")

    g = p.add_argument_group("reward shaping (each off by default; reward = max of the terms)")
    g.add_argument("--partial-credit", action="store_true", help="number tasks (weight, tpsa, logp) also earn "
                   "1 / (1 + |error| / s), s = the paper's MAE for the task: an answer as close as the paper's "
                   "average error earns 0.5")
    g.add_argument("--format-reward", type=float, default=0.0, help="an answer the verifier could read (a "
                   "reason other than empty, unparsable, invalid molecule, not verifiable, ...: NO_FORMAT) earns at "
                   "least this")

    g = p.add_argument_group("optimizer")
    g.add_argument("--max-steps", type=int, default=None, help=f"steps (batches of samples) in the run; "
                   f"default {FULL['max_steps']} ({DEMO['max_steps']} with --data demo)")
    g.add_argument("--lr", type=float, default=None, help=f"AdamW learning rate, constant after warmup; "
                   f"default {FULL['lr']} ({DEMO['lr']} with --data demo)")
    g.add_argument("--warmup-steps", type=int, default=0, help="linear warmup of the learning rate")
    g.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay")
    g.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip")
    g.add_argument("--seed", type=int, default=42, help="prompt order and sampling (rank r samples with "
                   "seed + r)")

    g = p.add_argument_group("checkpoints, logging, hardware")
    checkpoint.add_run_arguments(g)
    add_device_arguments(g)
    p.add_argument("--debug-nan-steps", default="", help=argparse.SUPPRESS)  # test hook
    return p


def parse_args(argv=None):
    parser = get_parser()
    args = parser.parse_args(argv)
    try:
        args.task_ratios = verify.verifiable(data.parse_tasks(args.tasks))
    except ValueError as e:
        parser.error(str(e))
    if args.temperature <= 0:
        parser.error("--temperature must be > 0: GRPO needs different answers to compare")
    check_device(parser, args)
    if args.resume and args.overwrite:
        parser.error("--resume keeps the run in --out, --overwrite deletes it: give one of them")
    if not 0 < args.top_p <= 1 or args.top_k < 0 or args.warmup_steps < 0:
        parser.error("--top-p must be in (0, 1], --top-k and --warmup-steps >= 0")
    if args.lr is not None and not args.lr > 0 or args.save_every is not None and args.save_every < 1:
        parser.error("--lr must be > 0 and --save-every >= 1")
    for k in ("prompts", "group_size", "max_new_tokens", "max_steps", "updates", "keep_last", "max_bad_steps"):
        if getattr(args, k) is not None and getattr(args, k) < 1:
            parser.error(f"--{k.replace('_', '-')} must be >= 1")
    if args.group_size == 1:
        parser.error("--group-size 1 gives every answer advantage 0: use >= 2")
    args.clip_eps_high = args.clip_eps if args.clip_eps_high is None else args.clip_eps_high
    args.debug_nan_steps = {int(s) for s in args.debug_nan_steps.split(",") if s}
    return args


# ----------------------------------------------------------------------------- rewards and advantages

# verify.REASONS under which no answer was read (or none can be checked): no format credit
NO_FORMAT = ("empty", "too long", "unparsable", "invalid molecule", "not verifiable", "unknown task", "bad reference",
             "verifier error", "rationale unreadable", "rationale inconsistent")  # a wrong rationale earns no credit
# partial-credit scale per number task: the paper's MAE (Table 3, metrics.PAPER)
PARTIAL_SCALE = {t: metrics.PAPER[t]["Average MAE"] for t in metrics.NUMBER_TASKS}


def default_reward():
    return verify.verify


def shaped_reward(task, verdict, prediction, reference, partial_credit=False, format_reward=0.0) -> float:
    """The verifier's score in [0, 1], raised (never lowered) by the shaping options:
    --partial-credit: number tasks earn 1 / (1 + |pred - ref| / PARTIAL_SCALE[task]) (first signed number
        of each, as metrics.py reads them);
    --format-reward F: an answer whose verdict is not one of NO_FORMAT earns at least F."""
    r = float(verdict.score)
    r = min(1.0, max(0.0, r)) if math.isfinite(r) else 0.0
    if partial_credit and task in PARTIAL_SCALE:
        p, ref = answers.first_number(answers.cut_answer(prediction)), answers.first_number(reference)
        if p is not None and ref is not None and math.isfinite(p - ref):
            r = max(r, 1.0 / (1.0 + abs(p - ref) / PARTIAL_SCALE[task]))
    if format_reward and verdict.reason not in NO_FORMAT:
        r = max(r, format_reward)
    return r


def group_advantages(rewards: torch.Tensor, group_size: int, std: bool = True) -> torch.Tensor:
    """rewards (P * G,), the G answers of a prompt adjacent -> advantages (P * G,), zero-mean per group.
    std: divide by the group's (unbiased) std + 1e-4, as TRL's GRPOTrainer (a constant group gives 0)."""
    r = rewards.double().view(-1, group_size)                         # (P, G)
    a = r - r.mean(1, keepdim=True)
    if std:
        a = a / (r.std(1, keepdim=True) + 1e-4)
    return a.view(-1).float()


def grpo_token_loss(logp, old, adv, ref=None, eps_low=0.2, eps_high=0.2, beta=0.0):
    """Per answer token (all (N,)): the clipped importance-ratio objective, negated, plus beta x KL.
    -> (loss (N,), kl (N,) or None, clipped (N,) bool: tokens whose ratio the clip cut off)."""
    ratio = torch.exp(logp - old)                                     # rho = pi_theta / pi_old
    unclipped, clipped = ratio * adv, ratio.clamp(1 - eps_low, 1 + eps_high) * adv
    loss = -torch.minimum(unclipped, clipped)
    kl = None
    if ref is not None:
        d = ref - logp                                                # log(pi_ref / pi_theta)
        kl = torch.exp(d) - d - 1                                     # k3: unbiased, >= 0
        if beta:
            loss = loss + beta * kl
    return loss, kl, (clipped < unclipped).detach()


@contextlib.contextmanager
def swapped(params: dict, tensors: dict):
    """Run with the trainable parameters' values replaced by `tensors` (the frozen starting adapters), under
    no_grad; the live values come back afterwards."""
    live = {n: p.data for n, p in params.items()}
    try:
        with torch.no_grad():
            for n, p in params.items():
                p.data = tensors[n]
            yield
    finally:
        for n, p in params.items():
            p.data = live[n]


def all_reduce_grads(params: list) -> None:
    """Sum gradients over ranks in one flat all-reduce (the loss is already divided by the global token
    count, so the sum is the global mean); a parameter without a gradient contributes zeros."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    if dist.is_initialized():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        grads = [f.view_as(p) for f, p in zip(flat.split([p.numel() for p in params]), params)]
    for p, g in zip(params, grads):
        p.grad = g


def gather_sum(stats: dict) -> dict:
    """Sum a dict of numbers (and of Counters) over ranks."""
    parts = [stats]
    if dist.is_initialized():
        parts = [None] * dist.get_world_size()
        dist.all_gather_object(parts, stats)
    out = {}
    for part in parts:
        for k, v in part.items():
            if isinstance(v, dict):
                out.setdefault(k, collections.Counter()).update(v)
            else:
                out[k] = out.get(k, 0) + v
    return out


# ----------------------------------------------------------------------------- main

def main(argv=None, reward_fn=None):
    """reward_fn(task, prompt, prediction, reference) -> a verdict with .score and .reason; default
    verify.verify."""
    args = parse_args(argv)
    ddp, rank, _, world, device = compute_init(args)
    master = rank == 0
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    reward_fn = reward_fn or default_reward()

    # ---------------------------------------------------------------- the SFT checkpoint and the reference
    step_dir = os.path.abspath(checkpoint.resolve(args.ckpt))
    # a run folder belongs to one run: never the SFT run's own folder, never another run's unless resumed
    checkpoint.claim(args.out, args.resume, args.overwrite, inside=step_dir, world=world, rank=rank)
    with rank0_first(ddp, master):
        model, tok, sft_meta = checkpoint.load_model(step_dir, device, torch.float32, log=print0)
    if sft_meta.get("moge") is None:
        raise SystemExit(f"{step_dir} is a stage-1 (projector-only) checkpoint; RL starts from stage 2")
    model.eval()  # dropout off: sampling and training passes compute the same policy
    params = moge.trainable_parameters(model)  # adapters, routers, projector (requires_grad set on load)
    need_ref = args.kl_coef > 0 or args.log_kl
    reference = {n: p.detach().clone() for n, p in params.items()} if need_ref else None
    data_src = args.data or sft_meta["args"].get("data", "demo")
    profile = DEMO if data_src == "demo" else FULL
    for k, v in profile.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.max_len = args.max_len or sft_meta["args"].get("max_len", data.MAX_LEN)
    aux_coef = sft_meta["moge"].get("aux_coef", 0.0) if args.aux_coef is None else args.aux_coef
    G, T = args.group_size, args.temperature
    n_train = sum(p.numel() for p in params.values())
    print0(f"RL from {step_dir} (SFT step {sft_meta.get('step')}): {n_train / 1e6:.2f}M trainable, world size "
           f"{world}, device {device}, {torch.get_num_threads()} threads per process")

    # ---------------------------------------------------------------- prompts
    with rank0_first(ddp, master):
        train_set = data.load_tasks(args.task_ratios, split="train", data=data_src, seed=args.seed,
                                    tokenizer=tok, max_len=args.max_len - args.max_new_tokens, verbose=master,
                                    mol_format=sft_meta["args"].get("mol_format", "selfies"))  # as trained
    loader = data.Loader(train_set, tok, args.prompts, rank=rank, world_size=world, seed=args.seed)
    tasks = sorted({s.task for s in train_set})
    total_steps = args.max_steps
    save_every = checkpoint.cadence(args.save_every, total_steps)
    sampling = (f"{args.prompts} prompts x {G} answers x {world} ranks, T={T}, top-p {args.top_p}, "
                f"top-k {args.top_k or 'off'}, {args.max_new_tokens} new tokens")
    print0(f"data {data_src}: {len(train_set)} prompts in {len(tasks)} tasks; {total_steps} steps of {sampling}")

    # ---------------------------------------------------------------- optimizer: AdamW, constant after warmup
    optimizer = torch.optim.AdamW(params.values(), lr=args.lr, weight_decay=args.weight_decay, betas=(0.9, 0.999),
                                  eps=1e-8)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / args.warmup_steps) if args.warmup_steps else 1.0)
    gen = torch.Generator(device=device).manual_seed(args.seed + rank)  # the sampler's own RNG

    # ---------------------------------------------------------------- resume
    step = 0
    if args.resume:
        meta, rng = checkpoint.resume(args.out, model, optimizer, scheduler, loader, args,
                                      ("tasks", "seed", "prompts", "group_size", "temperature", "top_p", "top_k",
                                       "max_new_tokens", "kl_coef"), lambda m: m.get("rl") or {}, rank, device)
        if meta["rl"].get("sft_checkpoint") != step_dir:
            raise SystemExit(f"--resume: the run in {args.out} started from {meta['rl'].get('sft_checkpoint')}, "
                             f"not --ckpt {step_dir}")
        step = meta["step"]
        gen.set_state(torch.tensor(rng["sampler"], dtype=torch.uint8))
    log_path = checkpoint.start_log(args.out, step if args.resume else None) if master else None

    def save():
        rngs = checkpoint.gather({**checkpoint.rng_state(device), "sampler": gen.get_state().tolist()}, world)
        skip = ("task_ratios", "debug_nan_steps")
        meta = {**{k: v for k, v in sft_meta.items() if k not in ("data_position", "rng")},
                "step": step, "total_steps": total_steps, "world_size": world,
                "args": {**sft_meta["args"], "data": data_src},  # what eval.py rebuilds the model from
                "rl": {"args": {k: v for k, v in vars(args).items() if k not in skip}, "sft_checkpoint": step_dir,
                       "sft_step": sft_meta.get("step"), "data_position": loader.state_dict(), "rng": rngs}}
        if master:
            try:
                print0(f"saved {checkpoint.save(args.out, step, model, optimizer, scheduler, meta, args.keep_last)}")
            except ValueError as e:  # non-finite tensors: never the newest checkpoint
                print0(f"\n{e}")

    # ---------------------------------------------------------------- the loop
    bar = tqdm(total=total_steps, initial=step, disable=not master, dynamic_ncols=True)
    batches = iter(loader)
    stops = set(tok.eos_token_ids)
    plist = list(params.values())
    bad_in_row, skipped, t_start, first_step = 0, 0, time.time(), step
    stop_at = total_steps if args.stop_after is None else min(total_steps, step + args.stop_after)
    while step < stop_at:
        t0 = time.time()
        mb = next(batches)
        # B = P x G sequences, the G answers of a prompt adjacent
        items = [(s.prompt, g) for s, g in zip(mb["samples"], mb["graphs"]) for _ in range(G)]
        samples = [s for s in mb["samples"] for _ in range(G)]

        # 1. sample, keeping the old policy's log-probs of the sampled tokens
        with torch.no_grad(), autocast:
            ids = [tok.encode_chat(user)[0] for user, _ in items]
            emb, mask, _ = molecule.embed_inputs(model, ids, [g for _, g in items], padding_side="left")
            out, old_lp = model.generate(inputs_embeds=emb, attention_mask=mask, max_new_tokens=args.max_new_tokens,
                                         temperature=T, top_p=args.top_p, top_k=args.top_k, generator=gen,
                                         eos_token_ids=tok.eos_token_ids, pad_token_id=tok.pad_token_id,
                                         return_logprobs=True)
        answer_ids, old = [], []
        for row, lp in zip(out.tolist(), old_lp.float().cpu()):
            n = next((i for i, t in enumerate(row) if t < 0), len(row))  # the stop token kept
            answer_ids.append(row[:n])
            old.append(lp[:n])
        texts = [tok.decode(a[:-1] if a[-1] in stops else a) for a in answer_ids]
        t_gen = time.time() - t0

        # 2. rewards, 3. advantages
        st = dict.fromkeys(("verified", "trained_tokens", "clipped", "logp_gap", "kl"), 0.0)  # every rank: every key
        reasons, per_task = collections.Counter(), {}
        rewards = []
        for s, text in zip(samples, texts):
            v = reward_fn(s.task, s.prompt, text, s.answer)
            r = shaped_reward(s.task, v, text, s.answer, args.partial_credit, args.format_reward)
            rewards.append(r)
            reasons[v.reason] += 1
            per_task[f"{s.task}/reward"] = per_task.get(f"{s.task}/reward", 0.0) + r
            per_task[f"{s.task}/verified"] = per_task.get(f"{s.task}/verified", 0.0) + float(v.score)
            per_task[f"{s.task}/n"] = per_task.get(f"{s.task}/n", 0) + 1
            st["verified"] += float(v.score)
        rewards = torch.tensor(rewards)
        adv = group_advantages(rewards, G, std=not args.no_std)
        lens = [len(a) for a in answer_ids]
        st.update(reward=float(rewards.sum()), n=len(rewards), tokens=sum(lens),
                  truncated=sum(a[-1] not in stops for a in answer_ids), lp_sum=float(sum(o.sum() for o in old)),
                  groups=len(mb["samples"]), groups_signal=int((rewards.view(-1, G).std(1) > 0).sum()))
        # sequences that carry a gradient (all of them when the KL term is on or measured)
        live = [i for i in range(len(items)) if need_ref or adv[i] != 0]
        n_global = all_sum(torch.tensor(float(sum(lens)))).item()  # answer tokens of all ranks, before backward
        mbs = args.micro_batch or max(1, len(live))
        chunks = [live[i:i + mbs] for i in range(0, len(live), mbs)]

        # 4. the reference policy's log-probs: the starting adapters swapped in, no grad
        ref = {}
        if need_ref and live:
            with swapped(params, reference), autocast:
                lps = likelihood.answer_logprobs(model, tok, [items[i] for i in live], None, batch_size=mbs,
                                                 answer_ids=[answer_ids[i] for i in live], temperature=T)
            ref = {i: lp.float() for i, lp in zip(live, lps)}

        # 5. updates: teacher-forced log-probs of the sampled ids with gradients, the GRPO loss, one step
        for u in range(args.updates):
            loss_local = 0.0
            for chunk in chunks:
                with autocast:
                    new = likelihood.answer_logprobs(model, tok, [items[i] for i in chunk], None,
                                                     batch_size=len(chunk), grad=True,
                                                     answer_ids=[answer_ids[i] for i in chunk], temperature=T)
                    aux = moge.aux_loss(model).to(device)
                logp = torch.cat(new).float()                                           # (N,)
                old_c = torch.cat([old[i] for i in chunk]).to(device)
                adv_c = torch.cat([adv[i].expand(lens[i]) for i in chunk]).to(device)
                ref_c = torch.cat([ref[i] for i in chunk]) if need_ref else None
                tok_loss, kl, clipped = grpo_token_loss(logp, old_c, adv_c, ref_c, args.clip_eps,
                                                        args.clip_eps_high, args.kl_coef)
                loss = tok_loss.sum() / max(n_global, 1.0) + aux_coef * aux / (len(chunks) * world)
                loss.backward()
                loss_local += float(loss.detach())
                if u == 0:  # the statistics of the on-policy update
                    st["trained_tokens"] += len(logp)
                    st["clipped"] += int(clipped.sum())
                    st["logp_gap"] += float((logp.detach() - old_c).abs().sum())
                    if kl is not None:
                        st["kl"] += float(kl.detach().sum())
            if step + 1 in args.debug_nan_steps and master:  # test hook; also for a step without live groups
                loss_local = float("nan")
            all_reduce_grads(plist)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(plist, args.clip))  # same value on every rank
            loss_global = all_sum(torch.tensor(loss_local, dtype=torch.float64)).item()
            finite = math.isfinite(loss_global) and math.isfinite(grad_norm)
            if finite:
                optimizer.step()
                bad_in_row = 0
            else:
                skipped, bad_in_row = skipped + 1, bad_in_row + 1
            optimizer.zero_grad(set_to_none=True)
            lr = scheduler.get_last_lr()[0]
            scheduler.step()
        step += 1

        # log: sums over ranks
        tot = gather_sum({**st, **per_task, "reasons": reasons})
        n, nt = tot["n"], max(tot["trained_tokens"], 1)
        rec = {"step": step, "reward": tot["reward"] / n, "verified": tot["verified"] / n,
               "task_reward": {t: tot[f"{t}/reward"] / tot[f"{t}/n"] for t in tasks if tot.get(f"{t}/n")},
               "task_verified": {t: tot[f"{t}/verified"] / tot[f"{t}/n"] for t in tasks if tot.get(f"{t}/n")},
               "reasons": dict(tot["reasons"]), "kl": tot["kl"] / nt if need_ref else None,
               "entropy": -tot["lp_sum"] / max(tot["tokens"], 1),  # -mean log pi_old(sampled): MC estimate
               "answer_len": tot["tokens"] / n, "truncated": tot["truncated"] / n,
               "groups_with_signal": tot["groups_signal"] / tot["groups"], "clip_frac": tot["clipped"] / nt,
               "logp_gap": tot["logp_gap"] / nt, "loss": loss_global, "grad_norm": grad_norm, "lr": lr,
               "skipped": not finite, "answers": n, "step_time": round(time.time() - t0, 3),
               "gen_time": round(t_gen, 3),
               "example": {"task": samples[0].task, "answer": texts[0][:200], "reference": samples[0].answer[:200],
                           "reward": rewards[0].item()}}
        if master:
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            bar.set_postfix(reward=f"{rec['reward']:.3f}", verified=f"{rec['verified']:.3f}",
                            len=f"{rec['answer_len']:.1f}", skipped=skipped)
            bar.update(1)
        if not finite:
            checkpoint.report_bad_step(args, step, loss_global, grad_norm, bad_in_row, skipped, bar, ddp)
        if (step % save_every == 0 and finite) or step == stop_at:
            save()
    bar.close()
    if master:
        curve.plot_rewards(log_path, os.path.join(args.out, "reward.png"))
    checkpoint.finish(args.out, ddp, first_step, step, total_steps, time.time() - t_start, skipped)
    return model


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"rl.py: error: {e}") from None
