"""checkpoint.py, the run folder, on its own (train.py and rl.py use it end to end: tests/test_train.py,
tests/test_rl.py): which step folders count as checkpoints and which one a path resolves to, save's rotation
and clean-up of crashed saves, --resume's tensors and optimizer state, the log a resumed run keeps, and the
RNG state through JSON."""
import json
import os
import random

import numpy as np
import pytest
import torch

import checkpoint
import model as M
import moge
import molecule


def _step(out, n):
    d = out / "checkpoints" / f"step_{n:06d}"
    os.makedirs(d)
    (d / "meta.json").write_text(json.dumps({"step": n}))
    return str(d)


def test_steps_and_resolve(tmp_path):
    out = tmp_path / "run"
    assert checkpoint.steps(str(out)) == []
    a, b = _step(out, 2), _step(out, 10)
    os.makedirs(out / "checkpoints" / ".tmp_step_000012_99")        # a crashed save: no checkpoint
    os.makedirs(out / "checkpoints" / "step_000011")                 # no meta.json: not a complete one
    (out / "checkpoints" / "notes.txt").write_text("")
    assert checkpoint.steps(str(out)) == [a, b]
    assert checkpoint.resolve(a) == a                                # a step folder, as given
    assert checkpoint.read_meta(checkpoint.resolve(b)) == {"step": 10}
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoint.resolve(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="never falls back"):
        checkpoint.resolve(str(tmp_path))                           # an OUT folder without checkpoints
    (out / "checkpoints" / "step_000002" / "meta.json").write_text("{not json")
    with pytest.raises(ValueError, match="meta.json is not valid JSON"):
        checkpoint.read_meta(a)


def _tiny(seed):
    torch.manual_seed(seed)
    m, _ = M.load_model("tiny")
    molecule.attach_molecule(m)
    moge.attach_adapters(m, moge.MoGEConfig(r=4))
    params = list(moge.trainable_parameters(m).values())
    opt = torch.optim.AdamW(params, lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    return m, opt, sched


def test_save_rotates_and_load_training_restores(tmp_path):
    out = str(tmp_path / "run")
    m, opt, sched = _tiny(0)
    for step in (1, 2, 3):
        for p in moge.trainable_parameters(m).values():
            p.grad = torch.ones_like(p)
        opt.step()
        sched.step()
        if step == 3:  # a crashed save of another process, left behind
            os.makedirs(os.path.join(out, "checkpoints", ".tmp_step_000009_1"))
        path = checkpoint.save(out, step, m, opt, sched, {"step": step, "args": {}}, keep_last=2)
        assert path == os.path.join(out, "checkpoints", f"step_{step:06d}")
    assert [os.path.basename(p) for p in checkpoint.steps(out)] == ["step_000002", "step_000003"]
    assert sorted(os.listdir(os.path.join(out, "checkpoints"))) == ["step_000002", "step_000003"]
    fresh, opt2, sched2 = _tiny(1)
    meta = checkpoint.load_training(checkpoint.steps(out)[-1], fresh, opt2, sched2)
    assert meta == {"step": 3, "args": {}} and sched2.last_epoch == sched.last_epoch == 3
    want, got = moge.adapter_state_dict(m), moge.adapter_state_dict(fresh)
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k]["exp_avg"], s2[k]["exp_avg"]) for k in s1)


def test_start_log_forgets_the_steps_after_the_checkpoint(tmp_path):
    path = checkpoint.start_log(str(tmp_path))
    assert path == os.path.join(str(tmp_path), "log.jsonl") and not os.path.exists(path)
    with open(path, "w") as f:
        f.writelines(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in (1, 2, 3, 4))
    assert checkpoint.start_log(str(tmp_path), resume_step=2) == path
    assert [json.loads(line)["step"] for line in open(path)] == [1, 2]
    checkpoint.start_log(str(tmp_path))                               # a fresh run: an empty log
    assert not os.path.exists(path)


def test_rng_state_survives_json():
    cpu = torch.device("cpu")
    st = json.loads(json.dumps(checkpoint.rng_state(cpu)))            # it goes through meta.json
    want = (torch.rand(3), random.random(), np.random.rand())
    checkpoint.set_rng_state(st, cpu)
    got = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(want[0], got[0]) and want[1:] == got[1:]
    assert checkpoint.gather(st, 1) == [st]
