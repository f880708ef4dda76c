# Everything starts from a bare python3.11: `make run` and `make test` build .venv first when needed.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.9

.PHONY: venv run test bench clean

venv: $(VENV)/.installed

# uv comes from PyPI into the venv itself: nothing outside .venv is touched.
# --compile-bytecode: uv writes no .pyc by default, and under PYTHONDONTWRITEBYTECODE=1 Python never caches
# them either, so every process (each test's `fedmm` subprocess, every resume of a kill chain) recompiled
# TensorFlow and TFF from source, ~6 CPU-s each; compiling once here costs less than 4 such processes
# (BUILD_NOTES.md, Install, has the measurements).
$(VENV)/.installed: requirements.txt overrides.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements.txt --override overrides.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

run: venv
	$(BIN)/fedmm run

# One pytest worker per core (pytest-xdist; a test file's tests stay on one worker, so a module's fixtures
# are built once): most tests run a training subprocess that keeps about one core busy. Files are handed out
# in collection order, the long ones first (tests/conftest.py's LONG_FILES); the 15 slowest tests are listed.
test: venv
	$(BIN)/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder --durations=15

# FedMM vs FedAvg/Keras: round time, throughput, upload bytes, scaling, memory (a few minutes).
bench: venv
	$(BIN)/fedmm bench

clean:
	rm -rf $(VENV) build *.egg-info
