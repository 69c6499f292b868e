"""A person in a real headless Chromium: the chat page sends, streams, survives a drop, stops a
generation and shows tool calls.

Debian's chromium, driven by Playwright with the system executable (no browser download).
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright

from api.app import create_app
from tests.fixtures.asgi_server import free_port, serve_edge
from tests.fixtures.pipeline import WorkerProcess
from tests.fixtures.waiting import eventually_true
from tokenwire.settings import Settings
from tokenwire.simulator import (
    expected_reasoning,
    expected_refusal,
    expected_text,
    expected_tool_calls,
)

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

# Every state #status passes through, in window.statusStates (a retry shows only for a moment).
STATUS_RECORDER = """
window.statusStates = [];
document.addEventListener("DOMContentLoaded", () => {
  const status = document.getElementById("status");
  new MutationObserver(() => window.statusStates.push(status.dataset.state))
    .observe(status, { attributes: true, attributeFilter: ["data-state"] });
});
"""


async def closed_early(simulator_url: str, marker: str) -> list[dict[str, Any]]:
    """The simulator's record of streams a client closed before their end, for this prompt."""
    async with httpx.AsyncClient(timeout=10) as client:
        closed = (await client.get(f"{simulator_url}/v1/_sim/closed")).json()["closed"]
    return [entry for entry in closed if marker in entry["prompt"]]


async def test_stop_ends_the_partial_answer_with_a_cancelled_marker_and_closes_the_llm_stream(
    worker: WorkerProcess, edge_url: str, simulator_url: str, page: Page
) -> None:
    marker = uuid.uuid4().hex
    prompt = f"[[sim: tokens=400 tps=20]] {marker} a long slow answer please"

    await ask(page, edge_url, prompt)
    await page.wait_for_function(
        "document.querySelector('#answer .text')?.textContent.length > 10", timeout=30_000)
    assert await page.is_visible("#stop")
    await page.click("#stop")
    await page.wait_for_selector("#answer[data-state='done']", timeout=30_000)

    assert await page.get_attribute("#answer", "data-finish-reason") == "cancelled"
    partial = await page.text_content("#answer .text") or ""
    full = expected_text([{"role": "user", "content": prompt}])
    assert full.startswith(partial) and 10 < len(partial) < len(full)
    # The answer reads: the partial text, then the marker, and nothing after it.
    assert await page.text_content("#answer") == partial + "[stopped]"
    last = await page.evaluate("document.querySelector('#answer').lastElementChild.className")
    assert last == "cancelled"
    assert await page.is_hidden("#stop")

    # The worker closed its upstream stream: the simulator saw the client leave early.
    async def closed() -> bool:
        return bool(await closed_early(simulator_url, marker))

    await eventually_true(closed, timeout_s=30)
    [entry] = await closed_early(simulator_url, marker)
    assert entry["tokens_sent"] < 400


async def test_a_tool_call_answer_renders_a_card_with_its_name_and_arguments(
    worker: WorkerProcess, edge_url: str, page: Page
) -> None:
    prompt = f'[[sim: tool=get_weather args={{"city":"Paris"}}]] weather {uuid.uuid4().hex}'

    await ask(page, edge_url, prompt)
    await page.wait_for_selector("#answer[data-state='done']", timeout=30_000)

    [expected] = expected_tool_calls([{"role": "user", "content": prompt}])
    assert await page.get_attribute("#answer", "data-finish-reason") == "tool_calls"
    cards = page.locator("#answer .tool-call")
    assert await cards.count() == 1
    assert await cards.locator(".tool-name").text_content() == "get_weather"
    arguments = await cards.locator(".tool-arguments").text_content() or ""
    assert arguments == expected["function"]["arguments"]
    assert json.loads(arguments) == {"city": "Paris"}
    assert await cards.get_attribute("data-call-id") == expected["id"]


async def test_reasoning_and_a_refusal_render_and_a_retry_drops_the_cut_attempt(
    worker: WorkerProcess, edge_url: str, page: Page
) -> None:
    # The first call is cut inside the reasoning: the worker retries, and the page must show
    # the second attempt's reasoning once, not the first attempt's pieces before it.
    prompt = f"[[sim: reasoning=8 refusal=1 cut_after=4 tps=20]] {uuid.uuid4().hex}"
    await page.add_init_script(STATUS_RECORDER)

    await ask(page, edge_url, prompt)
    await page.wait_for_selector("#answer[data-state='done']", timeout=30_000)

    assert "retrying" in await page.evaluate("window.statusStates")
    messages = [{"role": "user", "content": prompt}]
    assert await page.text_content("#answer .reasoning .reasoning-text") == expected_reasoning(
        messages
    )
    # Collapsed until the reader opens it.
    assert await page.get_attribute("#answer details.reasoning", "open") is None
    assert await page.text_content("#answer .refusal") == expected_refusal(messages)
    assert await page.locator("#answer .text").count() == 0
