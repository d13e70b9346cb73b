# llm-serving-stacks. On a fresh machine: `make synth` and `make test`.
# Every target installs what it needs first; installs are skipped when
# pyproject.toml has not changed since the last one.

SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# What this repository's venvs install is locked (`make lock` refreshes it): a release upstream
# cannot turn main red. The kit's own ranges in pyproject.toml stay ranges for its users.
LOCK := locks/venv.txt
CHECKOV_LOCK := locks/checkov.txt
# This machine's pip config names local indexes that may be absent: drop that noise.
PIP := $(PY) -m pip install --quiet --disable-pip-version-check --constraint $(LOCK)
PIP_FILTER := { grep -v "is ignored: it is neither a file nor a directory" || true; }
CDKTF_CLI := cdktf-cli@0.21.0
# checkov pins boto3 and packaging older than the serving stack needs: its own venv.
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION := 3.3.30

.PHONY: help install lock synth check preview test test-fast lint bench clean deploy deploy-local dashboards

help:
	@echo "make synth              synthesize every environment into cdktf.out/ (offline)"
	@echo "make check              synthesize, then run the policy gate (checkov + policies/) on every environment"
	@echo "make preview BASE=ref   what this change does per environment, against a git revision (writes preview.md)"
	@echo "make test               lint, check the layer contracts (lint-imports), then run the whole test suite"
	@echo "make test-fast          the unit-level tests only (about two minutes), for working on a change"
	@echo "make lint               ruff (lint and format check) and the layer contracts"
	@echo "make lock               re-resolve the locked test and tool dependencies (locks/) and say what changed"
	@echo "make bench              measure synth and preview speed"
	@echo "make dashboards         regenerate Ray's Grafana dashboards from Ray's factory (infra/platform/observability/dashboards/)"
	@echo "make deploy-local ENV=dev  apply one environment with Terraform against a local AWS emulator (no account)"
	@echo "make deploy ENV=dev     cdktf deploy one environment's two stacks, in order (needs Terraform and AWS credentials)"
	@echo "make clean              remove build outputs"

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-base: pyproject.toml $(LOCK) | $(PY)
	$(PIP) -e . 2>&1 | $(PIP_FILTER)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed-base
	$(PIP) -e '.[dev]' 2>&1 | $(PIP_FILTER)
	touch $@

# Ray Serve LLM + vLLM (~7 GB, ~5 min the first time). PyPI's torchvision and
# torchaudio do not load beside the CPU torch build and break
# `import ray.serve.llm` through transformers; the serving app needs neither.
$(VENV)/.installed-serving: $(VENV)/.installed-dev
	$(PIP) -e '.[serving,dev]' 2>&1 | $(PIP_FILTER)
	$(PY) -m pip uninstall --quiet --yes torchvision torchaudio 2>&1 | $(PIP_FILTER)
	$(PY) -c "import ray.serve.llm" >/dev/null 2>&1 || { echo "ray.serve.llm does not import" >&2; exit 1; }
	touch $@

$(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION): $(CHECKOV_LOCK)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --constraint $(CHECKOV_LOCK) \
		checkov==$(CHECKOV_VERSION) 2>&1 | $(PIP_FILTER)
	touch $@

install: $(VENV)/.installed-serving $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

synth: $(VENV)/.installed-base
	$(VENV)/bin/llmstacks synth

check: $(VENV)/.installed-base $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)
	$(VENV)/bin/llmstacks check

preview: $(VENV)/.installed-base $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)
	@test -n "$(BASE)" || { echo "usage: make preview BASE=<git revision>" >&2; exit 2; }
	$(VENV)/bin/llmstacks preview --base "$(BASE)" --output preview.md

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check --quiet .
	$(VENV)/bin/ruff format --check --quiet .
	$(VENV)/bin/lint-imports --no-cache --no-logo

# Two workers (this machine's cores); tests that share one expensive thing (the emulator applies,
# a Ray cluster, the built wheel) stay together in one worker, the longest first (tests/workers.py).
test: lint $(VENV)/.installed-serving $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)
	$(PY) -m pytest -n 2 --dist loadscope --no-loadscope-reorder

test-fast: $(VENV)/.installed-serving
	$(PY) -m pytest -m "not slow" -n 2 --dist loadscope --no-loadscope-reorder

# Resolves with the machine's own python (pip's --dry-run --report): no venv is touched.
lock:
	$(PYTHON) locks/refresh.py

# The only step that imports Ray for infrastructure: the JSON it writes is committed,
# and a test requires it byte for byte.
dashboards: $(VENV)/.installed-serving
	$(PY) -m infra.platform.observability.generate_dashboards

bench: $(VENV)/.installed-serving $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)
	$(PY) benchmarks/bench.py

# Terraform (>= 1.10, on PATH) applies the stack against moto on 127.0.0.1, with the AWS
# provider from a local filesystem mirror: nothing is downloaded, no account is needed.
deploy-local: $(VENV)/.installed-dev
	$(VENV)/bin/llmstacks deploy-local --env $(or $(ENV),dev)

clean:
	rm -rf cdktf.out .cdktf.out.* .pytest_cache bench-results .llmstacks-local

# The cdktf CLI runs `python -m stacks` (cdktf.json) and then Terraform; it
# needs Terraform >= 1.10 on PATH and credentials for the environment's account.
# The platform stack depends on the AWS stack: cdktf deploys them in that order.
# STACKS="<env>" deploys the AWS stack alone (the deploy workflow pins weights in between).
# AUTO_APPROVE=1 skips cdktf's prompt: for CI, where the GitHub environment's reviewers approve.
deploy: $(VENV)/.installed-base
	@test -n "$(ENV)" || { echo "usage: make deploy ENV=<environment> [STACKS=<stacks>] [AUTO_APPROVE=1]" >&2; exit 2; }
	PATH="$$($(PY) -c 'import infra.node_runtime as n; print(n.wheel_node().parent)'):$$PATH" \
		npx --yes $(CDKTF_CLI) deploy $(or $(STACKS),$(ENV) $(ENV)-platform)$(if $(AUTO_APPROVE), --auto-approve)
