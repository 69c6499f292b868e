"""Exemplars (tokenwire/exemplars.py): a latency observation names the current trace, and the
worker's and the edge's /metrics serve it in OpenMetrics to a scraper that asks for that."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_classic
from starlette.applications import Starlette
from starlette.routing import Route

from agents.chat.runtime import ChatRuntime
from agents.metrics import WorkerMetrics
from agents.web import create_worker_web
from api.metrics import EdgeMetrics, metrics_endpoint
from tests.fixtures.credentials import caller_headers
from tests.fixtures.pipeline import (
    WorkerProcess,
    edge_serving,
    pipeline_settings_for,
    start_worker,
)
from tests.fixtures.sse_client import read_session
from tests.fixtures.tracing import TraceCapture, worker_trace_env
from tests.fixtures.waiting import eventually
from tokenwire.exemplars import observe
from tokenwire.settings import Settings
from tokenwire.topics import ensure_core_topics
from tokenwire.trace_file import read_spans

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736


def _span(sampled: bool = True, trace_id: int = TRACE_ID) -> Any:
    """A current span through the API alone (no provider): what the worker's request span is."""
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    context = SpanContext(trace_id=trace_id, span_id=0x00F067AA0BA902B7, is_remote=False,
                          trace_flags=flags)
    return trace.use_span(NonRecordingSpan(context))


@pytest.fixture
def worker_metrics() -> WorkerMetrics:
    return WorkerMetrics()


@pytest.fixture
async def worker_web(worker_metrics: WorkerMetrics) -> AsyncIterator[httpx.AsyncClient]:
    app = create_worker_web(ChatRuntime(Settings(), worker_metrics))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://worker") as client:
        yield client


async def _scrape(client: httpx.AsyncClient, accept: str | None) -> httpx.Response:
    headers = {"accept": accept} if accept is not None else {}
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200
    return response


def _exemplars(text: str, metric: str) -> list[tuple[str, float]]:
    """(trace_id, value) of every bucket exemplar of one histogram family."""
    family = next(f for f in parse_openmetrics(text) if f.name == metric)
    return [(s.exemplar.labels["trace_id"], s.exemplar.value)
            for s in family.samples if s.exemplar is not None]


async def test_observing_in_a_span_attaches_its_trace_id(
    worker_metrics: WorkerMetrics, worker_web: httpx.AsyncClient
) -> None:
    with _span():
        observe(worker_metrics.ttft, 0.2)
        observe(worker_metrics.token_latency, 0.004)
        observe(worker_metrics.request_duration.labels("completed"), 3.0)
    response = await _scrape(worker_web, OPENMETRICS)
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    hex_id = format(TRACE_ID, "032x")
    assert f'tokenwire_worker_ttft_seconds_bucket{{le="0.25"}} 1.0 # {{trace_id="{hex_id}"}} 0.2' \
        in response.text
    assert _exemplars(response.text, "tokenwire_worker_ttft_seconds") == [(hex_id, 0.2)]
    assert _exemplars(response.text, "tokenwire_worker_token_emit_seconds") == [(hex_id, 0.004)]
    assert _exemplars(response.text, "tokenwire_worker_request_duration_seconds") == [
        (hex_id, 3.0)
    ]


async def test_the_exemplar_names_the_trace_of_an_sdk_span(
    spans: TraceCapture, worker_metrics: WorkerMetrics, worker_web: httpx.AsyncClient
) -> None:
    with spans.provider.get_tracer(__name__).start_as_current_span("chat.request"):
        observe(worker_metrics.ttft, 0.7)
    (span,) = spans.named("chat.request")
    text = (await _scrape(worker_web, OPENMETRICS)).text
    assert _exemplars(text, "tokenwire_worker_ttft_seconds") == [
        (format(span.context.trace_id, "032x"), 0.7)
    ]


async def test_a_slower_request_in_another_trace_marks_its_own_bucket(
    worker_metrics: WorkerMetrics, worker_web: httpx.AsyncClient
) -> None:
    with _span():
        observe(worker_metrics.ttft, 0.2)
    with _span(trace_id=TRACE_ID + 1):
        observe(worker_metrics.ttft, 7.0)
    exemplars = _exemplars((await _scrape(worker_web, OPENMETRICS)).text,
                           "tokenwire_worker_ttft_seconds")
    assert exemplars == [(format(TRACE_ID, "032x"), 0.2), (format(TRACE_ID + 1, "032x"), 7.0)]


async def test_without_a_span_or_sampling_no_exemplar(
    worker_metrics: WorkerMetrics, worker_web: httpx.AsyncClient
) -> None:
    observe(worker_metrics.ttft, 0.2)
    with _span(sampled=False):  # an unsampled trace is in no backend: nothing to jump to
        observe(worker_metrics.ttft, 0.3)
    text = (await _scrape(worker_web, OPENMETRICS)).text
    assert _exemplars(text, "tokenwire_worker_ttft_seconds") == []
    assert "# {" not in text
    ttft = next(f for f in parse_openmetrics(text) if f.name == "tokenwire_worker_ttft_seconds")
    assert next(s.value for s in ttft.samples if s.name.endswith("_count")) == 2


@pytest.mark.parametrize("accept", [None, "*/*", "text/plain;version=0.0.4;q=1,*/*;q=0.1"])
async def test_the_classic_format_for_everyone_else(
    worker_metrics: WorkerMetrics, worker_web: httpx.AsyncClient, accept: str | None
) -> None:
    with _span():
        observe(worker_metrics.ttft, 0.2)
    response = await _scrape(worker_web, accept)
    assert response.headers["content-type"].startswith("text/plain")
    assert "# {" not in response.text and "# EOF" not in response.text
    families = {f.name: f for f in parse_classic(response.text)}
    ttft = families["tokenwire_worker_ttft_seconds"]
    assert next(s.value for s in ttft.samples if s.name.endswith("_count")) == 1


async def test_the_edge_serves_both_formats() -> None:
    metrics = EdgeMetrics()
    metrics.outcome("accepted")
    app = Starlette(routes=[Route("/metrics", metrics_endpoint(metrics))])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://edge") as client:
        open_metrics = await _scrape(client, OPENMETRICS)
        classic = await _scrape(client, None)
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert open_metrics.text.endswith("# EOF\n")
    requests = next(f for f in parse_openmetrics(open_metrics.text)
                    if f.name == "tokenwire_edge_requests")
    assert any(s.labels == {"outcome": "accepted"} and s.value == 1 for s in requests.samples)
    assert classic.headers["content-type"].startswith("text/plain")
    assert "tokenwire_edge_requests_total" in {
        s.name for f in parse_classic(classic.text) for s in f.samples
    }


# What Prometheus 2.55 sends with scrape_protocols [OpenMetricsText1.0.0, OpenMetricsText0.0.1,
# PrometheusText0.0.4] (scrape/manager.go acceptHeader).
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


async def test_prometheus_is_served_openmetrics(
    worker_metrics: WorkerMetrics, worker_web: httpx.AsyncClient
) -> None:
    with _span():
        observe(worker_metrics.ttft, 0.2)
    response = await _scrape(worker_web, PROMETHEUS_ACCEPT)
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert _exemplars(response.text, "tokenwire_worker_ttft_seconds")


def test_compose_prometheus_scrapes_openmetrics_and_stores_exemplars() -> None:
    root = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((root / "prometheus" / "prometheus.yml").read_text())
    assert config["global"]["scrape_protocols"][0] == "OpenMetricsText1.0.0"
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    assert "--enable-feature=exemplar-storage" in compose["services"]["prometheus"]["command"]


# --- a real worker, tracing to a file and logging JSON ---------------------------------------


@pytest.fixture(scope="module")
async def traced_pipeline(
    kafka_bootstrap: str, simulator_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Settings, WorkerProcess, Path, str]]:
    tag = f"twex{uuid.uuid4().hex[:8]}"
    settings = pipeline_settings_for(kafka_bootstrap, simulator_url, tag, log_format="json")
    await ensure_core_topics(settings)
    trace_file = tmp_path_factory.mktemp("exemplar-traces") / "worker.jsonl"
    worker = await start_worker(settings, tmp_path_factory.mktemp("exemplar-worker"),
                                worker_trace_env(trace_file))
    try:
        async with edge_serving(settings) as edge_url:
            yield settings, worker, trace_file, edge_url
    finally:
        worker.stop()


async def test_a_traced_worker_links_its_histograms_and_logs_to_the_chat_trace(
    traced_pipeline: tuple[Settings, WorkerProcess, Path, str]
) -> None:
    _, worker, trace_file, edge_url = traced_pipeline
    messages = [{"role": "user", "content": f"[[sim: fail=500x1]] {uuid.uuid4().hex}"}]
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(f"{edge_url}/v1/chat", json={"messages": messages},
                                     headers=caller_headers("exemplar-user"))
    chat = response.json()
    events = await read_session(edge_url, chat["session_id"], chat["stream_token"],
                                request_id=chat["request_id"])
    assert events[-1].type == "done"

    def request_trace_ids() -> set[str]:
        return {s.trace_id for s in read_spans([trace_file]) if s.name == "chat.request"
                and s.attributes.get("tokenwire.request_id") == chat["request_id"]}

    await eventually(lambda: trace_file.exists() and bool(request_trace_ids()))
    (trace_id,) = request_trace_ids()
    async with httpx.AsyncClient(base_url=worker.web_url) as client:
        text = (await _scrape(client, OPENMETRICS)).text
    for histogram in ("tokenwire_worker_ttft_seconds", "tokenwire_worker_token_emit_seconds",
                      "tokenwire_worker_request_duration_seconds"):
        assert trace_id in {t for t, _ in _exemplars(text, histogram)}, histogram
    retrying = [json.loads(line) for line in worker.log_path.read_text().splitlines()
                if chat["request_id"] in line and "retrying" in line]
    assert [(e["request_id"], e["attempt"], e["trace_id"]) for e in retrying] == [
        (chat["request_id"], 2, trace_id)
    ]
