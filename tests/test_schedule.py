"""--schedule sequential (data.Loader with schedules.Sequential): the tasks one after another, visible in the data
positions (every batch of a phase is that task's only, the phases in --tasks order, their lengths the
hand-computed shares), DDP-sharded, exactly resumable (through meta.json and the prefetch thread), and
train.py end to end; the joint schedule's plan and saved positions stay as they were."""
import json

import numpy as np
import pytest

import checkpoint
import data
import schedules
import train

ETOH = "[C][C][O]"


class _Tok:  # collate needs encode_chat only; the ids encode the sample so batches can be compared
    def encode_chat(self, prompt, answer=None):
        return [len(prompt), len(answer or "")], [-100, 1]


def _samples(sizes):
    """sizes {task: n} -> samples in that task order, ids task:i."""
    return [data.Sample(t, t, f"{t}:{i}", "<mol>\nq " + ETOH * (i % 5), "a" * (1 + i % 3), "CCO", 3)
            for t, n in sizes.items() for i in range(n)]


def _loader(ss, **kw):
    kw = {"seed": 3, "graphs": False, "schedule": "sequential", **kw}
    return data.Loader(ss, _Tok(), kw.pop("bs", 2), **kw)


def _take(loader, n):
    pos = loader.positions()
    return [next(pos)[:2] for _ in range(n)]


def test_shares_are_the_hand_computed_largest_remainders():
    seq = schedules.Sequential(["a"] * 10 + ["b"] * 4 + ["c"] * 6, None, global_batch=2)
    assert seq.pass_batches == [5, 2, 3] and seq.phases() == [("a", 0, 5), ("b", 5, 7), ("c", 7, 10)]
    seq.set_total(20)  # 20 x (5, 2, 3) / 10 = 10, 4, 6 exactly
    assert seq.phase_len == [10, 4, 6]
    seq.set_total(7)   # 3.5, 1.4, 2.1: floors 3, 1, 2; the one step left goes to the largest remainder (a)
    assert seq.phase_len == [4, 1, 2]
    seq.set_total(14, align=2)  # 7 steps of 2 batches: the same shares in steps, phases never split a step
    assert seq.phase_len == [8, 2, 4]
    with pytest.raises(ValueError, match="task b a step"):  # 2 steps cannot reach 3 tasks
        seq.set_total(2)
    with pytest.raises(ValueError, match="multiple"):
        seq.set_total(7, align=2)
    with pytest.raises(ValueError, match="task c: 1 samples"):
        schedules.Sequential(["a"] * 4 + ["c"], None, global_batch=2)
    with pytest.raises(ValueError, match="not in the task order"):
        schedules.Sequential(["a", "b"], ["a"], global_batch=1)


def test_phases_are_single_task_in_order_and_every_pass_a_permutation():
    ss = _samples({"molcap": 12, "forward": 20, "weight": 8})
    world, bs = 2, 2
    loaders = [_loader(ss, rank=r, world_size=world, bs=bs, task_order=["forward", "molcap", "weight"])
               for r in range(world)]
    for ld in loaders:
        ld.seq.set_total(2 * 10)  # two passes: 5 + 3 + 2 global batches per pass
    assert loaders[0].seq.phases() == [("forward", 0, 10), ("molcap", 10, 16), ("weight", 16, 20)]
    assert len(loaders[0]) == 10
    streams = [_take(ld, 20) for ld in loaders]
    for j in range(20):
        want = "forward" if j < 10 else "molcap" if j < 16 else "weight"
        glob = streams[0][j][0] + streams[1][j][0]  # the global batch: the ranks' shares are disjoint
        assert len(set(glob)) == bs * world and {ss[i].task for i in glob} == {want}
        assert streams[0][j][1] == streams[1][j][1]  # the same pass on every rank
    for lo, hi in ((0, 5), (5, 10), (10, 13), (13, 16), (16, 18), (18, 20)):  # each pass: every sample once
        seen = [i for s in streams for idx, _ in s[lo:hi] for i in idx]
        task = ss[seen[0]].task
        assert sorted(seen) == [i for i, s in enumerate(ss) if s.task == task]
    assert [e for _, e in streams[0][:10]] == [0] * 5 + [1] * 5  # the batches' epoch is the task's pass
    assert streams[0][:5] != streams[0][5:10]  # a new permutation each pass
    nxt = _take(loaders[0], 5)  # the cycle starts again, each task's passes running on (forward: pass 2)
    assert {ss[i].task for idx, _ in nxt for i in idx} == {"forward"} and [e for _, e in nxt] == [2] * 5


def test_default_order_is_the_samples_and_one_pass_each():
    ss = _samples({"weight": 6, "forward": 4})
    got = _take(_loader(ss), 5)
    assert [ss[idx[0]].task for idx, _ in got] == ["weight"] * 3 + ["forward"] * 2


@pytest.mark.parametrize("prefetch", [False, True])
def test_resume_mid_run_yields_the_same_batches(prefetch):
    ss = _samples({"forward": 10, "molcap": 6, "weight": 8})
    tok = _Tok()

    def make():
        ld = data.Loader(ss, tok, 2, rank=1, world_size=2, seed=5, schedule="sequential", graphs=False,
                         task_order=["molcap", "weight", "forward"])
        ld.seq.set_total(18, align=2)
        return data.Prefetcher(ld, depth=2) if prefetch else ld

    it = iter(make())
    ref = [(b["ids"], b["input_ids"]) for b in (next(it) for _ in range(40))]  # two cycles and a bit
    for cut in (0, 3, 7, 17, 18, 25):  # inside phases, at a phase boundary, at the cycle's end
        a = make()
        ia = iter(a)
        for _ in range(cut):
            next(ia)
        state = json.loads(json.dumps(a.state_dict()))  # through meta.json
        assert state["schedule"] == "sequential" and state["tasks"] == ["molcap", "weight", "forward"]
        b = make()
        b.load_state_dict(state)
        ib = iter(b)
        assert [(x["ids"], x["input_ids"]) for x in (next(ib) for _ in range(40 - cut))] == ref[cut:]
    other = data.Loader(ss, tok, 2, rank=1, world_size=2, seed=5, schedule="sequential", graphs=False,
                        task_order=["molcap", "weight", "forward"])
    with pytest.raises(ValueError, match="total_batches"):  # a run of another length shares its steps otherwise
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="schedule"):
        data.Loader(ss, tok, 2, rank=1, world_size=2, seed=5, graphs=False).load_state_dict(state)


def test_joint_is_unchanged():
    ss = _samples({"forward": 30, "molcap": 21})
    ld = data.Loader(ss, _Tok(), 4, rank=0, world_size=2, seed=7, graphs=False)
    perm = np.random.default_rng([7, 1]).permutation(len(ss))  # the release's one permutation, cut in 8s
    assert ld.plan(1) == [b[0::2].tolist() for b in perm[:48].reshape(-1, 8)]
    assert ld.seq is None and len(ld) == 6 and ld.state_dict()["schedule"] == "joint"
    old = {k: v for k, v in ld.state_dict().items() if k != "schedule"}  # a position saved before schedules
    data.Loader(ss, _Tok(), 4, rank=0, world_size=2, seed=7, graphs=False).load_state_dict({**old, "step": 2})
    with pytest.raises(ValueError, match="schedule"):
        data.Loader(ss, _Tok(), 4, schedule="by-task")


def test_train_py_sequential_order_resume_and_meta(tiny_data, tiny_tasks, train_args, read_log, log_keys, tmp_path):
    args = ("--batch-size", 2, "--max-steps", 6, "--schedule", "sequential", "--keep-last", 5, "--prefetch", 0)
    full = tmp_path / "full"
    train.main(train_args(tiny_data, full, *args))
    log = read_log(full)
    order = tiny_tasks.split(",")  # forward, molcap, iupac: 16 samples each, so 2 steps each
    assert [list(r["task_loss"]) for r in log] == [[t] for t in order for _ in range(2)]
    assert [int(p.rsplit("_", 1)[1]) for p in checkpoint.steps(full)] == [2, 4, 6]  # a checkpoint per phase end
    meta = json.load(open(checkpoint.steps(full)[-1] + "/meta.json"))
    assert meta["args"]["schedule"] == "sequential"
    assert meta["data_position"]["schedule"] == "sequential" and meta["data_position"]["tasks"] == order
    part = tmp_path / "part"
    train.main(train_args(tiny_data, part, *args, "--stop-after", 3))
    train.main(train_args(tiny_data, part, *args, "--resume"))
    assert [{k: r[k] for k in (*log_keys, "task_loss")} for r in read_log(part)] == \
           [{k: r[k] for k in (*log_keys, "task_loss")} for r in log]
    with pytest.raises(ValueError, match="a step out of 2"):
        train.main(train_args(tiny_data, tmp_path / "short", "--max-steps", 2, "--schedule", "sequential"))
    assert "load_moe_lora_model_sequential" in train.get_parser().format_help()
