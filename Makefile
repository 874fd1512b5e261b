# Set-up and entry points. `make test` and `make demo` build .venv from scratch when needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WHEELS ?= /opt/wheels
# No thread count is exported: the library runs its fits at one thread and leaves the rest at torch's default
# (mbrl/common/threads.py); set OMP_NUM_THREADS to choose one yourself.
export MPLBACKEND ?= Agg

.PHONY: install test demo lint bench-quick clean

install: $(STAMP)

# CPU torch unless a GPU is present: a plain `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@if $(PY) -c "import torch" 2>/dev/null; then echo "torch already installed"; \
	elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
	  echo "GPU found: installing torch with CUDA"; $(PY) -m pip install -q "torch>=2.3"; \
	elif ls $(WHEELS)/torch-2.13.0*cpu*.whl >/dev/null 2>&1; then \
	  echo "no GPU: installing the local CPU build of torch"; $(PY) -m pip install -q $$(ls $(WHEELS)/torch-2.13.0*cpu*.whl | head -n1); \
	else \
	  echo "no GPU: installing the CPU build of torch"; \
	  $(PY) -m pip install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu || \
	  $(PY) -m pip install -q "torch>=2.3" --index-url https://download.pytorch.org/whl/cpu; \
	fi
	$(PY) -m pip install -q -e ".[dev,manipulation,sweep,rl]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(VENV)/bin/ruff check safe_density mbrl tests benchmarks notebooks/*.py

demo: $(STAMP)
	$(PY) -m benchmarks.demo

clean:
	rm -rf $(VENV) results .pytest_cache

# mbrl-lib 0.2.0 (facebookresearch) in its own venv: the speed anchor of `python -m benchmarks.planner_speed --anchor`.
# Its import name `mbrl` clashes with ours, so it is timed in a separate interpreter. mbrl 0.2.0 pins
# hydra-core/omegaconf versions that no longer resolve with current Python; 1.3.2 / 2.3.0 are forced.
MBRLLIB_VENV := .venv-mbrllib
.PHONY: mbrl-lib-env
mbrl-lib-env: $(MBRLLIB_VENV)/.installed

$(MBRLLIB_VENV)/.installed:
	$(PYTHON) -m venv $(MBRLLIB_VENV)
	$(MBRLLIB_VENV)/bin/python -m pip install -q --upgrade pip
	@if ls $(WHEELS)/torch-2.13.0*cpu*.whl >/dev/null 2>&1; then \
	  $(MBRLLIB_VENV)/bin/python -m pip install -q $$(ls $(WHEELS)/torch-2.13.0*cpu*.whl | head -n1); \
	else $(MBRLLIB_VENV)/bin/python -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu; fi
	$(MBRLLIB_VENV)/bin/python -m pip install -q --no-deps "mbrl==0.2.0"
	$(MBRLLIB_VENV)/bin/python -m pip install -q "hydra-core==1.3.2" "omegaconf==2.3.0" numpy tqdm matplotlib \
	  "gymnasium==0.26.3" termcolor
	cd /tmp && $(CURDIR)/$(MBRLLIB_VENV)/bin/python -c "import mbrl, mbrl.planning, mbrl.models; print('mbrl-lib', mbrl.__version__)"
	touch $@
