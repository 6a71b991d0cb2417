"""Property-based fuzzing of the whole API from its own OpenAPI document, against a real Granian process.

schemathesis generates valid and invalid requests for every operation and checks each answer: never a 5xx,
a documented status, content type, headers and body schema, invalid data refused, valid data accepted, 401
without the API key, 405 with Allow for undocumented methods. Its JSON report gives the case count.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.polling import wait_until
from tests.server import ServerProcess

pytestmark = pytest.mark.model

KEY = "f" * 24 + "-fuzzing-key"
MIN_CASES = 1000
# Every response check schemathesis has; max_response_time is left out: timings are not tested here.
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "use_after_free",
    "ensure_resource_availability",
    "ignored_auth",
]


def http_requests(url: str, labels: str) -> float:
    """Requests the server has counted whose http_requests_total labels match the regex `labels`."""
    metrics = httpx.get(url + "/metrics", timeout=10).text
    counts = re.findall(rf"^http_requests_total\{{[^}}]*{labels}[^}}]*\}} (\S+)$", metrics, flags=re.M)
    return sum(float(count) for count in counts)


def answered_5xx(url: str) -> float:
    """Requests the server has answered with a 5xx so far, by its own HTTP metrics.

    The server counts a request just after its answer has gone out, so a client's last requests may not be
    counted yet when it has their answers. One more request is sent first and its count waited for: by then the
    requests answered before it, each counted as its answer went out, are counted too."""
    unmatched = 'route="unmatched"'
    before = http_requests(url, unmatched)
    httpx.get(url + "/no-such-route/the-count-is-up-to-date", timeout=10)
    wait_until(
        lambda: http_requests(url, unmatched),
        until=lambda count: count > before,
        timeout=60,
        what=f"the server to count one more request to an unmatched route ({before} before)",
    )
    return http_requests(url, r'status="5\d\d"')


def test_schemathesis_finds_no_server_error_and_no_departure_from_the_document(tmp_path: Path) -> None:
    env = {
        # Small generations keep a thousand cases to minutes: the fuzzing is about the HTTP surface.
        "LLM_MAX_TOKENS_LIMIT": "2",
        "LLM_DEFAULT_MAX_TOKENS": "2",
        # Room for a history of generated tool calls (an assistant turn may hold dozens of them).
        "LLM_CONTEXT_LENGTH": "4096",
        "LLM_MAX_REQUEST_BYTES": "65536",
        # Fuzz the access-control layers too, with a budget the fuzzer will not exhaust.
        "LLM_API_KEYS": KEY,
        "LLM_RATE_LIMIT_PER_MINUTE": "1000000",
    }
    report = tmp_path / "schemathesis.json"
    with ServerProcess(env, log_path=tmp_path / "server.log") as server:
        server.wait_for("/health/ready", 200)
        command = [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            server.url + "/openapi.json",
            "--checks",
            ",".join(CHECKS),
            "--header",
            f"Authorization: Bearer {KEY}",
            "--max-examples",
            os.environ.get("FUZZ_MAX_EXAMPLES", "120"),
            "--seed",
            os.environ.get("FUZZ_SEED", "20261122"),
            "--workers",
            "2",
            "--request-timeout",
            "120",
            "--suppress-health-check",
            "too_slow",
            "--report",
            "json",
            "--report-json-path",
            str(report),
        ]
        answered_5xx_before = answered_5xx(server.url)
        result = subprocess.run(command, capture_output=True, text=True, timeout=1800, cwd=tmp_path)
        answered_5xx_after = answered_5xx(server.url)
    summary = json.loads(report.read_text())
    assert result.returncode == 0, result.stdout[-6000:]
    assert summary["failures"] == [] and summary["errors"] == [], result.stdout[-6000:]
    assert summary["operations"]["tested"] == summary["operations"]["total"] >= 8, summary["operations"]
    assert summary["test_cases"]["generated"] >= MIN_CASES, summary["test_cases"]
    # The server's own count agrees: no request of the run was answered with a 5xx.
    assert answered_5xx_after == answered_5xx_before, (answered_5xx_before, answered_5xx_after)
    assert "Traceback" not in server.logs()
