# One entry point for people and CI. Every target installs what it needs first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYVER  := $(shell $(PYTHON) -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
CONSTRAINTS := requirements/constraints-$(PYVER).txt
STAMP  := $(VENV)/.installed-$(PYVER)
DEMO   ?= var/demo
# More options for `yieldops demo`, e.g. make demo DEMO_ARGS=--keep-running
DEMO_ARGS ?=

.PHONY: install demo test lint check format bench constraints clean

install: $(STAMP)

# The environment: pinned by the committed constraints file (see README, "Pinned dependencies").
$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==0.13.8"
	# Bytecode now, as pip would: where PYTHONDONTWRITEBYTECODE is set (as on CI machines), every
	# new interpreter would otherwise compile Airflow, pandas and GX from source again (2x the import time).
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e ".[dev]" -c $(CONSTRAINTS)
	touch $(STAMP)

## demo: the main job on embedded defaults (local Airflow, MLflow, gateway; lots land; a champion serves)
demo: $(STAMP)
	$(BIN)/yieldops demo --home $(DEMO) $(DEMO_ARGS)

## test: the whole test suite in stages (unit, integration, e2e, stack) and the coverage gate
test: $(STAMP)
	.ci/tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## check: what to run before pushing a DAG or YAML change
check: $(STAMP)
	$(BIN)/yieldops check

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## bench: STDF decoding speed vs stdf-convert and pystdf on the shared samples
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_stdf.py

## constraints: re-resolve the pinned set (needs the package index)
constraints:
	$(PYTHON) -m pip install --quiet "uv==0.13.8"
	$(PYTHON) -m uv pip compile pyproject.toml --extra dev --extra oracle \
	  -c requirements/pins.in --python-version $(PYVER) -o $(CONSTRAINTS)
# CI images run 3.10 and 3.12 too: `make constraints PYVER=3.10` (uv resolves for a Python it does not have)

clean:
	rm -rf $(VENV) var build dist .pytest_cache .ruff_cache .mypy_cache .coverage*
