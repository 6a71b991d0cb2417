#!/usr/bin/env bash
# The GPU benchmarks as background jobs on the lent machine, run in the project's root after the payload has
# been unpacked into /tmp/pay (../shared/GPU.md; `. .carry/gpu/unpack.sh N` in the same command). A job
# outlives the device call that started it (setsid), so a run longer than one call's 10 minutes is polled:
#
#   bash bench/gpu/on_device.sh start JOB [run_bench.py options]   # returns at once
#   bash bench/gpu/on_device.sh wait JOB [SECONDS]                 # until done or SECONDS (default 540)
#
# `wait` prints the job's progress and copies its files (results JSON, PNG, server logs, run.log) into
# $OUT/JOB; `done` in there (with the exit status) marks a finished job. `wait` exits with the job's status
# once it has finished, 3 while it still runs, so `wait A 540 && start B` chains jobs. Jobs:
#   matrix-135m   SmolLM2-135M, the five workloads of issue 23 at 1/16/64/256 streams, 5 rounds a cell, + the
#                 offline engine (~20 min: `run_bench.py --dry-run` prints the plan)
#   llama8b-tp1   writes the random Llama-3-8B-shaped model, then 1024x256 at 1/16/64/256 (~13 min)
#   llama8b-tp2   the same at tensor parallel 2 (kind nvidia-h200-x2)
#   gguf-gpu      builds llama-cpp-python with CUDA (build_llama_cuda.sh), then the embedded GGUF on the GPU
#                 against the same build on the CPU (gguf_on_gpu.py)
# Carried py-spy wheels in .whl/ are installed; run_bench.py's --py-spy then samples the front ends.
set -euo pipefail
jobs=/tmp/bench-jobs
mode=${1:?usage: on_device.sh start|wait JOB ...}
job=${2:?usage: on_device.sh start|wait JOB ...}
dir=$jobs/$job

setup() {
  if compgen -G ".whl/*.whl" >/dev/null; then # py-spy, when carried
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  fi
  # The source tree runs from PYTHONPATH; importlib.metadata still has to find the distribution's version.
  version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
  mkdir -p "/tmp/site/llm_inference-$version.dist-info"
  printf 'Metadata-Version: 2.1\nName: llm-inference\nVersion: %s\n' "$version" \
    >"/tmp/site/llm_inference-$version.dist-info/METADATA"
  export PYTHONPATH=$PWD/src:/tmp/pay/site:/tmp/site VLLM_USE_FLASHINFER_SAMPLER=0 HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
  [[ -d /tmp/smol-hf ]] || python3 scripts/gguf_to_hf.py /tmp/smol-hf /tmp/pay/SmolLM2-135M-Instruct.Q4_1.gguf
}

run_job() { # in the background, from a snapshot of the tree (a later call may resync the checkout)
  shift 2
  cd "$dir/tree"
  setup
  spy=()
  [[ -x /tmp/site/bin/py-spy ]] && spy=(--py-spy /tmp/site/bin/py-spy)
  out=$dir/out
  case $job in
    matrix-135m)
      python3 bench/gpu/run_bench.py --model-dir /tmp/smol-hf --out "$out/gpu-matrix.json" "${spy[@]}" "$@"
      ;;
    llama8b-tp1 | llama8b-tp2)
      tp=${job#llama8b-tp}
      [[ -f /tmp/llama8b/config.json ]] ||
        python3 bench/gpu/make_random_model.py /tmp/llama8b --shape llama3-8b --seed 0 --tokenizer-from /tmp/smol-hf
      python3 bench/gpu/run_bench.py --model-dir /tmp/llama8b --out "$out/gpu-$job.json" \
        --model-name "Llama-3-8B shape, random bf16 weights (seed 0), SmolLM2 tokenizer" \
        --workloads 1024x256 --rates "llama3-8b-tp$tp" --tensor-parallel-size "$tp" \
        --gpu-memory-utilization 0.45 "${spy[@]}" "$@"
      ;;
    gguf-gpu)
      bash bench/gpu/build_llama_cuda.sh "${BUILD_JOBS:-16}" >"$out/build.log" 2>&1
      site=$(python3 -c "import nvidia, os; print(os.path.dirname(next(iter(nvidia.__path__))))")
      LD_LIBRARY_PATH=$site/nvidia/cu13/lib python3 bench/gpu/gguf_on_gpu.py \
        --gguf /tmp/pay/SmolLM2-135M-Instruct.Q4_1.gguf --out "$out/gguf-gpu.json" "$@"
      ;;
    *)
      echo "unknown job $job" >&2
      return 64
      ;;
  esac
  for result in "$out"/gpu-*.json; do
    [[ -f $result ]] || continue
    python3 bench/gpu/plot.py "$result" || true
  done
}

case $mode in
  start)
    if [[ ! -d /tmp/pay/site/vllm ]]; then
      echo "no payload in /tmp/pay: unpack it first (. .carry/gpu/unpack.sh N)" >&2
      exit 1
    fi
    if [[ -f $dir/pid ]] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      echo "$job is already running"
      exit 1
    fi
    rm -rf "$dir"
    mkdir -p "$dir/tree" "$dir/out"
    cp -r src bench scripts pyproject.toml "$dir/tree/"
    [[ -d .whl ]] && cp -r .whl "$dir/tree/"
    setsid nohup bash -c "bash '$dir/tree/bench/gpu/on_device.sh' __run $(printf '%q ' "$job" "${@:3}")
      echo \$? >'$dir/out/done'" >"$dir/out/run.log" 2>&1 </dev/null &
    echo $! >"$dir/pid"
    echo "started $job (pid $(cat "$dir/pid")); progress: bash bench/gpu/on_device.sh wait $job"
    ;;
  __run)
    run_job "$@"
    ;;
  wait)
    if [[ ! -d $dir/out ]]; then
      echo "no job $job here (started jobs: $(ls "$jobs" 2>/dev/null | tr '\n' ' '))" >&2
      exit 1
    fi
    deadline=$((SECONDS + ${3:-540}))
    mkdir -p "$OUT/$job"
    # Copied on every turn, so a call cut short (its limit, the session's device time) still brings back
    # the progress so far: run.log holds each finished cell's figures.
    while [[ ! -f $dir/out/done ]] && ((SECONDS < deadline)); do
      cp -r "$dir/out/." "$OUT/$job/"
      sleep 5
    done
    tail -n 40 "$dir/out/run.log"
    cp -r "$dir/out/." "$OUT/$job/"
    if [[ ! -f $dir/out/done ]]; then
      echo "$job still running"
      exit 3
    fi
    echo "$job finished with exit status $(cat "$dir/out/done")"
    exit "$(cat "$dir/out/done")"
    ;;
  *)
    echo "usage: on_device.sh start|wait JOB [options]" >&2
    exit 64
    ;;
esac
