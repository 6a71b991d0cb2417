"""GET /api/llms, the probes, /metrics, and the self-hosted Swagger UI and OpenAPI document."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.model


async def test_llms_lists_the_embedded_model(client) -> None:
    body = (await client.get("/api/llms")).json()
    [model] = body["models"]
    assert model["id"] == "smollm2-135m-instruct"
    assert model["backend"] == "llamacpp"
    assert "GGUF" in model["backend_reason"]
    assert model["format"] == "gguf"
    assert model["context_length"] == 1024
    assert model["state"] == "loaded"
    assert model["default"] is True


async def test_probes_when_ready(client) -> None:
    assert (await client.get("/health/live")).json() == {"status": "alive", "reason": None}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


async def test_metrics_count_requests_by_route_and_status(client) -> None:
    await client.post("/api/generate", json={"prompt": "Hi", "max_tokens": 1})
    await client.post("/api/generate", json={"prompt": "Hi", "model": "nope/nope"})
    text = (await client.get("/metrics")).text
    assert 'http_requests_total{method="POST",route="/api/generate",status="200"}' in text
    assert 'http_requests_total{method="POST",route="/api/generate",status="404"}' in text
    assert 'http_request_duration_seconds_bucket{le="0.005",method="POST",route="/api/generate"}' in text


async def test_swagger_ui_is_served_without_a_cdn(client) -> None:
    page = await client.get("/swagger-ui")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower() and "unpkg" not in page.text.lower()
    assert "/swagger-ui/assets/swagger-ui-bundle.js" in page.text
    bundle = await client.get("/swagger-ui/assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.content) > 1_000_000
    assert b'"5.35.0"' in bundle.content  # Swagger UI 5.x: 4.x cannot render OpenAPI 3.1
    css = await client.get("/swagger-ui/assets/swagger-ui.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


async def test_openapi_document_describes_every_endpoint_and_error(client) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    paths = spec["paths"]
    for path in (
        "/api/generate",
        "/api/generate/stream",
        "/api/chat",
        "/api/chat/stream",
        "/api/llms",
        "/health/live",
        "/health/ready",
        "/metrics",
    ):
        assert path in paths, path
    generate = paths["/api/generate"]["post"]
    assert {"400", "404", "413", "422", "429", "503", "504"} <= set(generate["responses"])
    schemas = spec["components"]["schemas"]
    assert "ErrorResponse" in schemas and "GenerateRequest" in schemas and "ChatRequest" in schemas
    assert "max_tokens" in schemas["GenerateRequest"]["properties"]
