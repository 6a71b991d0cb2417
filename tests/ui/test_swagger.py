"""Swagger UI in headless Chromium: every operation listed, and "Try it out" on /api/generate answers 200."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.server import ServerProcess
from tests.ui.test_playground import Page

pytestmark = pytest.mark.model

METHODS = {"get", "post", "put", "patch", "delete"}


def test_every_operation_is_listed_and_generate_can_be_tried(browser: Any, ui_server: ServerProcess) -> None:
    spec = httpx.get(ui_server.url + "/openapi.json", timeout=10).json()
    operations = {(method, path) for path, item in spec["paths"].items() for method in item if method in METHODS}
    tab = Page(browser, ui_server.url)
    try:
        page = tab.page
        page.goto("/swagger-ui")
        page.locator(".opblock").first.wait_for()
        listed = set()
        for block in page.locator(".opblock").all():
            method = block.locator(".opblock-summary-method").inner_text().lower()
            path = block.locator(".opblock-summary-path").get_attribute("data-path")
            listed.add((method, path))
        assert listed == operations

        generate = page.locator(".opblock-post").filter(
            has=page.locator('.opblock-summary-path[data-path="/api/generate"]')
        )
        generate.locator(".opblock-summary").click()
        generate.locator(".try-out__btn").click()
        generate.locator("textarea.body-param__text").fill(json.dumps({"prompt": "Hello", "max_tokens": 4}))
        generate.locator(".execute").click()
        status = generate.locator(".live-responses-table tbody .response-col_status").first
        status.wait_for()
        assert status.inner_text().strip() == "200"
        body = json.loads(generate.locator(".live-responses-table tbody .microlight").first.inner_text())
        assert isinstance(body["text"], str) and body["usage"]["completion_tokens"] >= 1
        outside = [url for url in tab.requests if not url.startswith((ui_server.url + "/", "data:"))]
        assert outside == [], outside
    finally:
        tab.close()
