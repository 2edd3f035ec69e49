# The README's two commands are `make run` and `make test`; CI runs `make test` (.ci/run).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOME_DIR ?= $(CURDIR)/.stratoflow
PORT ?= 8321

.PHONY: install run test lint typecheck pytest bench clean

$(BIN)/stratoflow: pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("Stratoflow needs Python 3.11+; set PYTHON=python3.11" if sys.version_info < (3, 11) else 0)'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/stratoflow

## make run: install, then start a local Stratoflow (API on 127.0.0.1:$(PORT)) with the examples applied
run: install
	$(BIN)/stratoflow server --home $(HOME_DIR) --port $(PORT) --apply examples/

## make test: install, then lint, type-check and run the whole test suite with coverage
test: install lint typecheck pytest

lint:
	$(BIN)/ruff check layers functions tests benchmarks examples
	$(BIN)/ruff format --check layers functions tests benchmarks examples

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest --cov --cov-report=term-missing:skip-covered

bench: install
	$(BIN)/python benchmarks/bench_local.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
