# Everything a fresh machine needs, from two commands: `make quickstart` and `make test`.
# torch is pinned to 2.13.0: on the project's machines that is a local CPU build, while an unpinned
# torch pulls a multi-GB CUDA build.

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup quickstart test lint crd clean cluster-build cluster-up cluster-down

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
	$(BIN)/prism search --collection quickstart --limit 3 \
	  "is it sunny and warm today" "where can I get my bike fixed" "planets orbiting the sun"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

# The tests include the cluster tier (tests/cluster): a real control plane built from Go modules.
# A missing binary is an error here, not a skip.
test: lint cluster-build
	PRISM_CLUSTER_TIER=require $(BIN)/pytest

# Build (or reuse, from ~/.cache/prism/control-plane) etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kwok, KubeRay, Kueue and helm, pinned in scripts/cluster/versions.env.
cluster-build:
	scripts/cluster/build.sh

# A real control plane on 127.0.0.1 (tests/cluster/README.md); prints the kubeconfig path.
cluster-up: setup cluster-build
	$(BIN)/python scripts/cluster/controlplane.py up

cluster-down: setup
	$(BIN)/python scripts/cluster/controlplane.py down

crd: setup
	$(BIN)/python scripts/sync_generated.py

clean:
	rm -rf $(VENV) .prism .pytest_cache .ruff_cache
