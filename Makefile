# BrandForge set-up. `make demo` trains the demo brand end to end; `make test` runs the tests.
#
#   TORCH_SPEC   torch requirement to install first, e.g. TORCH_SPEC="torch==2.13.0" (default:
#                install the CPU build torch==2.13.0 only when the venv has no torch yet).
#                GPU users: TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
#   PYTHON       interpreter for the virtual environment (default python3, 3.11 or 3.12)
#   VENV         where the virtual environment lives (default .venv)
#   TEST_WORKERS pytest-xdist worker processes for `make test` (default 2; a module's tests stay
#                in one worker; the modules that start Ray run afterwards, alone)

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?=
TEST_WORKERS ?= 2
DEFAULT_TORCH := torch==2.13.0

BIN := $(abspath $(VENV))/bin
PY := $(BIN)/python
# --no-compile: Python writes each module's bytecode when it is first imported; compiling every
# file of torch, Ray and MLflow at install time took longer than the imports ever need (a clean
# test set-up: 173 s with it, 89 s without, on 2 cores).
PIP_INSTALL := $(PY) -m pip install --no-compile
# Stage commands in dvc.yaml call `brandforge`, so the venv's bin must come first.
export PATH := $(BIN):$(PATH)
# Quieter third-party output; nothing is ever downloaded from a model hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_VERBOSITY := error
export DIFFUSERS_VERBOSITY := error
export TOKENIZERS_PARALLELISM := false

.PHONY: help install install-test demo test lint clean-outputs

help:
	@echo "make demo    create $(VENV), install, and run the training pipeline (dvc repro)"
	@echo "make test    install the test extras and run the whole test suite"
	@echo "make lint    ruff and mypy"

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first: if pip resolved it as a dependency it would fetch a multi-GB CUDA build.
$(VENV)/.torch: | $(PY)
	@if [ -n "$(TORCH_SPEC)" ]; then \
		echo "installing $(TORCH_SPEC)"; $(PIP_INSTALL) $(TORCH_SPEC); \
	elif ! $(PY) -c "import torch" 2>/dev/null; then \
		echo "installing $(DEFAULT_TORCH) (CPU)"; $(PIP_INSTALL) "$(DEFAULT_TORCH)"; \
	fi
	@touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(PIP_INSTALL) -e .
	@touch $@

# One resolve for the package and its test extras (the test set-up never installs twice).
$(VENV)/.installed-test: pyproject.toml $(VENV)/.torch
	$(PIP_INSTALL) -e ".[test]"
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

demo: install
	@git rev-parse --git-dir >/dev/null 2>&1 || (echo "make demo needs a git checkout (DVC and lineage use it)"; exit 1)
	@test -d .dvc || $(BIN)/dvc init -q
	$(BIN)/dvc repro
	@$(PY) -m training.summary
	@$(BIN)/brandforge registry list

# Two runs: everything but the Ray modules in TEST_WORKERS processes (a module stays in one),
# then the Ray modules alone, so their timing checks never share the cores with another test.
# Both always run; either failing fails `make test`.
test: install-test
	status=0; \
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not ray" || status=1; \
	$(PY) -m pytest -m ray || status=1; \
	exit $$status

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/mypy brandforge training evaluation registry serving
