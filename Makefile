# Set-up and the two front-door commands. `make demo` and `make test` each create the virtual
# environment on first use (Python >= 3.10), then run.
PYTHON ?= python3
VENV   ?= .venv
# torch is pinned for reproducible CPU runs; on a GPU host pass e.g. TORCH="torch==2.13.0" from your CUDA index.
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.sparsekit-installed

.PHONY: demo test setup bench-cpu bench-accuracy gpu-wheels clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/sparsekit demo --out runs/demo $(ARGS)

# One test worker per core (at most 4; each holds torch and ModelOpt), whole files per worker so
# module fixtures are built once. PYTEST_ARGS="-n 0" runs in one process.
PYTEST_ARGS ?= -n auto --maxprocesses 4 --dist loadfile

test: $(STAMP)
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests"; exit 1; fi; exit $$rc

bench-cpu: $(STAMP)
	$(BIN)/python benchmarks/core_pipeline_cpu.py

bench-accuracy: $(STAMP)
	$(BIN)/python benchmarks/accuracy.py

# Wheels for running benchmarks/gpu_suite.py on a GPU host without network (benchmarks/README.md).
gpu-wheels:
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d .gpu-wheels -r benchmarks/gpu-wheels.txt
	@ls .gpu-wheels

clean:
	rm -rf runs .pytest_cache
