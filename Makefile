# The two set-up commands of the README. Each creates .venv if missing and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint services bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

## make demo: serve the platform with a small demo ledger on http://127.0.0.1:8000
demo: $(STAMP)
	$(BIN)/cityshare serve --demo

## make services: install the real services the tests start (PostgreSQL) when root on Debian
services:
	bash scripts/ensure-services.sh

## make lint: ruff, mypy, and the architecture contracts (import-linter, see pyproject.toml)
lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	$(BIN)/lint-imports

## make test: lint, then every test on SQLite and on a real PostgreSQL started by the tests
test: $(STAMP) services lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup

## make bench: the ledger benchmark on SQLite
bench: $(STAMP)
	$(BIN)/cityshare bench ledger

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
