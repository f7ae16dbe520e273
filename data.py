"""The 16 Omni-Mol tasks: the release's prompts and file formats, readers, the sample pipeline
(SELFIES -> graph source, chat encoding with answer-only loss, length check, batches in the release's
uniform random order or grouped by length, sharded over DDP ranks, resumable position). The embedded
demo data is built by demo_data.py.

    samples = load_tasks("all", split="train", data="demo", tokenizer=tok)   # list[Sample]
    loader = Loader(samples, tok, batch_size=8, rank=r, world_size=w, seed=42)
    for batch in loader: ...                 # endless over epochs; loader.state_dict() resumes exactly
    python data.py build-demo --out data/demo   # (also done on first use of data="demo")
    python data.py stats --tasks all --data PATH   # what the readers find in a data folder
    python data.py bench                        # sample pipeline throughput, one core

Prompts are the release's (its data_pipe instruction texts with add_selfies=True), with "<mol>" written where the
release writes "<image>" (so "<mol>\\n" + instruction: the "\\n" token follows the atoms, as there); the
tokenizer turns "<mol>" into MOL_TOKEN_ID and the model splices in one token per heavy atom of the task's
graph-source molecule. load_tasks(graph_only=True): the release's stage-1 prompt (molcap pairs, graph and
question only); mol_format="smiles": SMILES instead of SELFIES in prompts and molecule answers. Data
folders, as users download them:
  - the published dataset (CodeMagic/Omni-Mol-Dataset on the HF hub, gated; never downloaded here):
    PATH/train/<name>.json and PATH/test/<name>.json, names from `Task.released`;
  - the release code's layout: PATH/train/ (first file whose name contains `Task.code`, sorted
    order) and PATH/evaluate/<Task.code_eval> (3D-MoIT tasks share one file filtered by metadata.task);
  - a flat folder of either names; ChEBI-20 text files (CID<TAB>SMILES<TAB>description) for molcap.
Every record is filtered by metadata.split, as the release does.
"""
import argparse
import collections
import hashlib
import json
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import torch

import arith  # the generated arithmetic word problems, a general-reasoning mix (--tasks ...,arith:0.2)
import demo_data
import model
import molecule
import reactions  # ORD (.pb.gz) reaction files as a data source
import schedules
from chem import _hash, heavy_atoms, selfies_text_to_smiles
from readers import read_records, task_files
from reasoning import has_rationale, with_rationale
from tasks import MOL_FORMATS, TASKS, Task, build_prompt, graph_source, parse_tasks, redraw_question, subsample
from tokenizer import MOL_PLACEHOLDER as MOL  # "<mol>": replaces the release's "<image>\n"

MAX_LEN = 2048           # the release's model_max_length (which it never applied; we do)
REPO = os.path.dirname(os.path.abspath(__file__))
SHOW_OFFENDERS = 3       # first few bad records printed per task


# ----------------------------------------------------------------------------- samples

@dataclass(slots=True)
class Sample:
    task: str            # task key (TASKS)
    eval_set: str        # name it is scored under (yield -> yield_BH / yield_SM at test)
    id: str              # file:record-number
    prompt: str          # user turn, MOL where the graph goes
    answer: str          # reference answer (str(output))
    smiles: str | None   # graph-source SMILES, None for text-only tasks
    n_atoms: int = 0     # atom tokens the placeholder expands to
    length: int = 0      # tokens after expansion (set when a tokenizer is given)


class Report:
    """Skipped records per task and reason, the first few offenders kept to print once."""

    def __init__(self):
        self.counts = collections.defaultdict(collections.Counter)
        self.kept = collections.Counter()
        self.examples = collections.defaultdict(list)

    def skip(self, task, reason, where, what=""):
        self.counts[task][reason] += 1
        if len(self.examples[task]) < SHOW_OFFENDERS:
            self.examples[task].append(f"{where}: {reason}" + (f" ({what[:80]!r})" if what else ""))

    @property
    def skipped(self):
        return {t: sum(c.values()) for t, c in self.counts.items()}

    def summary(self) -> str:
        lines = []
        for t in sorted(set(self.kept) | set(self.counts)):
            c = self.counts.get(t, {})
            extra = ", ".join(f"{k}: {v}" for k, v in sorted(c.items()))
            lines.append(f"  {t:<17} {self.kept[t]:>8} kept" + (f", {sum(c.values())} skipped ({extra})" if c else ""))
            lines += [f"      e.g. {e}" for e in self.examples.get(t, [])]
        return "\n".join(lines)


def make_sample(task: Task, rec: dict, eval_set: str, sid: str, seed: int = 0, graph=None, *,
                mol_format: str = "selfies", graph_only: bool = False, reasoning: bool = False,
                text_only: bool = False) -> Sample:
    """One record -> Sample (ValueError with the reason if the record is unusable). `graph`: a cached
    (smiles, n_atoms) or error string from graph_info, to skip the SELFIES decode and rdkit parse.
    The answer is .strip()ped (the release keeps raw['output']: only edge whitespace differs).
    mol_format / graph_only / text_only: see tasks.build_prompt; with "smiles" a molecule answer is SMILES too.
    text_only keeps .smiles (baselines' fingerprints) but the prompt has no MOL, so featurize gives no graph.
    reasoning: the answer with its rationale before it where the task and record have one (reasoning.py)."""
    if mol_format not in MOL_FORMATS:
        raise ValueError(f"mol_format must be one of {MOL_FORMATS}, got {mol_format!r}")
    for k in ("input", "output"):
        if k not in rec:
            raise ValueError(f"missing field '{k}'")
    if rec["input"] is None:
        raise ValueError("molecule not encodable as SELFIES")
    if not isinstance(rec["input"], str) or not rec["input"].strip():
        raise ValueError("empty input")
    out = rec["output"]
    answer = "" if out is None else str(out).strip() if not isinstance(out, str) else out.strip()
    if not answer:
        raise ValueError("empty answer")
    graph = graph_info(task, rec) if graph is None else graph
    if isinstance(graph, str):
        raise ValueError(graph)
    smiles, n_atoms = graph
    if mol_format == "smiles" and task.answer == "molecule":
        answer = selfies_text_to_smiles(answer)
    if reasoning:
        answer = with_rationale(task.key, rec, answer)
    rng = random.Random(_hash(f"{seed}/{sid}"))
    prompt = build_prompt(task, rec, rng, graph_only=graph_only, mol_format=mol_format, text_only=text_only)
    return Sample(task.key, eval_set, sid, prompt, answer, smiles, n_atoms)


def graph_info(task: Task, rec: dict):
    """(graph-source SMILES, heavy atoms), or the reason it is unusable (str): the costly part of loading."""
    try:
        smiles = graph_source(task, rec)
        return smiles, (heavy_atoms(smiles) if smiles is not None else 0)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return str(e) if isinstance(e, ValueError) else f"malformed record ({type(e).__name__}: {e})"


CACHE_MIN_RECORDS = 5000  # files at least this big keep their graph_info in a cache (second load: no SELFIES work)


def _graph_cache(task: Task, path: str, recs: list, keep: list[int]) -> dict:
    """{record index: graph_info} for the kept records, from $OMNIMOL_CACHE (default .cache/data in the repo)
    when the file has not changed since; computed and written (atomically) otherwise."""
    if len(recs) < CACHE_MIN_RECORDS:
        return {}
    st = os.stat(path)
    key = hashlib.sha1(f"v1|{task.key}|{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
    cdir = os.environ.get("OMNIMOL_CACHE") or os.path.join(REPO, ".cache", "data")
    cfile = os.path.join(cdir, key + ".json")
    if os.path.isfile(cfile):
        try:
            with open(cfile) as f:
                got = {int(k): (v if isinstance(v, str) else tuple(v)) for k, v in json.load(f).items()}
            if all(i in got for i in keep):
                return got
        except (OSError, ValueError):
            pass  # unreadable cache: recompute
    got = {i: graph_info(task, recs[i]) for i in keep}
    try:
        os.makedirs(cdir, exist_ok=True)
        tmp = f"{cfile}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(got, f)
        os.replace(tmp, cfile)
    except OSError:
        pass  # a read-only place: no cache, same result
    return got


def load_tasks(spec="all", split="train", data="demo", seed=42, tokenizer=None, max_len=MAX_LEN,
               verbose=True, report: Report | None = None, *, mol_format="selfies",
               graph_only=False, reasoning=False, text_only=False) -> list[Sample]:
    """Read, filter (metadata.split, 3D-MoIT metadata.task), validate and subsample the selected tasks.
    With a tokenizer, each sample's length (placeholder counted as its N atoms) is computed and samples
    longer than max_len are dropped and counted, never cut. Bad records are skipped and counted; the
    per-task summary and the first few offenders print once (verbose). graph_only (stage 1), mol_format and
    text_only (train.py --graph none): see make_sample; reasoning (train.py --reasoning): answers with their
    rationale (reasoning.py) for the tasks and records that have one, the others unchanged; how many got one
    prints (verbose)."""
    ratios = parse_tasks(spec) if isinstance(spec, str) or spec is None else dict(spec)
    root, left_out = resolve_data(data)
    rep = report if report is not None else Report()
    samples = []
    for key, ratio in ratios.items():
        if key == arith.KEY:  # generated after the others: its size follows theirs
            continue
        task = TASKS[key]
        if key in left_out:
            if verbose:
                print(f"[data] {key}: not in this data ({left_out[key]})")
            continue
        files = task_files(root, task, split)
        if not files:
            raise FileNotFoundError(f"task {key}: no {split} file in {root} (looked for "
                                    f"{sorted(task.released['train' if split == 'train' else 'test'].values())} "
                                    f"and the release code's '{task.code}' / {sorted(task.code_eval.values())})")
        task_samples = []
        for path, es, split_folder in files:
            stem = os.path.basename(path)
            ord_skipped = collections.Counter()  # reactions an ORD file could not give (reactions.py)
            recs, keep = read_records(path, key, ord_skipped), []
            for reason, n in ord_skipped.items():
                rep.counts[key][reason] += n
            for i, rec in enumerate(recs):
                meta = rec.get("metadata") if isinstance(rec.get("metadata"), dict) else {}
                rsplit = meta.get("split")
                if rsplit is None and not split_folder:
                    rep.skip(key, "no metadata.split", f"{stem}:{i + 1}")
                    continue
                if rsplit is not None and rsplit != split:
                    continue
                if task.moit and "3d_moit" in stem and meta.get("task") != task.moit:
                    continue
                keep.append(i)
            cache = _graph_cache(task, path, recs, keep)
            for i in keep:
                rec, sid = recs[i], f"{stem}:{i + 1}"
                try:
                    task_samples.append(make_sample(task, rec, es, sid, seed, cache.get(i), mol_format=mol_format,
                                                    graph_only=graph_only, reasoning=reasoning,
                                                    text_only=text_only))
                except ValueError as e:
                    rep.skip(key, str(e), sid, str(rec.get("input", "")))
        keep = subsample(len(task_samples), ratio, seed, key)
        samples += _fitting(key, [task_samples[i] for i in keep], tokenizer, max_len, split, rep)
    if arith.KEY in ratios:  # generated word problems (arith.py), text only
        made = arith.problems(arith.count_for(ratios[arith.KEY], len(samples), split), split, seed, reasoning)
        samples += _fitting(arith.KEY, [Sample(arith.KEY, arith.KEY, i, p, a, None) for i, p, a in made],
                            tokenizer, max_len, split, rep)
    if verbose:
        print(f"[data] {split} samples from {root}:\n{rep.summary()}")
    if verbose and reasoning:
        n = collections.Counter(s.task for s in samples if has_rationale(s.answer))
        print("[data] answers with a rationale: " + ", ".join(f"{t} {n[t]}/{rep.kept[t]}" for t in ratios))
    return samples


def _fitting(key, samples, tokenizer, max_len, split, rep) -> list[Sample]:
    """With a tokenizer, each sample's length set and those over max_len dropped and counted; the kept counted."""
    if tokenizer is not None:
        kept = []
        for s in samples:
            s.length = sample_length(s, tokenizer, with_answer=(split == "train"))
            if s.length > max_len:
                rep.skip(key, f"longer than {max_len} tokens", s.id, f"{s.length} tokens")
            else:
                kept.append(s)
        samples = kept
    rep.kept[key] += len(samples)
    return samples


def resolve_data(data) -> tuple[str, dict]:
    """"demo" (built on first use), a folder, or ORD reaction files (a .pb.gz file or a folder of them)
    -> (folder or file, {task left out: why})."""
    if data in (None, "demo"):
        root = os.environ.get("OMNIMOL_DATA") or os.path.join(REPO, "data", "demo")
        demo_data.ensure_demo(root)
    else:
        root = data
        if not os.path.isdir(root) and not reactions.ord_files(root):
            raise FileNotFoundError(f"data folder {root} does not exist (nor is it an ORD .pb.gz file)")
    manifest = os.path.join(root, "manifest.json")
    left_out = {}
    if os.path.isfile(manifest):
        with open(manifest) as f:
            left_out = json.load(f).get("left_out", {})
    left_out.update(reactions.left_out(root))  # ORD files feed the reaction tasks only
    return root, left_out


# ----------------------------------------------------------------------------- encoding and batches

def encode(sample: Sample, tokenizer, with_answer: bool = True):
    """-> (input_ids, labels) via tokenizer.encode_chat: loss on the answer and its end-of-turn only."""
    return tokenizer.encode_chat(sample.prompt, sample.answer if with_answer else None)


BUDGET_MARGIN = 16  # new tokens allowed beyond the task's longest training answer (end token included)


def answer_budgets(tok, train_samples, cap, margin=BUDGET_MARGIN, answer=lambda s: s.answer) -> dict:
    """{task key: max new tokens} = the task's longest training answer(s) in tokens (end token included) +
    margin, at most cap (eval.py, rft.py). A task without training answers gets the cap."""
    longest = {}
    for s in train_samples:
        longest[s.task] = max(longest.get(s.task, 0), len(tok.encode(answer(s))) + 1)
    return {t: min(cap, n + margin) for t, n in longest.items()}


def sample_length(sample: Sample, tokenizer, with_answer: bool = True) -> int:
    """Tokens the model sees: the placeholder counts as its N atom tokens."""
    ids, _ = encode(sample, tokenizer, with_answer)
    n_ph = sample.prompt.count(MOL)
    return len(ids) - n_ph + n_ph * sample.n_atoms


def featurize(sample: Sample):
    """The graph for the sample's graph-source molecule (molecule.smiles_to_graph), None if text-only: a task
    without a graph-source molecule, or a prompt without MOL (make_sample text_only)."""
    if sample.smiles is None or MOL not in sample.prompt:
        return None
    return molecule.smiles_to_graph(sample.smiles)


def collate(samples: list[Sample], tokenizer, with_answer=True, graphs=True) -> dict:
    """Unpadded per-sample lists (molecule.embed_inputs pads after splicing the atoms in)."""
    ids, labels, gs, keep = [], [], [], []
    for s in samples:
        g = featurize(s) if graphs else None
        if graphs and g is None and s.smiles is not None and MOL in s.prompt:
            continue  # validated at load time; counted by molecule.FEATURE_STATS if it ever happens
        i, lab = encode(s, tokenizer, with_answer)
        ids.append(i), labels.append(lab), gs.append(g), keep.append(s)
    return {"input_ids": ids, "labels": labels, "graphs": gs, "tasks": [s.task for s in keep],
            "eval_sets": [s.eval_set for s in keep], "ids": [s.id for s in keep], "samples": keep}


def epoch_prompt(sample: Sample, epoch: int, seed: int) -> Sample:
    """The sample as epoch `epoch` sees it: molcap's question drawn again each epoch, as the release draws
    one per __getitem__ (epoch 0 keeps the load-time draw). A function of (seed, id, epoch): resumes exactly."""
    if epoch == 0 or sample.task != "molcap":
        return sample
    rng = random.Random(_hash(f"{seed}/{sample.id}/{epoch}"))
    return replace(sample, prompt=redraw_question(sample.prompt, rng))


ORDERS = ("uniform", "length")
SCHEDULES = ("joint", "sequential")


class Loader:
    """Seeded, DDP-sharded batches over a list of samples, endless over epochs (passes cut by schedules.cut).
    schedule "joint" (default): each epoch one seeded permutation of all samples (all tasks together). order
    "uniform" (default) keeps it: the release's order (HF Trainer's RandomSampler over a ConcatDataset), batches
    mix tasks; "length" sorts chunks of `group` global batches by length: less padding, but nearly single-task
    batches (other gradient noise and per-batch router / balance-loss statistics). schedule "sequential": the
    tasks one after another in task_order (default: load_tasks' --tasks order), single-task phases
    (schedules.Sequential; .seq.set_total(the run's batches) sizes them); an epoch is then a cycle through the
    phases and a sample's epoch (epoch_prompt) its task's pass. len() = batches per epoch: one pass over all
    samples (joint) or over each task (sequential). state_dict() = {epoch, step, seed, order, schedule, ...}: a
    Loader given it yields exactly the batches the uninterrupted one would have yielded next."""

    def __init__(self, samples, tokenizer, batch_size, *, rank=0, world_size=1, seed=42,
                 order="uniform", group=64, drop_last=True, graphs=True, schedule="joint", task_order=None):
        if order not in ORDERS or schedule not in SCHEDULES:
            raise ValueError(f"order must be one of {ORDERS} and schedule of {SCHEDULES}, got {order!r}, {schedule!r}")
        if len(samples) < batch_size * world_size and drop_last:
            raise ValueError(f"{len(samples)} samples cannot fill one global batch of "
                             f"{batch_size} x {world_size} ranks")
        self.samples, self.tok, self.bs = samples, tokenizer, batch_size
        self.rank, self.world, self.seed = rank, world_size, seed
        self.order, self.group, self.drop_last, self.graphs = order, group, drop_last, graphs
        self.lengths = np.array([s.length or (len(s.prompt) + len(s.answer)) for s in samples])
        self.epoch, self.step = 0, 0
        self._plan_cache = (None, None)
        self.seq = None if schedule == "joint" else schedules.Sequential(
            [s.task for s in samples], task_order, batch_size * world_size, drop_last)

    def _cut(self, key, pool, rng_seed):  # one pass, the last one cached (positions() goes forward)
        if self._plan_cache[0] != key:
            self._plan_cache = (key, schedules.cut(pool, np.random.default_rng(rng_seed), self.bs, self.rank,
                                                   self.world, order=self.order, group=self.group,
                                                   lengths=self.lengths, drop_last=self.drop_last))
        return self._plan_cache[1]

    def plan(self, epoch: int) -> list[list[int]]:
        """Joint: this rank's batches (sample indices) for an epoch."""
        return self._cut(epoch, np.arange(len(self.samples)), [self.seed, epoch])

    def task_pass(self, phase: int, k: int) -> list[list[int]]:
        """Sequential: this rank's batches of pass k over the task of `phase` (never the joint [seed, epoch] draw)."""
        return self._cut((phase, k), self.seq.pools[phase], [self.seed, k, phase + 1])

    def __len__(self):  # steps per epoch
        return len(self.plan(self.epoch)) if self.seq is None else sum(self.seq.pass_batches)

    def __iter__(self):
        for idx, epoch, _ in self.positions():
            yield self.collate(idx, epoch)

    def positions(self):
        """Endless (sample indices of the next batch, its epoch, state_dict() after it), advancing the
        position (data.Prefetcher runs ahead on it; the epoch travels with the batch for epoch_prompt)."""
        while True:
            n = len(self.plan(self.epoch)) if self.seq is None else self.seq.total
            while self.step < n:
                if self.seq is None:
                    idx, epoch = self.plan(self.epoch)[self.step], self.epoch
                else:  # the batch's samples are in pass k of their task
                    phase, k, j = self.seq.locate(self.epoch, self.step)
                    idx, epoch = self.task_pass(phase, k)[j], k
                self.step += 1  # advanced before yielding: a checkpoint taken now resumes at the next batch
                yield idx, epoch, self.state_dict()
            self.epoch, self.step = self.epoch + 1, 0

    def collate(self, idx: list[int], epoch: int) -> dict:
        return collate([epoch_prompt(self.samples[i], epoch, self.seed) for i in idx], self.tok, graphs=self.graphs)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "seed": self.seed, "batch_size": self.bs,
                "world_size": self.world, "num_samples": len(self.samples), "order": self.order,
                "schedule": "joint" if self.seq is None else "sequential", **(self.seq.config() if self.seq else {})}

    def load_state_dict(self, sd: dict):
        sd = {"schedule": "joint", **sd}  # positions saved before schedules existed are joint
        for k, mine in list(self.state_dict().items())[2:]:  # all but epoch and step
            if sd.get(k, mine) != mine:
                raise ValueError(f"data position was saved with {k}={sd[k]} but this run has {k}={mine}; "
                                 f"an exact resume needs the same data, batch size, world size, seed, order and "
                                 f"schedule (sequential: also the same tasks and steps)")
        self.epoch, self.step = int(sd["epoch"]), int(sd["step"])


class Prefetcher:
    """A Loader's batches with tokenize + featurize done ahead in a background thread (train.py
    --prefetch): `depth` batches are being collated while the current step runs, so the accelerator
    does not wait on the host. The batches and their order are the Loader's exactly (the same
    positions() stream); state_dict() is the position after the last batch handed out, not after
    the last one prefetched, so a checkpoint resumes exactly. A thread, not processes: collate is
    milliseconds of tokenizers (Rust) and RDKit calls per batch, while the training thread mostly
    waits on the device with the GIL released; no pickling of samples or graphs is needed."""

    def __init__(self, loader: Loader, depth: int = 2):
        assert depth >= 1, f"depth {depth} < 1"
        self.loader, self.depth = loader, depth
        self._state = loader.state_dict()

    def __len__(self):
        return len(self.loader)

    def state_dict(self) -> dict:
        return dict(self._state)

    def load_state_dict(self, sd: dict):
        self.loader.load_state_dict(sd)
        self._state = self.loader.state_dict()

    def __iter__(self):
        pool = ThreadPoolExecutor(1, thread_name_prefix="prefetch")
        positions, pending = self.loader.positions(), collections.deque()

        def submit():
            idx, epoch, state = next(positions)
            pending.append((pool.submit(self.loader.collate, idx, epoch), state))
        try:
            for _ in range(self.depth):
                submit()
            while True:
                fut, state = pending.popleft()
                submit()
                batch = fut.result()  # re-raises a collate error here, in the training thread
                self._state = state
                yield batch
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


def shard(items: list, rank: int, world_size: int) -> list:
    """Every world_size-th item from rank (eval: contiguous order is restored by the ids)."""
    return items[rank::world_size]


# ----------------------------------------------------------------------------- CLI

def _bench(args):
    """Samples/s of the full sample pipeline on one core: parse JSON + SELFIES decode + validate,
    tokenize (chat template, answer mask), featurize (molecule.smiles_to_graph). Reports rates by CPU
    time of this process (what one core does, robust to other load on the machine) and by wall time."""
    torch.set_num_threads(1)
    _, tok = model.load_model(args.model)
    root, _ = resolve_data(args.data)
    clocks = (time.process_time, time.perf_counter)
    t0 = [c() for c in clocks]
    samples = load_tasks(args.tasks, "train", args.data, verbose=False)
    t1 = [c() for c in clocks]
    for s in samples:
        encode(s, tok)
    t2 = [c() for c in clocks]
    for s in samples:
        featurize(s)
    t3 = [c() for c in clocks]
    n = len(samples)
    print(f"{n} samples ({args.tasks}, {root}), tokenizer of --model {args.model}, 1 thread")
    print(f"{'stage':<28} {'samples/s (CPU time)':>22} {'samples/s (wall)':>18}")
    for name, a, b in (("parse + SELFIES + validate", t0, t1), ("tokenize (chat + mask)", t1, t2),
                       ("featurize (graph)", t2, t3), ("full pipeline", t0, t3)):
        print(f"{name:<28} {n / (b[0] - a[0]):>22,.0f} {n / (b[1] - a[1]):>18,.0f}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build-demo", help="write the embedded demo data set (packages only, no network)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    b.add_argument("--out", default=os.environ.get("OMNIMOL_DATA") or os.path.join(REPO, "data", "demo"),
                   help="the folder to write ($OMNIMOL_DATA if set)")
    b.add_argument("--seed", type=int, default=0, help="which records are drawn")
    b.add_argument("--table", action="store_true", help="also print the README table of the demo tasks")
    s = sub.add_parser("stats", help="what the readers find: kept and skipped records per task",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("--tasks", default="all", help="'all' or a comma list of task keys")
    s.add_argument("--data", default="demo", help="demo or a data folder")
    s.add_argument("--split", default="train", choices=["train", "test"], help="which split to read")
    bb = sub.add_parser("bench", help="sample pipeline throughput on one core",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    bb.add_argument("--tasks", default="all", help="'all' or a comma list of task keys")
    bb.add_argument("--data", default="demo", help="demo or a data folder")
    bb.add_argument("--model", default="default", help="whose tokenizer: default|tiny|PATH")
    args = p.parse_args(argv)
    if args.cmd == "build-demo":
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise SystemExit(f"data.py build-demo: --out {args.out} is a file, not a folder")
        if os.path.isdir(args.out):
            print(f"{args.out} exists; remove it to rebuild")
            with open(os.path.join(args.out, "manifest.json")) as f:
                m = json.load(f)
        else:
            m = demo_data.build_demo(args.out, args.seed)
        if args.table:
            print(demo_data.demo_table(m))
    elif args.cmd == "stats":
        load_tasks(args.tasks, args.split, args.data)
    else:
        _bench(args)


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as e:  # bad paths, tasks, data files: the message, not a traceback
        raise SystemExit(f"data.py: error: {e}") from None
