"""The run folder: what train.py and rl.py write, and what eval.py, rl.py, convert.py and likelihood read.

    OUT/log.jsonl                          one JSON object per optimizer step (truncated on --resume)
    OUT/checkpoints/step_000123/
        adapters.safetensors               every trainable tensor (adapters, routers, projector), HF-named
        optimizer.pt                       optimizer + scheduler state, read with torch.load(weights_only=True)
        meta.json                          args, base model + its config, GIN source, MoGE config, step,
                                           data position, per-rank RNG states (rl.py: its own under "rl")

    d = resolve(path)                                   # a step folder as given, or the newest under OUT
    model, tok, meta = load_model(d, device, dtype)     # rebuilt from meta.json, adapters loaded strictly
    fresh, tok = build_model(meta, device, dtype)       # the same run's step-0 model (fresh seeded adapters)
    save(out, step, model, optimizer, scheduler, meta, keep_last)   # atomic; rotates old steps away
    meta = load_training(d, model, optimizer, scheduler)            # --resume: tensors + optimizer state

A checkpoint is written into a temporary folder and renamed, so a crash mid-save leaves the previous one
whole and a half-written folder is never taken for a checkpoint (it has no meta.json under a step_ name).
"""
import argparse
import fcntl
import json
import os
import pickle  # only for its exception type: a corrupt optimizer.pt raises UnpicklingError
import random
import re
import shutil
import sys

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

import model as M
import moge
import molecule
from ddp import compute_cleanup, print0
from readers import disk_error

STEP_DIR = re.compile(r"step_\d+")


class CorruptCheckpoint(ValueError):
    """A checkpoint file that exists but does not read back (truncated, empty, bad header, NaN/Inf, bad JSON)."""


class RunFolderError(ValueError):
    """A run folder that belongs to another run (or is being written by one)."""


def _steps_or_epoch(v):
    """--save-every with epochs: a step count, or 'epoch'."""
    if v == "epoch":
        return v
    try:
        return int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of steps or 'epoch', got {v!r}") from None


def add_run_arguments(g, epochs=False) -> None:
    """The run-folder flags train.py and rl.py share, added to an argparse group. epochs: --save-every also
    takes 'epoch' (train.py; rl.py has no epochs)."""
    g.add_argument("--save-every", type=_steps_or_epoch if epochs else int, default=None, help="steps between "
                   "checkpoints; default: a tenth of the run, at least 10; the last step is always saved" + (
                       "; 'epoch': at every epoch boundary (len(loader) // grad-accum steps), as the release's "
                       "--save_strategy epoch --save_total_limit 2 (1789336421/Omni-Mol scripts/train.sh:49-50); "
                       "the paper's epoch-14 checkpoint is then step 14 x that (printed at the start; a 15-epoch "
                       "run keeps it with --keep-last 2)" if epochs else ""))
    g.add_argument("--keep-last", type=int, default=3, help="checkpoints kept; older ones are deleted")
    g.add_argument("--overwrite", action="store_true", help="delete the checkpoints and logs of an earlier run "
                   "in --out first (without it, a used run folder is refused unless --resume)")
    g.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in "
                   "OUT/checkpoints (adapters, optimizer, schedule, data position, every rank's RNG): on CPU with "
                   "the same world size the run continues exactly as if never interrupted")
    g.add_argument("--stop-after", type=int, default=None, help="stop (with a checkpoint) after this many "
                   "steps of this invocation, e.g. to fit a job's time limit; --resume continues")
    g.add_argument("--max-bad-steps", type=int, default=5, help="a step with a non-finite loss or gradient "
                   "norm is skipped and counted; this many in a row stop the run")


# ----------------------------------------------------------------------------- finding checkpoints

def steps(out: str) -> list:
    """Complete checkpoints under a run folder (a finished rename with its meta.json), oldest first."""
    root = os.path.join(out, "checkpoints")
    if not os.path.isdir(root):
        return []
    names = sorted(n for n in os.listdir(root) if STEP_DIR.fullmatch(n)
                   and os.path.exists(os.path.join(root, n, "meta.json")))
    return [os.path.join(root, n) for n in names]


def resolve(path) -> str:
    """A step folder as given, or the newest complete OUT/checkpoints/step_NNNNNN under an OUT folder."""
    path = str(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"checkpoint path {path!r} does not exist "
                                "(train.py writes OUT/checkpoints/step_NNNNNN/)")
    if os.path.exists(os.path.join(path, "meta.json")) or STEP_DIR.fullmatch(os.path.basename(os.path.normpath(path))):
        return path
    ck = os.path.join(path, "checkpoints")
    found = steps(path)  # complete ones: a folder without meta.json is a save that never finished
    if not found:
        raise FileNotFoundError(f"no checkpoint in {path!r}: expected {ck}/step_NNNNNN/ (written by train.py) "
                                "or a step folder; eval never falls back to the bare base model")
    return found[-1]


def read_meta(step_dir) -> dict:
    path = os.path.join(step_dir, "meta.json")
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptCheckpoint(f"checkpoint {step_dir} is corrupt: {path} is not valid JSON: {e}") from None
    if not isinstance(meta, dict):
        raise CorruptCheckpoint(f"checkpoint {step_dir} is corrupt: {path} holds a {type(meta).__name__}, "
                                "not a JSON object")
    return meta


# ----------------------------------------------------------------------------- RNG state as JSON

def rng_state(device) -> dict:
    """Every RNG a training step draws from (LoRA dropout: torch; data helpers: python, numpy), as JSON lists."""
    st = {"torch": torch.get_rng_state().tolist(), "python": json.loads(json.dumps(random.getstate())),
          "numpy": [v.tolist() if isinstance(v, np.ndarray) else v for v in np.random.get_state()]}
    if device.type == "cuda":
        st["cuda"] = torch.cuda.get_rng_state(device).tolist()
    return st


def set_rng_state(st: dict, device) -> None:
    torch.set_rng_state(torch.tensor(st["torch"], dtype=torch.uint8))
    v, state, gauss = st["python"]
    random.setstate((v, tuple(state), gauss))
    kind, keys, pos, has_gauss, cached = st["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "cuda" in st and device.type == "cuda":
        torch.cuda.set_rng_state(torch.tensor(st["cuda"], dtype=torch.uint8), device)


def gather(obj, world: int) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank (a collective under torch.distributed)."""
    if world == 1:
        return [obj]
    out = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out


# ----------------------------------------------------------------------------- a run folder belongs to one run

RUN_FILES = ("checkpoints", "log.jsonl", "heldout.jsonl", "loss.png", "learning_curve.png", "reward.png", "eval")
_LOCKS = {}  # run folder (real path) -> its open lock file: held until release() or the process ends


def lock(out) -> None:
    """An exclusive lock on OUT/.lock for the life of this process (fcntl.flock: released by the OS when the
    process ends, however it ends). A second run on the same folder gets RunFolderError naming the holder."""
    os.makedirs(out, exist_ok=True)
    if os.path.realpath(out) in _LOCKS:  # this process holds it already (a finished run called in-process)
        return
    path = os.path.join(out, ".lock")
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise RunFolderError(f"run folder {out} is in use by another run (pid {holder}, lock {path}); wait for "
                             "it to finish or choose another --out") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    _LOCKS[os.path.realpath(out)] = f


def release(out) -> None:
    """Give the run folder's lock back (the end of a run); a no-op where this process holds none."""
    f = _LOCKS.pop(os.path.realpath(out), None)
    if f is not None:
        f.close()  # closing the descriptor drops the flock


def previous_run(out) -> str | None:
    """What of an earlier run lies in OUT (checkpoints, logs), in words; None if nothing."""
    found = steps(out)
    parts = [f"{len(found)} checkpoint(s), newest {os.path.basename(found[-1])}"] if found else []
    parts += [n for n in RUN_FILES[1:] if os.path.exists(os.path.join(out, n))]
    return ", ".join(parts) or None


def claim(out, resume=False, overwrite=False, inside=None, world=1, rank=0) -> None:
    """Make OUT this run's folder, on every rank together (rank 0 decides, all ranks get its verdict, so no
    rank waits forever in a collective for a peer that stopped): lock it, and refuse a folder that holds
    another run unless the run resumes it (--resume) or deletes it (--overwrite: only the run files named
    in RUN_FILES are removed, never anything else of the folder). inside: a path the run reads from
    (rl.py's --ckpt) that OUT must not contain, since the run would write over it."""
    err = None
    if rank == 0:
        try:
            if inside is not None:
                a, b = os.path.abspath(inside), os.path.abspath(out)
                if os.path.commonpath([a, b]) == b:
                    raise RunFolderError(f"--out {out} holds the checkpoint this run starts from ({inside}); "
                                         "write the new run into a folder of its own")
            lock(out)
            old = previous_run(out)
            if old and not resume:
                if not overwrite:
                    raise RunFolderError(f"--out {out} already holds a run ({old}). Continue it with --resume, "
                                         "choose a new --out, or pass --overwrite to delete that run's files")
                for n in RUN_FILES:
                    p = os.path.join(out, n)
                    shutil.rmtree(p) if os.path.isdir(p) else os.remove(p) if os.path.exists(p) else None
        except (RunFolderError, OSError) as e:
            err = str(e) if isinstance(e, RunFolderError) else disk_error(e, out)
    err = gather(err, world)[0]
    if err:
        raise RunFolderError(err)


# ----------------------------------------------------------------------------- writing

def _mode_as_siblings(path) -> None:
    """safetensors writes 0600; make the file readable like the JSON files beside it (0666 minus the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def non_finite(model) -> list:
    """Names of the trainable tensors holding NaN or Inf."""
    return [n for n, t in moge.adapter_state_dict(model).items()
            if t.is_floating_point() and not torch.isfinite(t).all()]

def cadence(save_every, total_steps, steps_per_epoch=None) -> int:
    """Steps between checkpoints: as asked ('epoch': steps_per_epoch), else a tenth of the run and at least 10
    (the last step is always saved too)."""
    if save_every == "epoch":
        return steps_per_epoch
    return save_every or max(10, total_steps // 10)


def save(out, step, model, optimizer, scheduler, meta, keep_last, crash_after_adapters=False) -> str:
    """Rank 0 only. Written into a temporary folder, then renamed: a crash mid-save leaves the previous
    checkpoints whole, and a half-written folder is never mistaken for a checkpoint. Keeps the newest
    keep_last steps. Refuses (ValueError) a model with non-finite tensors: it must never become the newest."""
    bad = non_finite(model)
    if bad:
        raise ValueError(f"step {step} not saved: {len(bad)} trainable tensor(s) hold NaN/Inf (first: {bad[0]})")
    root = os.path.join(out, "checkpoints")
    os.makedirs(root, exist_ok=True)
    final = os.path.join(root, f"step_{step:06d}")
    tmp = os.path.join(root, f".tmp_step_{step:06d}_{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    moge.save_adapters(model, os.path.join(tmp, "adapters.safetensors"))
    _mode_as_siblings(os.path.join(tmp, "adapters.safetensors"))
    if crash_after_adapters:  # test hook: die the way a killed job dies, with no cleanup
        os._exit(17)
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
               os.path.join(tmp, "optimizer.pt"))
    with open(os.path.join(tmp, "meta.json"), "w") as f:
        json.dump(meta, f)
    if os.path.exists(final):  # the same step saved again (a resumed run): replace it
        shutil.rmtree(final)
    os.rename(tmp, final)
    for old in steps(out)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    for n in os.listdir(root):  # leftovers of crashed saves
        if n.startswith(".tmp_step_") and not n.endswith(f"_{os.getpid()}"):
            shutil.rmtree(os.path.join(root, n), ignore_errors=True)
    return final


def write_converted(model, out_dir, meta) -> None:
    """A checkpoint made by convert.py: adapters.safetensors + meta.json, no optimizer state (it scores and
    initialises runs, it does not resume one). meta.json is written last and renamed into place."""
    os.makedirs(out_dir, exist_ok=True)
    moge.save_adapters(model, os.path.join(out_dir, "adapters.safetensors"), metadata={"format": "pt"})
    _mode_as_siblings(os.path.join(out_dir, "adapters.safetensors"))
    tmp = os.path.join(out_dir, f".meta.json.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=1)
    os.replace(tmp, os.path.join(out_dir, "meta.json"))


def start_log(out, resume_step=None) -> str:
    """OUT/log.jsonl for a run: a fresh run starts an empty log; a resumed one forgets the steps logged
    after its checkpoint (they will be taken again). Rank 0 only. Returns the log's path."""
    path = os.path.join(out, "log.jsonl")
    if resume_step is None:
        if os.path.exists(path):
            os.remove(path)
    elif os.path.exists(path):
        with open(path) as f:
            keep = [ln for ln in f if ln.strip() and json.loads(ln).get("step", 0) <= resume_step]
        with open(path, "w") as f:
            f.writelines(keep)
    return path


def report_bad_step(args, step, loss, grad_norm, bad_in_row, skipped, bar, ddp):
    """A skipped non-finite step (train.py, rl.py): say so; after --max-bad-steps in a row, stop (exit 1)
    naming the last good checkpoint of the run folder."""
    print0(f"\nstep {step}: non-finite loss ({loss}) or gradient norm ({grad_norm}); update skipped "
           f"({bad_in_row} in a row, {skipped} in this run)")
    if bad_in_row >= args.max_bad_steps:
        bar.close()
        good = steps(args.out)
        print0(f"stopping: {bad_in_row} non-finite steps in a row (--max-bad-steps {args.max_bad_steps}). "
               f"Last good checkpoint: {good[-1] if good else 'none written yet'}. Lower --lr or look at "
               "the data, then continue with --resume.")
        if ddp:
            torch.distributed.destroy_process_group()
        sys.exit(1)


def finish(out, ddp, first_step, step, total_steps, seconds, skipped) -> None:
    """The end of a train.py / rl.py run, on every rank: the summary line (rank 0), all ranks meet before the
    process group goes, and the run folder's lock is released."""
    print0(f"done: steps {first_step} -> {step} of {total_steps} in {seconds:.0f}s, {skipped} skipped; "
           f"{out}/log.jsonl, checkpoints in {out}/checkpoints")
    compute_cleanup(ddp)
    release(out)


# ----------------------------------------------------------------------------- reading

def read_adapters(step_dir) -> dict:
    """{name: tensor} of step_dir/adapters.safetensors; CorruptCheckpoint for a missing, truncated, empty or
    badly-headed file or one holding NaN/Inf (such adapters answer '!!!!' and train to NaN)."""
    path = os.path.join(step_dir, "adapters.safetensors")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {step_dir} is incomplete, missing: {path}")
    try:
        sd = load_file(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CorruptCheckpoint(f"checkpoint {step_dir} is corrupt: {path}: {e}") from None
    bad = [n for n, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CorruptCheckpoint(f"checkpoint {step_dir} is corrupt: {path} holds NaN/Inf in {len(bad)} tensor(s) "
                                f"(first: {bad[0]})")
    return sd


def refused(e: Exception) -> str:
    """Why torch.load(weights_only=True) refused a file, without torch's advice to load it some less safe way
    ("Re-running torch.load with weights_only set to False will likely succeed", add_safe_globals): never, for
    a file we refused to unpickle."""
    text = str(e)
    m = re.search(r"Unsupported global: GLOBAL [\w.]+", text)
    if m:
        return f"it holds a pickled object ({m.group(0)}), not only tensors"
    keep = [ln.strip() for ln in text.splitlines()
            if ln.strip() and not re.search(r"weights_only|can still be loaded|safe_globals|trust", ln)]
    return " ".join(keep) or type(e).__name__


def read_optimizer(step_dir) -> dict:
    path = os.path.join(step_dir, "optimizer.pt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {step_dir} is incomplete, missing: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as e:
        raise CorruptCheckpoint(f"checkpoint {step_dir} is corrupt: {path}: {refused(e)}") from None


def newest_intact(out, before=None) -> str | None:
    """The newest checkpoint of a run whose three files read back cleanly (older than `before` if given)."""
    for d in reversed(steps(out)):
        if before is not None and os.path.basename(d) >= os.path.basename(before):
            continue
        try:
            read_meta(d), read_adapters(d), read_optimizer(d)
            return d
        except (ValueError, OSError):
            continue
    return None


def load_training(step_dir, model, optimizer, scheduler) -> dict:
    """--resume: the trained tensors into model (strictly), the optimizer and scheduler state; -> meta.
    A corrupt file is a CorruptCheckpoint that names the newest intact checkpoint of the run."""
    try:
        meta, sd, state = read_meta(step_dir), read_adapters(step_dir), read_optimizer(step_dir)
    except CorruptCheckpoint as e:
        good = newest_intact(os.path.dirname(os.path.dirname(os.path.abspath(step_dir))), before=step_dir)
        hint = f"{good}: delete the corrupt folder to resume from it" if good else "none"
        raise CorruptCheckpoint(f"{e}. The newest intact checkpoint is {hint}") from None
    moge.load_adapters(model, sd)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return meta


def resume(out, model, optimizer, scheduler, loader, args, keys, section, rank, device):
    """--resume of train.py and rl.py: the newest checkpoint of OUT into model, optimizer, scheduler and the data
    loader, and this rank's RNG states restored. section(meta) -> {"args", "data_position", "rng"}: where the run
    keeps them (train.py: meta itself; rl.py: meta["rl"]); each of keys must equal this run's args (a mismatch
    would not continue the same run). -> (meta, this rank's RNG record)."""
    found = steps(out)
    if not found:
        raise SystemExit(f"--resume: no checkpoint in {os.path.join(out, 'checkpoints')}")
    meta = load_training(found[-1], model, optimizer, scheduler)
    sec = section(meta)
    for k in keys:
        if sec["args"].get(k) != getattr(args, k):
            raise SystemExit(f"--resume: {found[-1]} ran with --{k.replace('_', '-')} {sec['args'].get(k)!r}, this "
                             f"run has {getattr(args, k)!r}")
    try:  # the data position belongs to one batch size and world size; data.py names a mismatch
        loader.load_state_dict(sec["data_position"])
    except ValueError as e:
        raise SystemExit(f"--resume: {e}") from None
    set_rng_state(sec["rng"][rank], device)
    print0(f"resumed from {found[-1]} at step {meta['step']}")
    return meta, sec["rng"][rank]


def _build(meta, device, dtype, where="meta.json"):
    margs = meta.get("args", {})
    if "model" not in margs or "moge" not in meta:
        raise ValueError(f"{where} lacks args.model or moge (the adapter config): cannot rebuild the model")
    model, tok = M.load_model(margs["model"], device=device, dtype=dtype)
    if "model_config" in meta and json.loads(json.dumps(model.config.to_hf())) != meta["model_config"]:
        raise ValueError(f"the base model {margs['model']!r} is not the one this checkpoint was trained on "
                         f"(its config differs from meta.json's model_config)")
    molecule.attach_molecule(model, gin_path=margs.get("gin"))  # frozen: the same seeded init train.py used
    if meta["moge"] is not None:  # stage 2; a stage-1 checkpoint holds the projector only
        moge.attach_adapters(model, moge.MoGEConfig(**meta["moge"]))
    return model, tok


def build_model(meta, device, dtype):
    """train.py's step-0 model of a run: the same base model, graph tower and adapter config, with the
    projector and adapters freshly initialised from the run's seed as train.py does (seed, then build).
    The caller's RNG state is left alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(meta.get("args", {}).get("seed", 42))
        model, tok = _build(meta, device, dtype)
    return model.to(device).eval(), tok


def load_model(step_dir, device, dtype, log=print):
    """Rebuild the trained model exactly: base model named in meta.json, molecule encoder, adapters of the
    recorded config, then every trained tensor from adapters.safetensors, strictly (missing, extra or
    mis-shaped tensors are an error); the tokenizer starts prompts with the run's BOS count (meta args.bos).
    -> (model in eval mode, tokenizer, meta)."""
    files = {name: os.path.join(step_dir, name) for name in ("meta.json", "adapters.safetensors")}
    missing = [p for p in files.values() if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"checkpoint {step_dir} is incomplete, missing: {', '.join(missing)}")
    meta = read_meta(step_dir)
    model, tok = _build(meta, device, dtype, files["meta.json"])
    tok.set_bos(meta["args"].get("bos", 1))  # prompts as the run was trained (a converted release run: 2)
    moge.load_adapters(model, read_adapters(step_dir))
    model.to(device).eval()
    margs = meta["args"]
    log(f"loaded base model {getattr(model, 'name_or_path', margs['model'])}")
    if margs.get("gin"):
        log(f"loaded graph encoder {margs['gin']}")
    for name in ("meta.json", "adapters.safetensors"):
        log(f"loaded {files[name]}")
    log(f"recipe {margs.get('recipe', '?')}, step {meta.get('step', '?')}")
    return model, tok, meta
