# Meterline — the two commands a fresh clone needs: `make run` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install migrate seed lint contracts bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## make run: install, migrate, seed demo data and serve on http://127.0.0.1:8000
run: install
	$(BIN)/meterline migrate
	$(BIN)/meterline seed
	@$(BIN)/python -m gateway.try_it
	$(BIN)/meterline serve

## make test: install and run the whole suite (lint, layers, unit, integration, contract)
test: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

## make contracts: regenerate contracts/openapi/*.yaml from the app (review the diff!)
contracts: install
	$(BIN)/python -m gateway.contracts write

bench: install
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/gateway.py
	$(BIN)/python bench/experience.py
	$(BIN)/python bench/billing.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
