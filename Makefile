# PeakSim: the two commands of the README quickstart are `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: install install-dev demo test test-slow lint bench compare-hardware clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	@touch $@

$(DEV_STAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install -q -e '.[dev,calibration]'
	@touch $@

## install: create .venv and install PeakSim (idempotent)
install: $(STAMP)

install-dev: $(DEV_STAMP)

## demo: run the shipped Singles' Day scenario and print the summary
demo: install
	$(BIN)/python -m simulator.demo

## compare-hardware: Singles' Day midnight on H100 nodes bought for the peak, rented as spot
## or borrowed from training: cost, SLA and GPU-hours with CIs, and the report (a few minutes)
compare-hardware: install
	$(BIN)/peaksim compare scenarios/singles_day_gpu.toml --out results/gpu-options
	$(BIN)/peaksim report results/gpu-options

## test: run the default test suite (slow tests excluded)
test: install-dev
	$(BIN)/ruff check simulator analysis tests benchmarks examples
	$(BIN)/python -m pytest

## test-slow: the long statistical checks
test-slow: install-dev
	$(BIN)/python -m pytest -m slow

lint: install-dev
	$(BIN)/ruff check simulator analysis tests benchmarks

bench: install-dev
	$(BIN)/python benchmarks/bench_mmc.py

clean:
	rm -rf $(VENV) results .pytest_cache .hypothesis
