"""A person in a real headless Chromium: the chat page sends, streams and survives a drop.

Debian's chromium, driven by Playwright with the system executable (no browser download).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, async_playwright

from api.app import create_app
from tests.fixtures.asgi_server import free_port, serve_edge
from tests.fixtures.pipeline import WorkerProcess
from tokenwire.settings import Settings
from tokenwire.simulator import expected_text

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is required (make test installs it)"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable,
                                                   args=CHROMIUM_FLAGS)
        yield browser
        await browser.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context()
    page = await context.new_page()
    yield page
    await context.close()


async def ask(page: Page, edge_url: str, prompt: str) -> None:
    await page.goto(f"{edge_url}/")
    await page.fill("#prompt", prompt)
    await page.click("#send")


async def test_a_message_sent_from_the_page_renders_the_exact_answer(
    worker: WorkerProcess, edge_url: str, page: Page
) -> None:
    prompt = f"Hello from the browser {uuid.uuid4().hex}"

    await ask(page, edge_url, prompt)
    await page.wait_for_selector("#answer[data-state='done']", timeout=30_000)

    answer = await page.text_content("#answer")
    assert answer == expected_text([{"role": "user", "content": prompt}])


async def test_an_edge_restart_mid_stream_is_resumed_by_eventsource_with_exact_text(
    worker: WorkerProcess, pipeline_settings: Settings, page: Page
) -> None:
    prompt = f"[[sim: tokens=120 tps=40]] a long answer please {uuid.uuid4().hex}"
    port = free_port()

    async with serve_edge(create_app(pipeline_settings), port=port) as edge_url:
        await ask(page, edge_url, prompt)
        await page.wait_for_function(
            "document.querySelector('#answer')?.textContent.length > 10", timeout=30_000)
    # The edge is gone mid-answer: every connection dropped. The browser keeps reconnecting.
    await page.wait_for_selector("#status[data-state='reconnecting']", timeout=15_000)
    async with serve_edge(create_app(pipeline_settings), port=port):
        await page.wait_for_selector("#answer[data-state='done']", timeout=60_000)

    answer = await page.text_content("#answer")
    assert answer == expected_text([{"role": "user", "content": prompt}])
