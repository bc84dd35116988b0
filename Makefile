# Quickstart: `make demo` and `make test` on a fresh machine. Both create .venv, install torch
# 2.13.0 (the CPU wheel from local disk where one is provided, the CUDA build on a GPU machine) and
# diffalign, then run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.diffalign-installed
PIP := $(BIN)/python -m pip
PYTEST_ARGS ?=
# pytest-xdist: one worker per core (at most 4); tests marked xdist_group (the 2-process torchrun
# runs, fixtures shared by a module) stay on one worker. TEST_WORKERS=0 runs in this process.
TEST_WORKERS ?= auto
XDIST := -n $(TEST_WORKERS) --maxprocesses 4 --dist loadgroup

.PHONY: install demo test test-fast clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt torch torchvision
	$(PIP) install --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/python -c "import torch, diffalign; print('diffalign ready: torch', torch.__version__)"
	touch $(STAMP)

demo: install
	$(BIN)/diffalign demo

# --durations: the slowest tests are listed at the end, to keep the whole suite under 10 minutes
test: install
	$(BIN)/python -m pytest -q --durations=25 $(XDIST) $(PYTEST_ARGS)

# everything but the end-to-end runs marked @pytest.mark.slow
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" $(XDIST) $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache outputs
