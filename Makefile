# One-command set-up: `make demo` and `make test` create .venv (torch pinned, the CPU build by default), install the
# package with its dev extras and the Debian packages Xvfb needs, then run. Everything is idempotent.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
# Which torch build: cpu (default: a wheel already on this machine's pip find-links, else PyTorch's CPU index, ~200 MB),
# pypi (PyPI's default: a CUDA build of several GB on Linux x86-64), or the URL of a package index (e.g. a CUDA one:
# https://download.pytorch.org/whl/cu128). The set-up prints which build it got.
TORCH_INDEX ?= cpu
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
STAMP := $(VENV)/.installed
# numba's cache=True would write its cache files beside the sources of the editable install; keep them in the venv.
export NUMBA_CACHE_DIR ?= $(abspath $(VENV))/numba-cache

.PHONY: setup torch system-deps demo test lint format bench screenshots clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(MAKE) --no-print-directory torch
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

torch:
	test -x $(PY) || python3 -m venv $(VENV)
ifeq ($(TORCH_INDEX),cpu)
	$(PY) -m pip install -q --no-index --no-deps "torch==$(TORCH_VERSION)" 2>/dev/null \
	  || $(PY) -m pip install -q "torch==$(TORCH_VERSION)" --index-url $(TORCH_CPU_INDEX)
	$(PY) -m pip install -q "torch==$(TORCH_VERSION)"
else ifeq ($(TORCH_INDEX),pypi)
	$(PY) -m pip install -q "torch==$(TORCH_VERSION)"
else
	$(PY) -m pip install -q "torch==$(TORCH_VERSION)" --index-url $(TORCH_INDEX)
endif
	@$(PY) -W ignore -c "import torch; c = torch.version.cuda; print('torch', torch.__version__, f'(CUDA {c} build)' if c else '(CPU build)')"

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
