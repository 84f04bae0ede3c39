# stopline — developer entry points. `make demo` and `make test` are the two commands a fresh machine needs.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PYTEST_FLAGS ?=
# e2e workers (pytest-xdist), each with its own controller over its own namespaces; 0 = serial in this process.
E2E_WORKERS ?= 3

.PHONY: help setup lint typecheck imports unit e2e test crds demo fmt bench stack-up stack-down clean

help:
	@echo "make demo   - start the local stack and show a push gated, rolled back and reverted"
	@echo "make test   - lint, mypy --strict, import contracts, unit and e2e tests (real stack)"
	@echo "make unit | make e2e | make crds | make fmt | make bench | make stack-up | make stack-down"

$(STAMP): pyproject.toml
	@bash hack/setup-python.sh "$(VENV)"
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

setup: $(STAMP)

lint: setup
	$(VENV)/bin/ruff check controller tests bench hack
	$(VENV)/bin/ruff format --check controller tests bench hack

typecheck: setup
	$(VENV)/bin/mypy --strict controller

imports: setup
	$(VENV)/bin/lint-imports

unit: setup
	bash hack/install-promtool.sh
	bash hack/install-apt.sh node nodejs
	bash hack/install-apt.sh npm npm
	$(PY) -m pytest tests/unit -q $(PYTEST_FLAGS)

e2e: setup
	bash hack/install-browser.sh
	bash hack/stack.sh up
	$(PY) -m pytest tests/e2e -q -o testpaths=tests/e2e -p no:cacheprovider $(if $(filter-out 0,$(E2E_WORKERS)),-n $(E2E_WORKERS)) $(PYTEST_FLAGS)

test: lint typecheck imports unit e2e

crds: setup
	$(PY) -m controller.models.crd crds charts/stopline/crds

demo: setup
	$(PY) hack/demo.py

fmt: setup
	$(VENV)/bin/ruff format controller tests bench hack
	$(VENV)/bin/ruff check --fix controller tests bench hack

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b; done

stack-up:
	bash hack/install-browser.sh
	bash hack/stack.sh up

stack-down:
	bash hack/stack.sh down

clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache
