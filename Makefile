# The README's two commands.  Each creates .venv and installs the project when no environment
# is active; inside an active virtual environment (or `make PY=python`) it uses that one.
PYTHON ?= python3
ifdef VIRTUAL_ENV
PY ?= python
else
PY ?= .venv/bin/python
endif
# Data kept beside the project (tiny-shakespeare); an explicit LAYERWISE_DATA wins.
ifneq ($(wildcard ../shared/data/tinyshakespeare.txt),)
export LAYERWISE_DATA ?= $(abspath ../shared/data)
endif

.PHONY: figures test test-fast lint bench env

figures: env  ## regenerate every figure from the run store
	$(PY) -m layerwise figures

test: env  ## unit tests, notebook smoke runs, then nbval on the committed notebooks
	$(PY) -m pytest tests
	$(PY) -m pytest --nbval-lax notebooks

test-fast: env  ## the unit tests not marked slow (under a minute on two cores)
	$(PY) -m pytest -m "not slow" tests

lint: env
	$(PY) -m ruff check lib tests bench notebooks
	$(PY) -m ruff format --check lib tests bench notebooks

bench: env
	$(PY) bench/harness_overhead.py
	$(PY) bench/sweep_scaling.py

env:
ifndef VIRTUAL_ENV
	@test -x .venv/bin/python || $(PYTHON) -m venv .venv
	@test -f .venv/.installed -a .venv/.installed -nt pyproject.toml || \
		( .venv/bin/python -m pip install --upgrade pip && \
		  .venv/bin/python -m pip install -e ".[dev]" && touch .venv/.installed )
endif
