"""`helm test`: wait until the service is ready, then ask for one short generation. Standard library only.

Environment: BASE_URL, MAX_TOKENS, TIMEOUT_SECONDS; an API key from LLM_API_KEYS (the release's Secret)
or the first line of API_KEYS_FILE, when authentication is on.
"""

import json
import os
import ssl
import sys
import time
import urllib.request

base_url = os.environ["BASE_URL"].rstrip("/")
deadline = time.monotonic() + float(os.environ.get("TIMEOUT_SECONDS", "300"))
# The pod's certificate may not name the Service; this checks the service, not the PKI.
context = ssl._create_unverified_context()


def api_key() -> str | None:
    keys = os.environ.get("LLM_API_KEYS", "")
    if keys.strip():
        return keys.split(",")[0].strip()
    path = os.environ.get("API_KEYS_FILE")
    if path and os.path.exists(path):
        for line in open(path):
            if line.strip() and not line.startswith("#"):
                return line.strip()
    return None


def wait_ready() -> None:
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base_url + "/health/ready", timeout=5, context=context) as response:
                print(f"ready: {response.status} {response.read().decode()}")
                return
        except Exception as exc:  # 503 while loading, refused while starting
            last = exc
        time.sleep(2)
    sys.exit(f"not ready before the deadline: {last}")


def generate() -> None:
    body = {"prompt": "The capital of France is", "max_tokens": int(os.environ.get("MAX_TOKENS", "4")),
            "temperature": 0}
    headers = {"Content-Type": "application/json"}
    key = api_key()
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(base_url + "/api/generate", data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(request, timeout=max(deadline - time.monotonic(), 30), context=context) as response:
        answer = json.load(response)
    if not answer.get("text") or answer.get("usage", {}).get("completion_tokens", 0) < 1:
        sys.exit(f"empty generation: {answer}")
    print(f"generated {answer['usage']['completion_tokens']} tokens with {answer['model']}: {answer['text']!r}")


wait_ready()
generate()
