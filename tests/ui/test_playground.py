"""The playground in headless Chromium against a real Granian process on the embedded model."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.polling import wait_until
from tests.server import ServerProcess
from tests.ui.conftest import API_KEY

pytestmark = pytest.mark.model

# Recorded in the page before any of its scripts run; init scripts are not subject to the page's CSP.
WATCH_CSP = (
    "window.__cspViolations = [];"
    "document.addEventListener('securitypolicyviolation', e => window.__cspViolations.push(e.violatedDirective));"
)


class Page:
    """A browser tab that records console errors, page errors and every request URL."""

    def __init__(self, browser: Any, base_url: str, **context_args: Any) -> None:
        self.context = browser.new_context(base_url=base_url, **context_args)
        self.context.add_init_script(WATCH_CSP)
        self.page = self.context.new_page()
        self.page.set_default_timeout(30_000)
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def open(self, reload: bool = False) -> None:
        """Loads (or reloads) the playground, waits for its model list and opens its settings."""
        if reload:
            self.page.reload()
        else:
            self.page.goto("/")
        self.page.wait_for_selector("#model option", state="attached")
        self.page.evaluate("document.getElementById('settings').open = true")

    def assert_clean(self, allowed: tuple[str, ...] = ()) -> None:
        errors = [e for e in self.errors if not any(a in e for a in allowed)]
        assert errors == [], errors
        assert self.page.evaluate("window.__cspViolations") == []

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser: Any, ui_server: ServerProcess) -> Iterator[Page]:
    page = Page(browser, ui_server.url)
    page.open()
    yield page
    page.close()


def running_requests(server: ServerProcess) -> float:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    values = [float(m) for m in re.findall(r"^llm_num_requests_running(?:\{[^}]*\})? (\S+)$", text, re.M)]
    return sum(values)


def ask(page: Any, question: str) -> None:
    page.fill("#prompt", question)
    page.press("#prompt", "Enter")


def test_a_question_streams_an_answer_with_its_figures(tab: Page) -> None:
    page = tab.page
    assert page.locator("#model").input_value() == "smollm2-135m-instruct"
    page.fill("#max_tokens", "24")
    page.fill("#temperature", "0")
    page.fill("#prompt", "first line")
    page.press("#prompt", "Shift+Enter")  # a newline, not a send
    assert page.locator("#prompt").input_value() == "first line\n"
    page.fill("#prompt", "What is the capital of France?")
    page.press("#prompt", "Enter")
    page.wait_for_selector(".msg.user")
    assert page.locator(".msg.user .body").inner_text() == "What is the capital of France?"
    stats = page.locator(".msg.assistant .stats")
    stats.filter(has_text="finish:").wait_for()
    assert re.search(r"[\d.]+ tokens/s · first token \d+ ms · finish: (stop|length)", stats.inner_text())
    assert page.locator(".msg.assistant .body").inner_text().strip()
    assert page.locator("#send").is_enabled() and page.locator("#stop").is_disabled()
    tab.assert_clean()


def test_stop_aborts_the_request_and_the_server_frees_the_slot(tab: Page, ui_server: ServerProcess) -> None:
    page = tab.page
    page.fill("#max_tokens", "1000")
    page.fill("#temperature", "1")
    ask(page, "Write a very long story about a dragon, in many chapters.")
    page.locator(".msg.assistant .body").filter(has_text=re.compile(r"\S")).wait_for()
    busy = running_requests(ui_server)
    page.click("#stop")
    page.locator(".msg.assistant .stats").filter(has_text="finish:").wait_for()
    stats = page.locator(".msg.assistant .stats").inner_text()
    # A story of up to 1000 tokens at temperature 1: the model is still writing when Stop is pressed.
    assert busy == 1 and "finish: stopped" in stats, (busy, stats)
    wait_until(
        lambda: running_requests(ui_server),
        until=lambda running: running == 0,
        timeout=10,
        what="the server to stop decoding after Stop (llm_num_requests_running 0)",
        interval=0.1,
    )
    assert page.locator("#status").inner_text() == "Stopped."
    assert page.locator("#send").is_enabled()
    tab.assert_clean()


def test_the_conversation_survives_a_reload_and_can_be_cleared(tab: Page) -> None:
    page = tab.page
    page.fill("#max_tokens", "8")
    page.fill("#system", "Answer in one word.")
    page.locator("#system").dispatch_event("change")
    ask(page, "Name a colour.")
    page.locator(".msg.assistant .stats").filter(has_text="finish:").wait_for()
    answer = page.locator(".msg.assistant .body").inner_text()
    tab.open(reload=True)
    assert page.locator(".msg.user .body").inner_text() == "Name a colour."
    assert page.locator(".msg.assistant .body").inner_text() == answer
    assert page.locator("#system").input_value() == "Answer in one word."
    page.click("#clear")
    assert page.locator(".msg").count() == 0
    tab.open(reload=True)
    assert page.locator(".msg").count() == 0
    tab.assert_clean()


def test_answers_are_markdown_rendered_and_sanitized(tab: Page) -> None:
    """Model output is untrusted: a stored answer with HTML in it renders as Markdown, without the script."""
    page = tab.page
    conversation = [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": "**bold**\n\n```python\nprint(1)\n```\n\n<img src=x onerror=alert(1)><script>alert(2)</script>",
            "finish_reason": "stop",
        },
    ]
    page.evaluate("c => localStorage.setItem('llm-playground.conversation', JSON.stringify(c))", conversation)
    page.reload()
    body = page.locator(".msg.assistant .body")
    body.locator("strong").wait_for()
    assert body.locator("pre code").inner_text() == "print(1)\n"
    assert body.locator("pre button.copy").count() == 1
    html = body.inner_html()
    assert "<script" not in html and "<img" not in html and body.locator("img, script").count() == 0
    # The model's markup is shown as text, not run (nor parsed: Chromium would report its handler).
    assert "<img src=x onerror=alert(1)>" in body.inner_text()
    tab.assert_clean()


def test_errors_are_shown_plainly(tab: Page) -> None:
    page = tab.page
    page.fill("#max_tokens", "999999")
    ask(page, "Hello?")
    status = page.locator("#status")
    status.filter(has_text="max_tokens").wait_for()
    assert status.inner_text().startswith("422:")
    assert page.locator("#prompt").input_value() == "Hello?"  # the question is back in the box to retry
    # The browser itself reports the failed fetch's status; that is the one console error expected.
    tab.assert_clean(allowed=("status of 422",))


def test_phone_width_and_dark_theme(browser: Any, ui_server: ServerProcess) -> None:
    tab = Page(browser, ui_server.url, viewport={"width": 390, "height": 800})
    try:
        page = tab.page
        tab.open()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.click("#theme")
        assert page.evaluate("document.documentElement.dataset.theme") == "dark"
        page.reload()
        assert page.evaluate("document.documentElement.dataset.theme") == "dark"
        # Every control has an accessible name.
        for selector in ("#model", "#system", "#temperature", "#top_p", "#max_tokens", "#prompt"):
            assert page.locator(selector).evaluate("e => e.labels.length") >= 1, selector
        tab.assert_clean()
    finally:
        tab.close()


def test_with_api_keys_the_page_asks_for_a_key_then_works(browser: Any, keyed_server: ServerProcess) -> None:
    tab = Page(browser, keyed_server.url)
    try:
        page = tab.page
        page.goto("/")
        dialog = page.locator("#key-dialog")
        dialog.wait_for(state="visible")
        page.fill("#key", API_KEY)
        page.click("#key-save")
        tab.open(reload=True)  # the key stays for the tab's session
        page.fill("#max_tokens", "8")
        ask(page, "Hi!")
        page.locator(".msg.assistant .stats").filter(has_text="finish:").wait_for()
        assert page.evaluate("sessionStorage.getItem('llm-playground.api-key')") == API_KEY
        assert page.evaluate("localStorage.getItem('llm-playground.conversation')").find(API_KEY) == -1
        tab.assert_clean(allowed=("status of 401",))
    finally:
        tab.close()
