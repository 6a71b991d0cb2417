"""On the GPU: start this service with LLM_ENABLE_ISQ=true (fp8 on the fly), generate, report what loaded.

python bench/gpu/isq_check.py --model-dir DIR --out isq.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import httpx
from run_bench import OUR_PORT, start_ours, stop, wait_until


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    log = out.with_name("isq.log")
    url = f"http://127.0.0.1:{OUR_PORT}"
    process = start_ours(args.model_dir, log, LLM_ENABLE_ISQ="true", LLM_ISQ_TYPE="fp8")
    try:
        seconds = wait_until(url + "/health/ready", process, log)
        answer = httpx.post(
            url + "/api/generate",
            json={"prompt": "The capital of France is", "max_tokens": 12, "temperature": 0},
            timeout=60,
        ).json()
        report = {
            "ready_after_s": round(seconds, 1),
            "answer": answer,
            "models": httpx.get(url + "/api/llms").json()["models"],
            "model_info_metric": [
                line for line in httpx.get(url + "/metrics").text.splitlines() if line.startswith("llm_model_info")
            ],
        }
        out.write_text(json.dumps(report, indent=2))
        print(json.dumps(report))
    finally:
        stop(process)


if __name__ == "__main__":
    main()
