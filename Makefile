# One-command set-up: `make demo` and `make test` create .venv (torch pinned to the CPU build), install the package with its
# dev extras and the Debian packages Xvfb needs, then run. Everything is idempotent.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup system-deps demo test lint format bench screenshots clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

setup: $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

demo: setup
	$(VENV)/bin/sparse-sem demo

test: setup system-deps lint
	$(VENV)/bin/npe2 validate napari-sparse-sem
	$(VENV)/bin/pytest -q

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks docs
	$(VENV)/bin/ruff format --check src tests benchmarks docs

format: setup
	$(VENV)/bin/ruff format src tests benchmarks docs
	$(VENV)/bin/ruff check --fix src tests benchmarks docs

bench: setup
	$(PY) -m benchmarks.classical --out bench_out/classical

screenshots: setup system-deps
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) docs/make_screenshots.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
