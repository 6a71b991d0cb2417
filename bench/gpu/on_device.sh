#!/usr/bin/env bash
# The whole GPU benchmark in one device call, run in the project's root on the lent machine after the payload
# has been unpacked into /tmp/pay (../shared/GPU.md; `. .carry/gpu/unpack.sh N` in the same command). Needs
# py-spy's wheel in .whl/ (carried). Writes gpu.json, the servers' logs and py-spy samples under $OUT.
set -euo pipefail
if compgen -G ".whl/*.whl" >/dev/null; then  # py-spy, when carried
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
# The source tree runs from PYTHONPATH; importlib.metadata still has to find the distribution's version.
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
mkdir -p "/tmp/site/llm_inference-$version.dist-info"
printf 'Metadata-Version: 2.1\nName: llm-inference\nVersion: %s\n' "$version" \
  > "/tmp/site/llm_inference-$version.dist-info/METADATA"
export PYTHONPATH=$PWD/src:/tmp/pay/site:/tmp/site VLLM_USE_FLASHINFER_SAMPLER=0 HF_HUB_OFFLINE=1
[[ -d /tmp/smol-hf ]] || python3 scripts/gguf_to_hf.py /tmp/smol-hf /tmp/pay/SmolLM2-135M-Instruct.Q4_1.gguf
spy=(); [[ -x /tmp/site/bin/py-spy ]] && spy=(--py-spy /tmp/site/bin/py-spy)
python3 bench/gpu/run_bench.py --model-dir /tmp/smol-hf --out "$OUT/gpu.json" "${spy[@]}" "$@"
