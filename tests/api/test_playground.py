"""GET / serves the playground with a strict CSP; LLM_UI_ENABLED=false turns it off; its files need no key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from llm_inference.api.playground import UI_DIR
from llm_inference.app import create_app
from tests.conftest import make_settings

NO_MODEL = {"LLM_ALLOWED_MODELS": "/nonexistent/model.gguf"}


@pytest.mark.model
async def test_page_and_files_carry_a_csp_without_inline_script_or_other_origins(client) -> None:
    page = await client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self';" in csp and "connect-src 'self'" in csp
    assert "unsafe-inline" not in csp and "http" not in csp
    # Relative: the page also works behind a proxy that strips a prefix (under a known one: test_embedding.py).
    assert '<script type="module" src="./ui/app.js"></script>' in page.text
    assert "<script>" not in page.text and "style=" not in page.text and "http" not in page.text
    for path in ("/ui/app.js", "/ui/style.css", "/ui/vendor/marked.esm.js", "/ui/vendor/purify.es.mjs"):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-security-policy"] == csp
    assert (await client.get("/ui/app.js")).headers["content-type"].startswith("text/javascript")
    # Swagger UI and the document keep their paths (and no CSP, which its inline script would break).
    swagger = await client.get("/swagger-ui")
    assert swagger.status_code == 200 and "content-security-policy" not in swagger.headers
    assert (await client.get("/openapi.json")).json()["openapi"].startswith("3.1")


def test_vendored_libraries_are_pinned_with_their_licenses() -> None:
    vendor = UI_DIR / "vendor"
    manifest = json.loads((vendor / "MANIFEST.json").read_text())
    assert set(manifest) == {"marked", "dompurify"}
    for entry in manifest.values():
        for name in entry["files"]:
            assert (vendor / name).is_file(), name
        assert any("LICENSE" in name for name in entry["files"])
    assert f"marked v{manifest['marked']['version']}" in (vendor / "marked.esm.js").read_text()[:200]
    assert f"DOMPurify {manifest['dompurify']['version']}" in (vendor / "purify.es.mjs").read_text()[:200]


async def test_disabled_ui_is_a_404() -> None:
    async with AsyncTestClient(create_app(make_settings(LLM_UI_ENABLED="false", **NO_MODEL))) as client:
        assert (await client.get("/")).status_code == 404
        assert (await client.get("/ui/app.js")).status_code == 404
        assert (await client.get("/swagger-ui")).status_code == 200


async def test_with_keys_the_page_loads_without_one_and_the_api_still_asks() -> None:
    async with AsyncTestClient(create_app(make_settings(LLM_API_KEYS="k" * 24, **NO_MODEL))) as client:
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/ui/app.js")).status_code == 200
        assert (await client.get("/api/llms")).status_code == 401
        assert (await client.get("/uix")).status_code == 401  # "/" and "/ui" are not prefixes of every path


def test_ui_directory_ships_in_the_package() -> None:
    package = Path(__import__("llm_inference").__file__).parent
    assert package / "ui" == UI_DIR
    assert {p.name for p in UI_DIR.iterdir()} >= {"index.html", "app.js", "style.css", "vendor"}
