# The two commands of the README:
#   make demo   run the exchange demo on the embedded default (SQLite, no services)
#   make test   the whole test suite: ruff, mypy (strict on exchange/), pytest
# Both create .venv and install what they need on first use.

PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PYTEST_ARGS ?=
# make demo DEMO_ARGS=--fresh starts the demo over from an empty home
DEMO_ARGS ?=

.PHONY: demo test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/exchange demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check exchange tests

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	tests/ensure-postgres.sh
	BIN=$(BIN) tests/run-pytest.sh $(PYTEST_ARGS)

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python tests/perf/bench_exchange.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
