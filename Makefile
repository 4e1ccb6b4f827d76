# Every target sets itself up: a fresh clone needs nothing but python3 (3.10+).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck bench soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) examples/pipecat_demo.py --out demo.wav

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check src adapters tests

typecheck: $(STAMP)
	$(PY) -m mypy

test: $(STAMP) lint typecheck
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m benchmarks.run

soak: $(STAMP)
	$(PY) -m pytest -q -m soak tests/reliability

clean:
	rm -rf $(VENV) dist build .pytest_cache .mypy_cache .ruff_cache
