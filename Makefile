# luna-ha: every task CI or a developer runs is a target here.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
BIN := $(VENV)/bin
# Prefer python3.13 (the Lambda runtime), else any python3 >= 3.11.
PYTHON ?= $(shell for p in $$(ls -d $$(pyenv root 2>/dev/null)/versions/3.13*/bin/python3 2>/dev/null) \
	python3.13 python3.12 python3.11 python3; do \
	if command -v "$$p" >/dev/null 2>&1 && "$$p" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; \
	then echo "$$p"; break; fi; done)
STAMP := $(VENV)/.installed
PYTEST_FLAGS ?= -q

.PHONY: help venv demo test lint typecheck unit functional templates bench build clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "need python >= 3.11 (3.13 preferred)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip 2>&1 | grep -v 'is ignored' || true
	$(BIN)/python -m pip install -q -e '.[dev]' 2>&1 | grep -v 'is ignored' || true
	$(BIN)/python -c 'import luna_ha, paramiko, crhelper, aws_lambda_powertools, moto'
	@touch $@

venv: $(STAMP) ## create .venv and install the project with its dev tools

demo: $(STAMP) ## run the whole lifecycle locally: simulated appliances + moto
	$(BIN)/luna-ha demo

test: lint typecheck ## ruff, mypy and every test tier
	$(BIN)/python -m pytest $(PYTEST_FLAGS) tests

lint: $(STAMP)
	$(BIN)/ruff check functions tests bench
	$(BIN)/ruff format --check functions tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) ## the pure, fast tests only
	$(BIN)/python -m pytest $(PYTEST_FLAGS) tests/unit

functional: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_FLAGS) tests/functional

bench: $(STAMP) ## print benchmark tables and ratios
	$(BIN)/python bench/run.py

build: $(STAMP) ## build the distribution (wheel) into dist/
	$(BIN)/python -m pip wheel -q --no-deps -w dist . 2>&1 | grep -v 'is ignored' || true
	@ls dist/*.whl

clean:
	rm -rf $(VENV) build dist .aws-sam .mypy_cache .ruff_cache .pytest_cache
