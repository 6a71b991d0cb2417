#!/bin/sh
# Debian/Ubuntu packages for one stage of an image (Dockerfile, Dockerfile.cuda):
#   build          compilers for llama-cpp-python, which builds llama.cpp from source
#   runtime        the shared libraries llama.cpp links (OpenMP, libstdc++)
#   cuda-build     build + Python 3.12 with venv on the CUDA base (Ubuntu 24.04 has no other Python)
#   cuda-runtime   runtime + Python 3.12 on the CUDA base
set -eu
case "${1:-}" in
    build) packages="build-essential cmake" ;;
    runtime) packages="libgomp1 libstdc++6" ;;
    cuda-build) packages="build-essential cmake python3 python3-venv python3-dev" ;;
    cuda-runtime) packages="libgomp1 libstdc++6 python3 python3-venv" ;;
    *) echo "usage: $0 build|runtime|cuda-build|cuda-runtime" >&2; exit 2 ;;
esac
export DEBIAN_FRONTEND=noninteractive
apt-get update
# shellcheck disable=SC2086  # one word per package
apt-get install --yes --no-install-recommends $packages
apt-get clean
rm -rf /var/lib/apt/lists/*
