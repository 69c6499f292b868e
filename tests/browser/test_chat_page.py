"""A person in a real headless Chromium: the chat page (on tokenwire.js) sends, streams Markdown,
sanitizes what the model writes, survives an edge restart, a worker crash and a reload, stops a
generation and shows tool calls.

Debian's chromium, driven by Playwright with the system executable (no browser download).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from playwright.async_api import Browser, Page, Route, async_playwright

from api.app import create_app
from tests.fixtures.asgi_server import free_port, serve_edge
from tests.fixtures.pipeline import (
    WorkerProcess,
    edge_serving,
    pipeline_settings_for,
    start_worker,
)
from tests.fixtures.waiting import eventually_true
from tokenwire.settings import Settings
from tokenwire.simulator import (
    expected_reasoning,
    expected_refusal,
    expected_text,
    expected_tool_calls,
)
from tokenwire.topics import ensure_core_topics

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
    # Playwright's wait_for_function evaluates its predicate with eval(), which the page's
    # Content-Security-Policy forbids; the sanitizing test keeps the policy (strict_page).
    context = await browser.new_context(bypass_csp=True)
    page = await context.new_page()
    yield page
    await context.close()


@pytest.fixture
async def strict_page(browser: Browser) -> AsyncIterator[Page]:
    """A page with its Content-Security-Policy enforced, as a person's browser has it."""
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
    # Rendered as Markdown: one paragraph (the simulator's words hold "<tag>", "a&b", quotes
    # and a backslash, all shown as written).
    assert await page.locator("#answer .text > p").count() == 1
    assert await page.get_attribute("#status", "data-state") == "done"


async def test_an_edge_restart_mid_stream_is_resumed_by_tokenwire_js_with_exact_text(
    worker: WorkerProcess, pipeline_settings: Settings, page: Page
) -> None:
    prompt = f"[[sim: tokens=120 tps=40]] a long answer please {uuid.uuid4().hex}"
    port = free_port()
    await page.add_init_script(STATUS_RECORDER)

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
    states = await page.evaluate("window.statusStates")
    assert states.index("live") < states.index("reconnecting") < states.index("resumed")

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
    # Pretty JSON, as the person reads it.
    arguments = await cards.locator(".tool-arguments").text_content() or ""
    pretty = json.dumps(json.loads(expected["function"]["arguments"]), indent=2,
                        ensure_ascii=False)
    assert arguments == pretty
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


async def test_a_reload_mid_answer_re_attaches_and_ends_with_the_exact_text(
    worker: WorkerProcess, edge_url: str, page: Page
) -> None:
    marker = uuid.uuid4().hex
    prompt = f"[[sim: tokens=120 tps=40]] reload me {marker}"
    await page.add_init_script(STATUS_RECORDER)

    await ask(page, edge_url, prompt)
    await page.wait_for_function(
        "document.querySelector('#answer .text')?.textContent.length > 10", timeout=30_000)
    await page.reload()
    await page.wait_for_selector("#answer[data-state='done']", timeout=60_000)

    first = [{"role": "user", "content": prompt}]
    assert await page.text_content("#answer") == expected_text(first)
    assert await page.locator(".turn.user").all_text_contents() == [prompt]
    assert "resumed" in await page.evaluate("window.statusStates")

    # The session outlived the reload: a follow-up goes into it, with the conversation so far.
    follow_up = f"and then? {marker}"
    await page.fill("#prompt", follow_up)
    await page.click("#send")
    await page.wait_for_function(
        "document.querySelectorAll('.turn.assistant').length === 2"
        " && document.querySelector('#answer').dataset.state === 'done'", timeout=30_000)
    history = [*first, {"role": "assistant", "content": expected_text(first)},
               {"role": "user", "content": follow_up}]
    assert await page.text_content("#answer") == expected_text(history)
    assert await page.locator(".turn.assistant").count() == 2


HOSTILE = (
    'Hi <img src=x onerror="window.__pwned = 1"> and <script>window.__pwned = 2</script>\n\n'
    "[a link](javascript:window.__pwned=3) <a href=\"javascript:window.__pwned=4\">raw</a>"
    " <svg onload=\"window.__pwned=5\"></svg> **bold**\n\n"
    "```js\nconst x = 1 < 2 && \"<b>\";\n```\n"
)


def hostile_stream(url: str) -> str:
    """An SSE body, as the edge writes it, whose answer is the HOSTILE text."""
    query = parse_qs(urlparse(url).query)
    request_id, session_id = query["request_id"][0], urlparse(url).path.split("/")[3]
    base = {"request_id": request_id, "session_id": session_id, "attempt": 1,
            "schema_version": 2, "emitted_at": 0.0}
    events = [
        {**base, "type": "start", "seq": 0, "model": "sim", "accepted_at": 0.0},
        {**base, "type": "token", "seq": 1, "text": HOSTILE[:40], "received_at": 0.0},
        {**base, "type": "token", "seq": 2, "text": HOSTILE[40:], "received_at": 0.0},
        {**base, "type": "done", "seq": 3, "finish_reason": "stop", "tool_calls": [],
         "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
         "timings": {"accepted_at": 0.0, "finished_at": 0.0, "duration_s": 0.0}},
    ]
    return "retry: 1000\n\n" + "".join(
        f"id: 00000000000000aa-{i}\nevent: {e['type']}\ndata: {json.dumps(e)}\n\n"
        for i, e in enumerate(events)
    )


async def test_html_from_the_model_is_shown_as_text_and_never_runs(
    worker: WorkerProcess, edge_url: str, strict_page: Page
) -> None:
    # The simulator cannot be told what to say, so the page's stream of a real request is
    # answered with a hostile one (the fault injected; the page, its client and renderer real).
    page = strict_page

    async def answer_hostile(route: Route) -> None:
        await route.fulfill(status=200, body=hostile_stream(route.request.url),
                            headers={"content-type": "text/event-stream"})

    await page.route("**/v1/sessions/*/events*", answer_hostile)
    await ask(page, edge_url, f"say something nasty {uuid.uuid4().hex}")
    await page.wait_for_selector("#answer[data-state='done']", timeout=30_000)
    # What the model wrote, as Markdown: bold, a code block, a paragraph per block.
    assert await page.text_content("#answer strong") == "bold"
    assert await page.text_content("#answer pre > code.language-js") == (
        'const x = 1 < 2 && "<b>";\n'
    )
    # Its HTML is text on screen, not elements.
    text = await page.text_content("#answer .text") or ""
    assert '<img src=x onerror="window.__pwned = 1">' in text
    assert "<script>window.__pwned = 2</script>" in text
    for selector in ("img", "script", "svg", "b", "[onerror]", "[onload]", "a[href^='javascript']"):
        assert await page.locator(f"#answer {selector}").count() == 0, selector
    [link] = await page.locator("#answer a").all()
    assert await link.text_content() == "a link"
    # Nothing it wrote ran (an <img src=x> would have failed to load by the time done showed).
    await page.wait_for_load_state("networkidle")
    assert await page.evaluate("typeof window.__pwned") == "undefined"


async def test_a_worker_crash_mid_answer_ends_with_the_exact_text(
    kafka_bootstrap: str, simulator_url: str, session_layout: str, worker_logs: Path,
    exit_stack: contextlib.AsyncExitStack, page: Page,
) -> None:
    tag = f"brc{uuid.uuid4().hex[:8]}"
    settings = pipeline_settings_for(kafka_bootstrap, simulator_url, tag, requests_partitions=1,
                                     session_layout=session_layout)
    await ensure_core_topics(settings)
    edge_url = await exit_stack.enter_async_context(edge_serving(settings))
    first = await start_worker(settings, worker_logs)
    exit_stack.callback(first.stop)
    prompt = f"[[sim: tokens=120 tps=40]] survive a crash {tag}"
    await page.add_init_script(STATUS_RECORDER)

    await ask(page, edge_url, prompt)
    await page.wait_for_function(
        "document.querySelector('#answer .text')?.textContent.length > 10", timeout=30_000)
    first.kill_hard()
    second = await start_worker(settings, worker_logs)
    exit_stack.callback(second.stop)
    await page.wait_for_selector("#answer[data-state='done']", timeout=90_000)

    assert await page.text_content("#answer") == expected_text(
        [{"role": "user", "content": prompt}])
    # The new worker's attempt replaced the dead one's text (the page showed the retry).
    assert "retrying" in await page.evaluate("window.statusStates")
