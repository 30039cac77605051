# luna-ha: every task CI or a developer runs is a target here.
SHELL := /bin/bash
# A recipe's pipeline fails when any command in it fails: `pip ... | grep` fails when pip does.
.SHELLFLAGS := -o pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
BIN := $(VENV)/bin
# Prefer python3.13 (the Lambda runtime), else any python3 >= 3.11.
PYTHON ?= $(shell for p in $$(ls -d $$(pyenv root 2>/dev/null)/versions/3.13*/bin/python3 2>/dev/null) \
	python3.13 python3.12 python3.11 python3; do \
	if command -v "$$p" >/dev/null 2>&1 && "$$p" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; \
	then echo "$$p"; break; fi; done)
STAMP := $(VENV)/.installed
# SAM CLI pins an older boto3 than the project: it gets its own venv.
SAM_VENV ?= .venv-sam
SAM := $(SAM_VENV)/bin/sam
SAM_STAMP := $(SAM_VENV)/.installed
SAM_CLI_VERSION ?= 1.170.*
# checkov pins an older boto3 too: its own venv; tests/templates/test_scanners.py runs it offline.
CHECKOV_VENV ?= .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
CHECKOV_VERSION ?= 3.3.*
# Instruction set of the provider function and its layer: arm64 | x86_64 (make build ARCH=x86_64).
ARCH ?= arm64
# CPython 3.13 (the Lambda runtime's version) compiles the bytecode that `make build` ships in the
# function and the layer (functions/Makefile, layers/deps/Makefile).
PYTHON313 ?= $(shell for p in $$(ls -d $$(pyenv root 2>/dev/null)/versions/3.13*/bin/python3.13 2>/dev/null) \
	python3.13; do command -v "$$p" 2>/dev/null && break; done)
PYTEST_FLAGS ?= -q
# Appliance software of `make demo` (luna-ha demo --dialect): empty for the default (Luna SA 5.4);
# 5.1 | 5.4 | 6.2 | 7.2 | 7.8 | 7.x (make demo DIALECT=7.x).
DIALECT ?=
# Drops pip's "... is ignored" noise; succeeds on empty output (grep's status 1) so that only pip's
# own status, through pipefail, decides.
QUIET_PIP := 2>&1 | { grep -v 'is ignored' || test $$? -eq 1; }

.PHONY: help venv sam demo test lint typecheck unit functional kill-matrix templates bench build wheel clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  %-10s %s\n", $$1, $$2 }'

$(STAMP): pyproject.toml lab/pyproject.toml
	@test -n "$(PYTHON)" || { echo "need python >= 3.11 (3.13 preferred)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip $(QUIET_PIP)
	@# luna-ha-lab (lab/: the AWS test doubles) is not on an index: the dev extra finds it here.
	$(BIN)/python -m pip install -q -e ./lab -e '.[dev]' $(QUIET_PIP)
	$(BIN)/python -c 'import luna_ha, luna_ha_lab, paramiko, crhelper, aws_lambda_powertools, moto'
	@touch $@

venv: $(STAMP) ## create .venv and install the project with its dev tools

$(SAM_STAMP):
	@test -n "$(PYTHON)" || { echo "need python >= 3.11 (3.13 preferred)"; exit 1; }
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install -q --upgrade pip $(QUIET_PIP)
	$(SAM_VENV)/bin/python -m pip install -q 'aws-sam-cli==$(SAM_CLI_VERSION)' $(QUIET_PIP)
	SAM_CLI_TELEMETRY=0 $(SAM) --version
	@touch $@

sam: $(SAM_STAMP) ## create .venv-sam with the AWS SAM CLI

$(CHECKOV_STAMP):
	@test -n "$(PYTHON)" || { echo "need python >= 3.11 (3.13 preferred)"; exit 1; }
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q --upgrade pip $(QUIET_PIP)
	$(CHECKOV_VENV)/bin/python -m pip install -q 'checkov==$(CHECKOV_VERSION)' $(QUIET_PIP)
	BC_SKIP_MAPPING=TRUE $(CHECKOV_VENV)/bin/checkov --version
	@touch $@

demo: $(STAMP) ## run the whole lifecycle locally: simulated appliances + moto (DIALECT=7.x: Luna 7)
	$(BIN)/luna-ha demo$(if $(DIALECT), --dialect $(DIALECT))

test: lint typecheck $(SAM_STAMP) $(CHECKOV_STAMP) ## ruff, mypy and every test tier
	$(BIN)/python -m pytest $(PYTEST_FLAGS) tests

lint: $(STAMP) ## ruff check and ruff format --check
	$(BIN)/ruff check functions lab tests bench tools
	$(BIN)/ruff format --check functions lab tests bench tools

typecheck: $(STAMP) ## mypy (strict) of functions/luna_ha and lab/luna_ha_lab
	$(BIN)/mypy

unit: $(STAMP) ## the pure, fast tests only
	$(BIN)/python -m pytest $(PYTEST_FLAGS) tests/unit

functional: $(STAMP) ## real SSH to the simulator, moto, the real handler
	$(BIN)/python -m pytest $(PYTEST_FLAGS) tests/functional

kill-matrix: $(STAMP) ## the kill matrix in full: the function killed at every AWS call and appliance step, Luna SA and Luna 7 (~16 min)
	LUNA_HA_KILL_MATRIX=full $(BIN)/python -m pytest $(PYTEST_FLAGS) -s tests/functional/test_kill_matrix.py

templates: $(STAMP) $(SAM_STAMP) $(CHECKOV_STAMP) ## cfn-lint, sam validate --lint and sam build of templates/
	$(BIN)/python -m pytest $(PYTEST_FLAGS) tests/templates

bench: $(STAMP) ## print benchmark tables and ratios
	$(BIN)/python bench/run.py

build: $(SAM_STAMP) ## sam build of the provider (function + layer for ARCH, with bytecode) into .aws-sam/build, Architecture pinned to ARCH
	@test -n "$(PYTHON313)" || { echo "make build needs python3.13 (pyenv or PATH) to compile the bytecode it ships"; exit 1; }
	PATH="$(dir $(PYTHON313)):$$PATH" SAM_CLI_TELEMETRY=0 LAYER_ARCH=$(ARCH) PYTHON313="$(PYTHON313)" \
		LAYER_PIP="$(abspath $(SAM_VENV))/bin/python -m pip" \
		$(SAM) build --template templates/provider.yaml --parameter-overrides Architecture=$(ARCH)
	@# The built template's Architecture: the layer's, and no other (tools/pin_architecture.py).
	$(SAM_VENV)/bin/python tools/pin_architecture.py .aws-sam/build $(ARCH)

wheel: $(STAMP) ## build the wheels into dist/: luna-ha (what a member installs) and luna-ha-lab (its demo extra)
	@# setuptools adds to build/lib and never prunes it: a module moved away would ship from there.
	rm -rf build lab/build
	$(BIN)/python -m pip wheel -q --no-deps -w dist . ./lab $(QUIET_PIP)
	@ls dist/*.whl

clean: ## remove the venvs and every build, cache and dist directory
	rm -rf $(VENV) $(SAM_VENV) build lab/build dist .aws-sam .mypy_cache .ruff_cache .pytest_cache
