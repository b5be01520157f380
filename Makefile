# Everything a fresh machine needs, from two commands: `make quickstart` and `make test`.
# torch is pinned to 2.13.0: on the project's machines that is a local CPU build, while an unpinned
# torch pulls a multi-GB CUDA build.

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup quickstart test lint crd clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	scripts/install-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[operator,worker,dev]'
	touch $(STAMP)

quickstart: setup
	$(BIN)/prism run examples/quickstart.yaml
	$(BIN)/prism search "planets orbiting the sun" --collection quickstart

lint: setup
	$(BIN)/ruff check .

test: lint
	$(BIN)/pytest

crd: setup
	$(BIN)/python scripts/sync_generated.py

clean:
	rm -rf $(VENV) .prism .pytest_cache .ruff_cache
