# Set-up, tests and the demo. Everything installs into ./.venv; nothing touches the system Python.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup test test-fast demo lint format docs bench clean

setup: $(VENV)/.installed

# torch is installed first, pinned to the CPU build, so that the unpinned requirement in pyproject.toml
# never pulls a multi-GB CUDA build onto a machine that has no torch yet.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

test: setup
	$(BIN)/python -m pytest -q

# Everything but the tests marked slow (notebooks, subprocess and torchrun fits): for quick checks.
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

demo: setup
	$(BIN)/spikeglm demo --overwrite

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy spikeglm

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The documentation site, built into site/ (open site/index.html; it reads from the disk, no server needed):
# the pages of docs/, the README, the notebooks, the API reference from the docstrings and the command line
# from its --help. A warning (a broken link, a docstring griffe cannot read) fails the build.
docs: setup
	$(BIN)/mkdocs build --strict

# The quick benchmarks; `python benchmarks/poglm.py quality` (about 11 min) and benchmarks/scaling.py are longer.
# Each also writes its figures as JSON under results/benchmarks/ (--json PATH to choose another file).
bench: setup
	$(BIN)/python benchmarks/relaxations.py
	$(BIN)/python benchmarks/poglm.py throughput

clean:
	rm -rf $(VENV) build site .cache *.egg-info .pytest_cache .ruff_cache
