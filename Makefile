# Two commands a new user needs: `make run` and `make test`.
# Both create .venv when absent and install the project into it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# The CPU build of torch; a GPU user pre-installs their own torch in .venv
# (or sets TORCH_SPEC) and this step leaves it alone.
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck format format-check snapshots bench report clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/tui-quantreport $(MODEL)

# The whole check: lint, type check, then the test suite.
test: lint typecheck
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy

# Format the tree (lint checks it is formatted).
format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --select I --fix .

format-check: $(STAMP)
	$(PY) -m ruff format --check .

# Re-take the app's snapshot SVGs after a deliberate change to a screen (check the diff!).
snapshots: $(STAMP)
	$(PY) -m pytest -q tests/test_app_snapshots.py --snapshot-update

bench: $(STAMP)
	$(PY) -m benchmarks.run $(BENCH_ARGS)

report: $(STAMP)
	$(VENV)/bin/tui-quantreport report $(or $(MODEL),showcase) --format text

clean:
	rm -rf $(VENV) build *.egg-info
