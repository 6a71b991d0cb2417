#!/usr/bin/env bash
# On the lent GPU machine: build llama-cpp-python with CUDA (the build Dockerfile.cuda does), from a carried
# tarball split into chunks that earlier calls copied into /tmp/cc (`mkdir -p /tmp/cc && cp .carry/cuda/c.*
# /tmp/cc/` in each call that carries one): the CUDA 13 compiler and headers from NVIDIA's pip wheels (as
# scripts/image/cuda-toolchain.sh lays them out), the llama-cpp-python sdist without its docs, models and other
# backends, cmake/ninja/scikit-build-core wheels; for the H200 only (sm_90). Installs into /tmp/llcuda;
# libcublas comes from the image's nvidia-cublas wheel, as in the image.
#   bench/gpu/build_llama_cuda.sh [JOBS]   (~4 min on 32 cores)
set -euo pipefail
jobs=${1:-$(nproc)}
mkdir -p /tmp/cb && cd /tmp/cb
[[ -d cuda ]] || cat /tmp/cc/c.* | xz -dc | tar -x
python3 -m pip install -q --no-index --no-deps --target /tmp/cb/tools wheels/*.whl
site=$(python3 -c "import nvidia, os; print(os.path.dirname(next(iter(nvidia.__path__))))")
for lib in libcublas.so libcublasLt.so; do ln -sfn "$site/nvidia/cu13/lib/$lib.13" "cuda/lib/$lib"; done
export PATH=/tmp/cb/cuda/bin:/tmp/cb/tools/bin:$PATH PYTHONPATH=/tmp/cb/tools CUDACXX=/tmp/cb/cuda/bin/nvcc
export CMAKE_BUILD_PARALLEL_LEVEL=$jobs CMAKE_GENERATOR=Ninja
export CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_CUDA_NO_VMM=ON -DLLAVA_BUILD=OFF \
  -DCUDAToolkit_ROOT=/tmp/cb/cuda -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
started=$(date +%s)
python3 -m pip wheel -q --no-build-isolation --no-deps -w /tmp/cb/dist src/llama_cpp_python-*
# diskcache: a dependency of llama-cpp-python that the image and the payload lack (carried beside the chunks).
python3 -m pip install -q --no-index --no-deps --target /tmp/llcuda /tmp/cb/dist/llama_cpp_python-*.whl /tmp/cc/*.whl
echo "built llama-cpp-python with CUDA in $(( $(date +%s) - started )) s"
LD_LIBRARY_PATH=$site/nvidia/cu13/lib PYTHONPATH=/tmp/llcuda python3 -c \
  "import llama_cpp; print('gpu offload:', llama_cpp.llama_supports_gpu_offload())"
