"""Process setup shared by train.py, eval.py, rl.py and rft.py: the --device / --threads flags, ranks and device
from torchrun's environment, CPU threads per rank, rank-0-first caching, rank-0 printing, an all-reduce sum."""
import contextlib
import os

import torch
import torch.distributed as dist


def add_device_arguments(g) -> None:
    """--device and --threads, which compute_init reads (train.py, eval.py, rl.py, rft.py)."""
    g.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads per process; default: the "
                   "available cores divided by the processes on this machine")


def check_device(parser, args) -> None:
    """An argparse error for --device cuda on a machine without CUDA (compute_init would fail much later)."""
    if args.device and args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available on this machine (use --device cpu)")


def compute_init(args):
    """-> (ddp, rank, local_rank, world_size, device). torchrun sets RANK/LOCAL_RANK/WORLD_SIZE; a plain
    `python train.py` is rank 0 of 1. One process per device: NCCL on CUDA, gloo on CPU."""
    rank, local_rank = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    cuda = torch.cuda.is_available() if args.device is None else args.device.startswith("cuda")
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    else:  # processes on one machine share its cores; oversubscription makes every rank slower
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        torch.set_num_threads(args.threads or max(1, cores // local_world))
    ddp = world_size > 1
    if ddp:
        if cuda:
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return ddp, rank, local_rank, world_size, device


def compute_cleanup(ddp) -> None:
    """Every rank meets before the process group goes: a rank that destroyed gloo while its peer was still
    inside a collective (or still about to use it) died with SIGABRT, "terminate called without an active
    exception", at exit."""
    if ddp:
        dist.barrier()
        dist.destroy_process_group()


@contextlib.contextmanager
def rank0_first(ddp, master):
    """First-use caches (the converted SmolLM2 folder, the demo data) are built by rank 0 alone while the
    other ranks wait; then they read what rank 0 wrote."""
    if ddp and not master:
        dist.barrier()
    yield
    if ddp and master:
        dist.barrier()


def print0(*a, **kw):
    if int(os.environ.get("RANK", 0)) == 0:
        print(*a, **kw, flush=True)


def all_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t
