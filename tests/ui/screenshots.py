"""`make screenshots`: the docs' pictures of the playground (light, dark, phone width) and Swagger UI.

python -m tests.ui.screenshots docs/images  -- starts the service on the embedded model and Debian's chromium."""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.server import ServerProcess
from tests.ui.conftest import CHROMIUM, CHROMIUM_ARGS

QUESTION = "Write a Python function that reverses a string, with a short explanation."


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with ServerProcess(env={"LLM_CONTEXT_LENGTH": "2048"}) as server, sync_playwright() as playwright:
        server.wait_for("/health/ready", 200, timeout=180)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1100, "height": 760}, base_url=server.url)
        page = context.new_page()
        page.goto("/")
        page.wait_for_selector("#model option", state="attached")
        page.evaluate("document.getElementById('settings').open = true")
        page.fill("#system", "You are a helpful assistant.")
        page.fill("#temperature", "0")
        page.fill("#max_tokens", "200")
        page.fill("#prompt", QUESTION)
        page.press("#prompt", "Enter")
        page.locator(".msg.assistant .stats").filter(has_text="finish:").wait_for(timeout=120_000)
        page.screenshot(path=out / "playground-light.png")
        page.click("#theme")
        page.screenshot(path=out / "playground-dark.png")
        page.click("#theme")  # back to light for the phone picture
        phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, base_url=server.url)
        phone_page = phone.new_page()
        phone_page.goto("/")
        phone_page.evaluate(
            "c => localStorage.setItem('llm-playground.conversation', c)",
            page.evaluate("localStorage.getItem('llm-playground.conversation')"),
        )
        phone_page.reload()
        phone_page.wait_for_selector("#model option", state="attached")
        phone_page.screenshot(path=out / "playground-phone.png")
        page.goto("/swagger-ui")
        page.locator(".opblock").first.wait_for()
        page.screenshot(path=out / "swagger-ui.png")
        browser.close()
    for name in sorted(out.glob("*.png")):
        print(name)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images"))
