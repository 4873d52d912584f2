# Everything a fresh machine needs goes through these targets; each creates .venv on first use.
PYTHON ?= $(shell command -v python3.12 || command -v python3.11 || echo python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run demo test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert (3, 11) <= sys.version_info[:2] < (3, 13), "need Python 3.11 or 3.12, got " + sys.version'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## The main job on embedded defaults: replay the bundled fiber-cut scenario.
run: $(STAMP)
	$(BIN)/engine replay examples/fiber-cut.jsonl --topology examples/topology.yaml

## The test command (what .ci/run calls): lint, strict typing, the whole suite.
test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
