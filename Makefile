# Two commands matter: `make run` (set up + open the app) and `make test` (set up + test).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup run test lint bench screenshots clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	@$(PY) -m compileall -q core backends nemorun_tui >/dev/null
	@touch $(STAMP)

setup: $(STAMP)

run: setup
	@$(VENV)/bin/nemorun-tui

test: setup
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m mypy
	$(PY) -m pytest -q -rs

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) -m mypy

bench: setup
	@$(PY) -m compileall -q core backends nemorun_tui >/dev/null  # PYTHONDONTWRITEBYTECODE may be set
	$(PY) bench/run_all.py

screenshots: setup
	$(PY) scripts/screenshots.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
