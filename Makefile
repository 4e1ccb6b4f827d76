# Every target sets itself up: a fresh clone needs nothing but python3 (3.11+ for
# the Pipecat demo; the core runs on 3.10) and make.
#
# Installs use the exact versions CI tests with (constraints.txt) and uv, which is
# installed from PyPI into the venv on first use; if uv cannot be installed or
# fails (no PyPI access, a private index only pip is configured for), pip does the
# same install. Both keep their downloads in the user's cache, so a second clone
# installs from it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
CONSTRAINTS := constraints.txt
DEMO_STAMP := $(VENV)/.installed-demo
DEV_STAMP := $(VENV)/.installed-dev
# The demo needs the Pipecat service and the embedded server, nothing else.
DEMO_EXTRAS := pipecat,server

# uv reads neither pip.conf nor PIP_* variables, and by default trusts only its own
# bundled CA roots: have it use the system's store, so that a TLS-inspecting proxy
# whose CA is installed there works for uv as it does for pip.
export UV_SYSTEM_CERTS ?= 1

# $(call install,EXTRAS): this project (editable) with EXTRAS, pinned, into the venv.
define install
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing .[$(1)] into $(VENV) with the versions of $(CONSTRAINTS)"
	@if { test -x $(UV) || $(PY) -m pip install -qq --disable-pip-version-check -c $(CONSTRAINTS) uv; } \
		&& $(UV) pip install --python $(PY) --quiet -c $(CONSTRAINTS) -b $(CONSTRAINTS) -e '.[$(1)]'; then \
		:; \
	else \
		echo "uv could not install; installing with pip instead" >&2; \
		$(PY) -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e '.[$(1)]'; \
	fi
endef

.PHONY: install demo test lint typecheck bench soak constraints clean

$(DEMO_STAMP): pyproject.toml $(CONSTRAINTS)
	$(call install,$(DEMO_EXTRAS))
	@touch $@

# Everything the test suite, the linters and the benchmarks need (a superset of the demo's).
$(DEV_STAMP): pyproject.toml $(CONSTRAINTS)
	$(call install,dev)
	@touch $@ $(DEMO_STAMP)

install: $(DEV_STAMP)

demo: $(DEMO_STAMP)
	$(PY) examples/pipecat_demo.py --out demo.wav

lint: $(DEV_STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check src adapters tests

typecheck: $(DEV_STAMP)
	$(PY) -m mypy

test: $(DEV_STAMP) lint typecheck
	$(PY) -m pytest -q -n 4  # four workers: most tests wait on sockets and deadlines, not on a core

bench: $(DEV_STAMP)
	$(PY) -m benchmarks.run

soak: $(DEV_STAMP)
	$(PY) -m pytest -q -m soak tests/reliability

# Re-resolve constraints.txt after a dependency change in pyproject.toml: versions
# already pinned are kept where they still fit; add UPGRADE=--upgrade (or
# UPGRADE="--upgrade-package NAME") to move them. Python 3.10 and up, every platform.
constraints: $(DEMO_STAMP)
	echo uv | $(UV) pip compile pyproject.toml - --extra dev --universal --python-version 3.10 \
		--custom-compile-command 'make constraints' --quiet $(UPGRADE) -o $(CONSTRAINTS)

clean:
	rm -rf $(VENV) dist build .pytest_cache .mypy_cache .ruff_cache
