"""One chat, one trace: spans across the edge (in this process, in-memory exporter) and a real
worker process (OTLP JSON file), linked through HTTP and Kafka headers; and nothing at all when
tracing is off (the default).

A traced worker and an untraced one run on topics of their own, each with its own edge, once for
the module (topic layout: the layouts share the headers' path, ``decode_entry``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from api.app import create_app
from tests.fixtures.asgi_server import serve_edge
from tests.fixtures.credentials import caller_headers
from tests.fixtures.kafka_reading import read_session_records, read_topic
from tests.fixtures.pipeline import WorkerProcess, pipeline_settings_for, start_worker
from tests.fixtures.sse_client import read_session
from tests.fixtures.tracing import TraceCapture, worker_trace_env
from tests.fixtures.waiting import eventually
from tests.pipeline.conftest import user_message
from tokenwire import tracing
from tokenwire.settings import Settings
from tokenwire.topics import ensure_core_topics
from tokenwire.trace_file import read_spans

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@dataclass(frozen=True)
class Node:
    """A span, from either exporter, as the assertions need it."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Stack:
    settings: Settings
    edge_url: str
    worker: WorkerProcess
    trace_file: Path | None
    capture: TraceCapture

    def worker_spans(self) -> list[Node]:
        if self.trace_file is None or not self.trace_file.exists():
            return []
        return [
            Node(s.name, s.trace_id, s.span_id, s.parent_span_id or None, s.attributes)
            for s in read_spans([self.trace_file])
        ]

    def edge_spans(self) -> list[Node]:
        return [
            Node(
                s.name, f"{s.context.trace_id:032x}", f"{s.context.span_id:016x}",
                f"{s.parent.span_id:016x}" if s.parent is not None else None,
                dict(s.attributes or {}),
            )
            for s in self.capture.finished()
        ]  # fmt: skip

    async def post(self, body: dict[str, Any], path: str = "/v1/chat",
                   headers: dict[str, str] | None = None) -> httpx.Response:
        async with httpx.AsyncClient(timeout=60) as client:
            return await client.post(
                f"{self.edge_url}{path}", json=body,
                headers=caller_headers(body.get("user_id", "tracer")) | (headers or {}),
            )  # fmt: skip

    async def chat(self, text: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        """POST a chat and read its stream to the end, as a browser does."""
        chat = (await self.post({"user_id": "tracer", "messages": user_message(text)},
                                headers=headers)).json()
        await read_session(self.edge_url, chat["session_id"], chat["stream_token"],
                           request_id=chat["request_id"])
        return chat  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
async def stacks(
    kafka_bootstrap: str, simulator_url: str, trace_capture: TraceCapture,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Stack, Stack]]:  # fmt: skip
    tag = f"tr{uuid.uuid4().hex[:8]}"
    traced = pipeline_settings_for(kafka_bootstrap, simulator_url, tag)
    quiet = pipeline_settings_for(kafka_bootstrap, simulator_url, f"{tag}q")
    await asyncio.gather(ensure_core_topics(traced), ensure_core_topics(quiet))
    logs = tmp_path_factory.mktemp("tracing")
    trace_file = logs / "worker-spans.jsonl"
    workers = await asyncio.gather(
        start_worker(traced, logs, worker_trace_env(trace_file)), start_worker(quiet, logs)
    )
    with trace_capture.tracing_on():  # the traced edge is made while tracing is on
        traced_app = create_app(traced)
    quiet_app = create_app(quiet)
    try:
        async with serve_edge(traced_app) as traced_url, serve_edge(quiet_app) as quiet_url:
            yield (
                Stack(traced, traced_url, workers[0], trace_file, trace_capture),
                Stack(quiet, quiet_url, workers[1], None, trace_capture),
            )
    finally:
        for worker in workers:
            worker.stop()


@pytest.fixture
def traced(stacks: tuple[Stack, Stack], spans: TraceCapture) -> Iterator[Stack]:
    with spans.tracing_on():
        yield stacks[0]


@pytest.fixture
def untraced(stacks: tuple[Stack, Stack], spans: TraceCapture) -> Stack:
    return stacks[1]


def _one(spans: list[Node], name: str, **attributes: Any) -> Node:
    found = [s for s in spans if s.name == name
             and all(s.attributes.get(k) == v for k, v in attributes.items())]
    assert len(found) == 1, f"{name} {attributes}: {found}"
    return found[0]


async def _worker_trace(stack: Stack, trace_id: str, *, until: str = tracing.REQUEST
                        ) -> list[Node]:
    """The worker's spans of ``trace_id`` once its ``until`` span is exported (a request's
    spans end before or with it, apart from the last write batch: waited for too)."""
    spans: list[Node] = []

    def arrived() -> bool:
        spans[:] = [s for s in stack.worker_spans() if s.trace_id == trace_id]
        names = [s.name for s in spans]
        return until in names and (until != tracing.REQUEST or tracing.SESSION_WRITE in names)

    with contextlib.suppress(TimeoutError):
        await eventually(arrived, timeout_s=30)
    assert arrived(), f"worker spans of {trace_id}: {[s.name for s in spans]}\n" + (
        stack.worker.log_tail()
    )
    return spans


async def test_one_chat_is_one_trace_across_edge_and_worker(traced: Stack) -> None:
    chat = await traced.chat(f"{uuid.uuid4().hex} tell me")
    rid = chat["request_id"]

    edge = traced.edge_spans()
    ingress = _one(edge, tracing.INGRESS, **{"tokenwire.request_id": rid})
    assert ingress.parent_id is None and ingress.attributes["http.response.status_code"] == 202
    publish = _one(edge, tracing.PUBLISH)
    assert (publish.trace_id, publish.parent_id) == (ingress.trace_id, ingress.span_id)

    worker = await _worker_trace(traced, ingress.trace_id)
    queue_wait = _one(worker, tracing.QUEUE_WAIT)
    request = _one(worker, tracing.REQUEST, **{"tokenwire.request_id": rid})
    assert queue_wait.parent_id == request.parent_id == publish.span_id
    assert request.attributes["tokenwire.finish_reason"] == "stop"
    attempt = _one(worker, tracing.ATTEMPT)
    assert attempt.parent_id == request.span_id and attempt.attributes["tokenwire.attempt"] == 1
    llm = _one(worker, tracing.LLM_CALL)
    assert llm.parent_id == attempt.span_id
    assert llm.attributes["llm.output_chunks"] > 0
    assert "llm.time_to_first_chunk_ms" in llm.attributes
    batches = [s for s in worker if s.name == tracing.SESSION_WRITE]
    records = await read_session_records(traced.settings, chat["session_id"])
    assert {b.parent_id for b in batches} == {request.span_id}
    assert sum(b.attributes["tokenwire.session.events"] for b in batches) == len(records)
    assert all(b.attributes["tokenwire.session.bytes"] > 0 for b in batches)

    await eventually(lambda: bool(
        [s for s in traced.edge_spans() if s.name == tracing.DELIVERED]
    ))  # fmt: skip
    edge = traced.edge_spans()
    first, delivered = _one(edge, tracing.FIRST_TOKEN), _one(edge, tracing.DELIVERED)
    assert {first.trace_id, delivered.trace_id} == {ingress.trace_id}
    assert first.parent_id == delivered.parent_id == request.span_id
    assert len({s.trace_id for s in [*traced.edge_spans(), *worker]}) == 1


async def test_a_retry_is_a_second_attempt_span_with_its_reason(traced: Stack) -> None:
    chat = await traced.chat(f"[[sim: cut_after=3 tokens=12]] {uuid.uuid4().hex}")

    trace_id = _one(traced.edge_spans(), tracing.INGRESS).trace_id
    worker = await _worker_trace(traced, trace_id)
    request = _one(worker, tracing.REQUEST, **{"tokenwire.request_id": chat["request_id"]})
    first = _one(worker, tracing.ATTEMPT, **{"tokenwire.attempt": 1})
    second = _one(worker, tracing.ATTEMPT, **{"tokenwire.attempt": 2})
    assert first.parent_id == second.parent_id == request.span_id
    assert "retry.reason" not in first.attributes
    assert second.attributes["retry.reason"] == first.attributes["error.type"]
    assert len([s for s in worker if s.name == tracing.LLM_CALL]) == 2


async def test_an_incoming_traceparent_is_continued_through_an_adapter(traced: Stack) -> None:
    body = {"model": traced.settings.default_model, "messages": user_message(uuid.uuid4().hex),
            "stream": True}
    parent = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    answer = await traced.post(body, path="/v1/chat/completions", headers=parent)
    assert answer.status_code == 200, answer.text
    assert answer.text.rstrip().endswith("data: [DONE]")

    ingress = _one(traced.edge_spans(), tracing.INGRESS)
    assert (ingress.trace_id, ingress.parent_id) == (CALLER_TRACE, CALLER_SPAN)
    assert ingress.attributes["url.path"] == "/v1/chat/completions"
    worker = await _worker_trace(traced, CALLER_TRACE)
    request = _one(worker, tracing.REQUEST)
    assert request.attributes["tokenwire.finish_reason"] == "stop"
    # The adapter's stream delivered the answer: its delivery spans join the caller's trace.
    edge = traced.edge_spans()
    first, delivered = _one(edge, tracing.FIRST_TOKEN), _one(edge, tracing.DELIVERED)
    assert {first.trace_id, delivered.trace_id} == {CALLER_TRACE}
    assert first.parent_id == delivered.parent_id == request.span_id


async def test_a_record_produced_with_a_traceparent_continues_its_trace(traced: Stack) -> None:
    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    session_id = f"s-{uuid.uuid4().hex[:12]}"
    record = {"session_id": session_id, "user_id": "producer",
              "messages": user_message(uuid.uuid4().hex)}
    producer = AIOKafkaProducer(bootstrap_servers=traced.settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            traced.settings.requests_topic, json.dumps(record).encode(),
            key=session_id.encode(),
            headers=[("traceparent", f"00-{trace_id}-{span_id}-01".encode())],
        )  # fmt: skip
    finally:
        await producer.stop()

    worker = await _worker_trace(traced, trace_id)
    assert _one(worker, tracing.QUEUE_WAIT).parent_id == span_id
    request = _one(worker, tracing.REQUEST)
    assert request.parent_id == span_id and request.attributes["tokenwire.finish_reason"] == "stop"
    assert _one(worker, tracing.ATTEMPT).parent_id == request.span_id
    assert not traced.edge_spans(), "no edge took part"


async def test_tracing_off_makes_no_spans_and_no_trace_headers(untraced: Stack) -> None:
    assert not tracing.is_enabled()
    chat = await untraced.chat(uuid.uuid4().hex)

    requests = await read_topic(untraced.settings.kafka_bootstrap,
                                untraced.settings.requests_topic)
    sessions = await read_session_records(untraced.settings, chat["session_id"])
    ours = [r for r in requests if r.key == chat["session_id"].encode()]
    assert ours and sessions
    assert all(name != "traceparent" for r in [*ours, *sessions] for name, _ in r.headers)
    assert untraced.capture.finished() == []
