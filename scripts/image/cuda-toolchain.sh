#!/bin/sh
# Dockerfile.cuda's build stage: the CUDA 13 compiler (nvcc), headers and link libraries that llama-cpp-python
# needs to build llama.cpp with CUDA, from NVIDIA's pip wheels (requirements/cuda-toolchain.lock, hashes), laid
# out as a toolkit at $1, so the build stays on the small `base` CUDA image instead of the multi-GB `devel` one.
# No libcuda stub comes with these wheels, hence -DGGML_CUDA_NO_VMM=ON in Dockerfile.cuda (ggml then needs
# no driver library to link). tests/test_images.py runs this and builds a CUDA library with CMake against it.
set -eu
TARGET=${1:?usage: cuda-toolchain.sh TARGET}
HERE=$(dirname "$0")
PROJECT=${PROJECT:-$HERE/../..}
PYTHON=${PYTHON:-python3}
work=$(mktemp -d)
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --no-deps --require-hashes --target "$work/site" \
    --requirement "$PROJECT/requirements/cuda-toolchain.lock"
mkdir -p "$(dirname "$TARGET")"
mv "$work/site/nvidia/cu13" "$TARGET"
# The layout CMake's FindCUDAToolkit and nvcc expect of a toolkit: lib64, nvvm/lib64, unversioned libraries.
ln -s lib "$TARGET/lib64"
ln -s ../lib "$TARGET/nvvm/lib64"
for lib in cudart cublas cublasLt; do ln -sf "lib$lib.so.13" "$TARGET/lib/lib$lib.so"; done
rm -rf "$work"
"$TARGET/bin/nvcc" --version | tail -1
