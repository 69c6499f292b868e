"""Streaming sessions as a client process runs them: through the pipeline, or through the relay.

A pipeline session behaves like a browser tab: it posts its first request to ``POST /v1/chat``
(or publishes it to Kafka), opens one SSE stream for the session and keeps it open while it posts
the next requests; a dropped stream reconnects with ``Last-Event-ID`` as EventSource does. A relay
session opens one SSE response per request (there is no session to follow without a log).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from api.event_ids import Position, parse_position
from tokenwire.bench.records import RequestRecord
from tokenwire.bench.wire import HttpError, SseEvent, open_sse, path_with, post_json
from tokenwire.simulator import expected_tokens

log = logging.getLogger(__name__)

RECONNECT_DELAY_S = 0.1
MAX_CONNECT_FAILURES = 20


@dataclass(frozen=True)
class StreamJob:
    """What one client process runs; built by the orchestrator, sent as JSON."""

    mode: str  # "pipeline" | "relay"
    ingress: str  # "http" | "kafka" (pipeline only)
    host: str
    port: int
    tag: str
    # {"index", "delay_s", "user_id", "credential", "port"? (its edge), "session_id"?, "token"?}
    sessions: list[dict[str, Any]]
    requests_per_session: int
    tokens: int
    tps: float
    ttft_ms: float
    request_timeout_s: float
    kafka_bootstrap: str = ""
    requests_topic: str = ""
    # The worker coalesces: token events may carry several chunks.
    joined: bool = False


def prompt(job: StreamJob, session: int, index: int) -> list[dict[str, str]]:
    directive = f"[[sim: tokens={job.tokens} tps={job.tps:g} ttft_ms={job.ttft_ms:g}]]"
    return [{"role": "user", "content": f"bench {job.tag} s{session} r{index} {directive}"}]


@dataclass
class Outcome:
    """Everything a client process reports back."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    worker_ms: list[float] = field(default_factory=list)
    after_worker_ms: list[float] = field(default_factory=list)
    session_ids: list[str] = field(default_factory=list)
    # Pipeline: requests answered per edge port (str keys: this travels as JSON).
    requests_per_edge: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0
    id_violations: int = 0
    errors: list[str] = field(default_factory=list)

    def keep(self, record: RequestRecord, session: int, index: int, job: StreamJob) -> None:
        record.joined = job.joined
        summary = record.summary(session, index, job.ttft_ms)
        self.requests.append(summary)
        self.latencies_ms.extend(round(x, 3) for x in record.latencies_ms)
        self.worker_ms.extend(round(x, 3) for x in record.worker_ms)
        self.after_worker_ms.extend(round(x, 3) for x in record.after_worker_ms)
        if summary["error"] and len(self.errors) < 20:
            self.errors.append(f"s{session} r{index}: {summary['error']}")

    def failed(self, session: int, index: int, t0: float, error: str, job: StreamJob) -> None:
        record = RequestRecord(expected=expected_tokens(prompt(job, session, index)), t0=t0)
        record.error = error
        self.keep(record, session, index, job)


# --- pipeline ---------------------------------------------------------------------------


class ResumingStream:
    """One session's SSE stream, its events routed by request id, resumed with
    ``Last-Event-ID``: the id bookkeeping and the task that the bench's and the fault suite's
    clients share. Subclasses say where to connect (``_run``) and what a request's record is.
    """

    def __init__(self, session_id: str, token: str) -> None:
        self.path = path_with(f"/v1/sessions/{session_id}/events", {"token": token})
        # The last id as sent (what Last-Event-ID resends) and its parts: offsets are ordered
        # within one epoch (topic generation) only.
        self.last_id: str | None = None
        self._last_position: Position | None = None
        self.id_violations = 0
        self.reconnects = 0
        self.errors: list[str] = []
        self.connected = asyncio.Event()
        self._stopping = False
        self._conn: Any = None
        self._task: asyncio.Task[None] | None = None

    def record(self, request_id: str) -> Any:
        raise NotImplementedError

    def on_event(self, event: SseEvent) -> None:
        if event.id is not None:
            position = parse_position(event.id)
            last = self._last_position
            if position is None or (
                last is not None and position.epoch == last.epoch and position.offset <= last.offset
            ):
                self.id_violations += 1  # unreadable, a duplicate or a step back
            if position is not None:
                self.last_id, self._last_position = event.id, position
        data = json.loads(event.data)
        request_id = data.get("request_id")
        if isinstance(request_id, str):
            self.record(request_id).add(event.event, data, event.at)

    def on_comment(self, at: float) -> None:
        pass

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        if self._conn is not None:
            self._conn.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _headers(self) -> dict[str, str]:
        return {} if self.last_id is None else {"last-event-id": self.last_id}

    async def _run(self) -> None:
        raise NotImplementedError


class SessionStream(ResumingStream):
    """Reconnects to the same edge, like EventSource."""

    def __init__(self, host: str, port: int, session_id: str, token: str) -> None:
        super().__init__(session_id, token)
        self.host, self.port = host, port
        self.records: dict[str, RequestRecord] = {}

    def record(self, request_id: str) -> RequestRecord:
        record = self.records.get(request_id)
        if record is None:
            record = self.records[request_id] = RequestRecord()
        return record

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                self._conn = await open_sse(
                    self.host, self.port, self.path, self, headers=self._headers()
                )
            except (OSError, HttpError) as exc:
                failures += 1
                self.errors.append(f"connect: {exc!r}")
                if failures >= MAX_CONNECT_FAILURES:
                    for record in self.records.values():
                        record.error = record.error or f"stream unavailable: {exc!r}"
                        record.finished.set()
                    return
                await asyncio.sleep(RECONNECT_DELAY_S)
                continue
            failures = 0
            self.connected.set()
            await self._conn.closed
            if not self._stopping:
                self.reconnects += 1
                await asyncio.sleep(RECONNECT_DELAY_S)


async def pipeline_session(
    job: StreamJob, session: dict[str, Any], out: Outcome, producer: Any = None
) -> None:
    index, user = int(session["index"]), str(session["user_id"])
    port = int(session.get("port", job.port))
    session_id: str | None = session.get("session_id")
    token: str | None = session.get("token")
    credential: str = session["credential"]
    write_token: str | None = None
    stream: SessionStream | None = None
    await asyncio.sleep(float(session["delay_s"]))
    try:
        if job.ingress == "kafka":
            assert session_id is not None and token is not None
            stream = SessionStream(job.host, port, session_id, token)
            stream.start()
            await asyncio.wait_for(stream.connected.wait(), job.request_timeout_s)
        for r in range(job.requests_per_session):
            messages = prompt(job, index, r)
            expected = expected_tokens(messages)
            t0 = time.time()
            try:
                request_id, session_id, token, write_token = await _submit(
                    job, port, producer, user, messages, session_id,
                    (credential, token, write_token),
                )
            except (OSError, HttpError, TimeoutError) as exc:
                out.failed(index, r, t0, f"submit: {exc!r}", job)
                continue
            if stream is None:
                stream = SessionStream(job.host, port, session_id, token)
                stream.start()
            submitted_at = time.time()
            record = stream.record(request_id)
            record.t0, record.expected, record.submitted_at = t0, expected, submitted_at
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(record.finished.wait(), job.request_timeout_s)
            if not record.finished.is_set():
                record.error = "timed out waiting for the terminal event"
            out.keep(record, index, r, job)
            out.requests_per_edge[str(port)] = out.requests_per_edge.get(str(port), 0) + 1
    except TimeoutError:
        out.errors.append(f"s{index}: stream never connected")
    finally:
        if session_id is not None:
            out.session_ids.append(session_id)
        if stream is not None:
            await stream.stop()
            out.reconnects += stream.reconnects
            out.id_violations += stream.id_violations
            out.errors.extend(stream.errors[: max(0, 20 - len(out.errors))])


async def _submit(
    job: StreamJob, port: int, producer: Any, user: str, messages: list[dict[str, str]],
    session_id: str | None, tokens: tuple[str, str | None, str | None],
) -> tuple[str, str, str, str | None]:
    """Publish one request (to the edge at ``port``, or to Kafka); (request_id, session_id, read
    token, write token).

    ``tokens`` = (the caller's credential, the session's read token, its write token)."""
    credential, token, write_token = tokens
    if job.ingress == "kafka":
        assert session_id is not None and token is not None
        request_id = uuid.uuid4().hex
        body = {"request_id": request_id, "session_id": session_id, "user_id": user,
                "messages": messages}
        await producer.send_and_wait(job.requests_topic, json.dumps(body).encode(),
                                     key=session_id.encode())
        return request_id, session_id, token, None
    body: dict[str, Any] = {"user_id": user, "messages": messages}
    headers = {"authorization": f"Bearer {credential}"}
    if session_id is not None:
        body["session_id"] = session_id
        headers["x-stream-token"] = write_token or ""
    status, answer = await asyncio.wait_for(
        post_json(job.host, port, "/v1/chat", body, headers=headers), job.request_timeout_s
    )
    if status != 202:
        raise HttpError(status, json.dumps(answer).encode())
    return (
        answer["request_id"], answer["session_id"], answer["stream_token"], answer["write_token"]
    )


# --- relay ------------------------------------------------------------------------------


class _RelayReader:
    def __init__(self, record: RequestRecord) -> None:
        self.record = record

    def on_event(self, event: SseEvent) -> None:
        self.record.add(event.event, json.loads(event.data), event.at)

    def on_comment(self, at: float) -> None:
        pass


async def relay_session(job: StreamJob, session: dict[str, Any], out: Outcome) -> None:
    index = int(session["index"])
    await asyncio.sleep(float(session["delay_s"]))
    for r in range(job.requests_per_session):
        messages = prompt(job, index, r)
        record = RequestRecord(expected=expected_tokens(messages))
        path = path_with("/relay", {"prompt": messages[0]["content"]})
        record.t0 = time.time()
        try:
            conn = await open_sse(job.host, job.port, path, _RelayReader(record))
            try:
                await asyncio.wait_for(asyncio.shield(conn.closed), job.request_timeout_s)
            finally:
                conn.close()
        except (OSError, HttpError, TimeoutError) as exc:
            record.error = record.error or f"relay: {exc!r}"
        out.keep(record, index, r, job)


async def run_stream_job(job: StreamJob) -> Outcome:
    out = Outcome()
    producer = None
    if job.mode == "pipeline" and job.ingress == "kafka":
        from tokenwire.kafka_clients import new_producer
        from tokenwire.kafka_settings import KafkaConnection, KafkaSettings

        # The security settings come from this process's environment (the bench writes them).
        kafka = KafkaConnection(job.kafka_bootstrap, KafkaSettings())
        producer = new_producer(kafka, client_id=f"{job.tag}-bench-client")
        await producer.start()
    try:
        if job.mode == "relay":
            runs = [relay_session(job, s, out) for s in job.sessions]
        else:
            runs = [pipeline_session(job, s, out, producer) for s in job.sessions]
        await asyncio.gather(*runs)
    finally:
        if producer is not None:
            await producer.stop()
    return out
