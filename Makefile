# Everything a fresh machine needs goes through these targets; each creates .venv on first use.
# The first interpreter that actually runs and is 3.11 or 3.12 (durable-rules does not import on 3.13).
PYTHON ?= $(shell for p in python3.12 python3.11 python3; do \
            $$p -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 13))' 2>/dev/null \
            && { command -v $$p; break; }; done)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run replay test quick lint typecheck pytest bench compiled clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: need Python 3.11 or 3.12 on PATH (python3.12, python3.11 or python3)"; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@# the core compiled with mypyc (about 2 min of CPU); without a C compiler the pure-Python core runs
	$(BIN)/python tools/build_compiled.py --or-pure
	touch $(STAMP)

## The core compiled with mypyc again: after an edit of a compiled module the source runs until then
## (`engine --version` says which core runs, and why).
compiled: $(STAMP)
	$(BIN)/python tools/build_compiled.py

## The main job on embedded defaults: embedded broker, the daemon, a simulated network, a receiver.
run: $(STAMP)
	$(BIN)/engine demo

## The pure core on a file: replay the bundled fiber cut and site power failure.
replay: $(STAMP)
	$(BIN)/engine replay examples/fiber-cut.jsonl --topology examples/topology.yaml

## The test command (what .ci/run calls): lint, strict typing, the whole suite, slow tests included.
test: $(STAMP) lint typecheck pytest

## A developer's quick run: the suite without the tests marked slow (pyproject's default selection).
quick: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## Two workers (pytest-xdist), each running whole test files, so a module's shared broker, daemon or
## browser starts once; tests use private servers on free ports and their own tmp_path and topics.
pytest: $(STAMP)
	$(BIN)/pytest -q -m 'slow or not slow' -n 2 --dist loadfile

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build engine/compiled-build.json
	find engine -name '*.so' -delete
