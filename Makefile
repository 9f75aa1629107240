# fcinv-widgets: `make demo` opens JupyterLab on the quickstart; `make test` runs every test.
# Both create or update .venv/ in the repository root and install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.fcinv-installed
ENSEMBLE_STAMP := $(VENV)/.fcinv-ensemble-installed
PORT ?= 8888

.PHONY: venv ensemble test test-python test-js test-browser demo bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first: torch==2.13.0 resolves to the CPU build on this machine's disk;
# a bare 'torch' requirement would pull a multi-GB CUDA build.
$(STAMP): $(PY) pyproject.toml constraints.txt
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# The uMLFF packages (tests run the real calculators). mace-torch pins e3nn==0.4.4 while
# sevenn needs e3nn>=0.5: it goes in a second step without dependencies (docs/ensemble.md).
$(ENSEMBLE_STAMP): $(STAMP)
	$(PIP) install -q -c constraints.txt -e ".[dev,ensemble]"
	$(PIP) install -q -c constraints.txt --no-deps mace-torch==0.3.16
	touch $(ENSEMBLE_STAMP)

venv: $(STAMP)

ensemble: $(ENSEMBLE_STAMP)

test: $(ENSEMBLE_STAMP)
	bash .ci/test-all

# scripts/demo.py: --allow-root as root, --no-browser without a display, the next free port
# when $(PORT) is taken; prints the URL with its token. IP=0.0.0.0 to listen beyond localhost.
demo: $(STAMP)
	$(PY) scripts/demo.py --port $(PORT) $(if $(IP),--ip $(IP))

bench: $(STAMP)
	$(VENV)/bin/fcinv bench forward --material Ge --batch 10000
	$(PY) benchmarks/bench_inference.py --model ge-vae
	$(PY) benchmarks/bench_inference.py --model ge-resnet
	$(PY) benchmarks/bench_refine.py --material Ge --n 3

clean:
	rm -rf $(VENV) build *.egg-info
