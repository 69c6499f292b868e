"""Scripted audit logs: real records built from the schema models, produced to fresh topics.

``Stream`` numbers one request's session events as the worker does (``seq`` from 0 per attempt),
``ScriptedLog`` produces requests, events, lifecycle records and dead letters with explicit
record timestamps, and ``copy_session`` copies one session's slice of a real pipeline's log into
fresh topics so that it can be tampered with. Session events go where the worker writes them in
the settings' layout (tokenwire/session_log.py): the session's topic, or its partition of the
shared topic keyed by session id.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import BaseModel

from schemas import dead_letter as dl
from schemas.lifecycle import Accepted, Completed, Failed, FinalMessage
from schemas.messages import ToolCall
from schemas.requests import ChatMessage, ChatRequest
from schemas.session_events import (
    DoneEvent,
    ErrorEvent,
    ReasoningEvent,
    RefusalEvent,
    RetryEvent,
    SessionEvent,
    StartEvent,
    Timings,
    TokenEvent,
    ToolCallEvent,
    Usage,
)
from tokenwire.replay.log_reader import LogReader, Record
from tokenwire.session_log import place_of
from tokenwire.settings import Settings
from tokenwire.topics import UNREPLICATED, create_topics, ensure_core_topics, session_topic_spec

MODEL = "gpt-test"


def replay_settings(bootstrap: str, tag: str, **overrides: Any) -> Settings:
    """Settings whose every topic (session topics included) is new and named after ``tag``."""
    values: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "requests_topic": f"{tag}.requests",
        "requests_partitions": 2,
        "events_topic": f"{tag}.events",
        "alerts_topic": f"{tag}.alerts",
        "dead_letter_topic": f"{tag}.dlq",
        "control_topic": f"{tag}.control",
        "session_topic_prefix": f"{tag}.session.",
        "sessions_topic": f"{tag}.sessions",
        "sessions_index_topic": f"{tag}.sessions.index",
        "worker_id": f"{tag}-worker",
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Stream:
    request_id: str
    session_id: str
    at: float = field(default_factory=time.time)
    attempt: int = 1
    seq: int = 0

    def _ids(self) -> dict[str, Any]:
        ids = {
            "request_id": self.request_id,
            "session_id": self.session_id,
            "attempt": self.attempt,
            "seq": self.seq,
        }
        self.seq += 1
        return ids

    def start(self) -> StartEvent:
        return StartEvent(**self._ids(), model=MODEL, accepted_at=self.at)

    def token(self, text: str) -> TokenEvent:
        return TokenEvent(**self._ids(), text=text, received_at=self.at + 0.1)

    def tool_call(self, index: int, arguments: str, *, id: str | None = None,
                  name: str | None = None) -> ToolCallEvent:
        return ToolCallEvent(**self._ids(), index=index, id=id, name=name, arguments=arguments,
                             received_at=self.at + 0.1)

    def refusal(self, text: str) -> RefusalEvent:
        return RefusalEvent(**self._ids(), text=text, received_at=self.at + 0.1)

    def reasoning(self, text: str) -> ReasoningEvent:
        return ReasoningEvent(**self._ids(), text=text, received_at=self.at + 0.1)

    def retry(self, reason: str = "stream_cut") -> RetryEvent:
        self.attempt, self.seq = self.attempt + 1, 0
        return RetryEvent(**self._ids(), reason=reason, delay_s=0.05)

    def timings(self) -> Timings:
        return Timings(accepted_at=self.at, first_token_at=self.at + 0.1, finished_at=self.at + 1,
                       ttft_s=0.1, duration_s=1.0)

    def done(self, completion_tokens: int = 2, *, finish_reason: str = "stop",
             tool_calls: list[ToolCall] | None = None) -> DoneEvent:
        usage = Usage(prompt_tokens=5, completion_tokens=completion_tokens,
                      total_tokens=5 + completion_tokens)
        return DoneEvent(**self._ids(), finish_reason=finish_reason, usage=usage,
                         timings=self.timings(), tool_calls=tool_calls or [])

    def error(self, code: str = "http_400", message: str = "bad request") -> ErrorEvent:
        return ErrorEvent(**self._ids(), code=code, message=message, retryable=False)


class ScriptedLog:
    def __init__(
        self, settings: Settings, producer: AIOKafkaProducer, admin: AIOKafkaAdminClient
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.admin = admin

    async def create(self, *session_ids: str) -> None:
        """The core topics (the shared session topic among them, in that layout), and in the
        topic layout the topics of ``session_ids``."""
        await ensure_core_topics(self.settings)
        if self.settings.session_layout == "shared":
            return
        await create_topics(
            self.admin,
            [session_topic_spec(self.settings, s) for s in session_ids],
            UNREPLICATED,
        )

    async def _send(self, topic: str, value: bytes, key: str | None, at: float | None,
                    **extra: Any) -> Any:
        timestamp_ms = None if at is None else int(at * 1000)
        return await self.producer.send_and_wait(
            topic, value, key=None if key is None else key.encode(), timestamp_ms=timestamp_ms,
            **extra,
        )

    async def request(self, session_id: str, request_id: str | None, text: str, *,
                      user_id: str = "u-audit", at: float | None = None,
                      history: list[ChatMessage] | None = None) -> ChatRequest:
        """A request whose last message is the user's ``text``, after ``history``."""
        messages = [*(history or []), ChatMessage(role="user", content=text)]
        chat = ChatRequest(request_id=request_id, session_id=session_id, user_id=user_id,
                           messages=messages, model=MODEL)
        await self._send(self.settings.requests_topic, chat.model_dump_json().encode(),
                         session_id, at)
        return chat

    async def raw_request(self, raw: bytes, key: str, at: float | None = None) -> Any:
        return await self._send(self.settings.requests_topic, raw, key, at)

    async def dead_letter(self, raw: bytes, key: str, source: Any, reason: str = dl.REASON_NOT_JSON,
                          detail: str = "not valid JSON") -> None:
        headers = [
            (dl.REASON_HEADER, reason.encode()),
            (dl.ERROR_HEADER, detail.encode()),
            (dl.SOURCE_TOPIC_HEADER, source.topic.encode()),
            (dl.SOURCE_PARTITION_HEADER, str(source.partition).encode()),
            (dl.SOURCE_OFFSET_HEADER, str(source.offset).encode()),
        ]
        await self._send(self.settings.dead_letter_topic, raw, key, None, headers=headers)

    async def events(self, *events: SessionEvent, at: float | None = None) -> None:
        """As the worker writes them: keyed by session id, to ``place_of`` the session."""
        for event in events:
            await self.event_as(event.session_id, event, at=at)

    async def event_as(self, key: str | None, event: SessionEvent, *, at: float | None = None,
                       partition: int | None = None) -> Any:
        """``event`` written where session ``key``'s events go (``partition``: another one)."""
        place = place_of(self.settings, key or event.session_id)
        return await self._send(place.topic, event.model_dump_json().encode(), key, at,
                                partition=place.partition if partition is None else partition)

    async def lifecycle(self, event: BaseModel, user_id: str = "u-audit",
                        at: float | None = None) -> None:
        await self._send(self.settings.events_topic, event.model_dump_json().encode(), user_id, at)

    async def answered(self, stream: Stream, chat: ChatRequest, answer: str, *,
                       retries: int = 0, at: float | None = None, finish_reason: str = "stop",
                       message: FinalMessage | None = None) -> None:
        """``accepted`` and ``completed``; ``message`` given: a version-2 record."""
        common = _common(chat)
        await self.lifecycle(Accepted(**common, attempt=1, at=stream.at), at=at)
        await self.lifecycle(
            Completed(**common, attempt=stream.attempt, finish_reason=finish_reason,
                      usage=Usage(prompt_tokens=5, completion_tokens=2, total_tokens=7),
                      timings=stream.timings(), retries=retries, answer=answer, message=message),
            at=at,
        )

    async def failed(self, stream: Stream, chat: ChatRequest, at: float | None = None) -> None:
        common = _common(chat)
        await self.lifecycle(Accepted(**common, attempt=1, at=stream.at), at=at)
        await self.lifecycle(
            Failed(**common, attempt=stream.attempt, code="http_400", message="bad request",
                   timings=stream.timings()),
            at=at,
        )


def _common(chat: ChatRequest) -> dict[str, Any]:
    assert chat.request_id is not None
    return {"request_id": chat.request_id, "session_id": chat.session_id,
            "user_id": chat.user_id, "model": MODEL}


@dataclass(frozen=True)
class StandardLog:
    """A normal request, a retried one with a discarded partial attempt, a failed one, a DLQ."""

    log: ScriptedLog
    session_id: str
    ok: Stream
    retried: Stream
    failed: Stream
    bad_record: Any

    @property
    def settings(self) -> Settings:
        return self.log.settings


async def write_standard_log(log: ScriptedLog, session_id: str) -> StandardLog:
    await log.create(session_id)
    bad_raw = b"{not json"
    bad = await log.raw_request(bad_raw, session_id)
    await log.dead_letter(bad_raw, session_id, bad)

    ok_chat = await log.request(session_id, "r-ok", "Hello")
    ok = Stream("r-ok", session_id)
    await log.events(ok.start(), ok.token("Hi"), ok.token(" there"), ok.done())
    await log.answered(ok, ok_chat, "Hi there")

    retry_chat = await log.request(session_id, "r-retry", "Tell me more")
    retried = Stream("r-retry", session_id)
    await log.events(retried.start(), retried.token("Par"), retried.token("tial"),
                     retried.retry(), retried.token("Full"), retried.token(" answer"),
                     retried.done())
    await log.answered(retried, retry_chat, "Full answer", retries=1)

    fail_chat = await log.request(session_id, "r-fail", "[[sim: fail=400]]")
    failed = Stream("r-fail", session_id)
    await log.events(failed.start(), failed.error())
    await log.failed(failed, fail_chat)
    return StandardLog(log, session_id, ok, retried, failed, bad)


async def copy_session(
    source: Settings, target: Settings, session_id: str, producer: AIOKafkaProducer,
    admin: AIOKafkaAdminClient,
) -> None:
    """Copy one session's records (requests, session topic, lifecycle, dead letters) into
    ``target``'s fresh topics, keeping partitions and timestamps; dead letters point at the
    copies of their source records."""
    await ScriptedLog(target, producer, admin).create(session_id)
    moved: dict[tuple[int, int], Any] = {}
    for record in await _read(source, source.requests_topic):
        if record.key == session_id.encode():
            moved[(record.partition, record.offset)] = await producer.send_and_wait(
                target.requests_topic, record.value, key=record.key, partition=record.partition,
                timestamp_ms=record.timestamp)
    source_place, target_place = place_of(source, session_id), place_of(target, session_id)
    for record in sorted(await _read(source, source_place.topic, [source_place.partition]),
                         key=lambda r: r.offset):
        if record.key == session_id.encode():  # the shared layout interleaves other sessions
            await producer.send_and_wait(target_place.topic, record.value, key=record.key,
                                         partition=target_place.partition,
                                         timestamp_ms=record.timestamp)
    for record in await _read(source, source.events_topic):
        if json.loads(record.value or b"{}").get("session_id") == session_id:
            await producer.send_and_wait(target.events_topic, record.value, key=record.key,
                                         partition=record.partition, timestamp_ms=record.timestamp)
    for record in await _read(source, source.dead_letter_topic):
        if record.key != session_id.encode():
            continue
        headers = dict(record.headers)
        copy = moved[(int(headers[dl.SOURCE_PARTITION_HEADER]),
                      int(headers[dl.SOURCE_OFFSET_HEADER]))]
        headers |= {dl.SOURCE_TOPIC_HEADER: target.requests_topic.encode(),
                    dl.SOURCE_PARTITION_HEADER: str(copy.partition).encode(),
                    dl.SOURCE_OFFSET_HEADER: str(copy.offset).encode()}
        await producer.send_and_wait(target.dead_letter_topic, record.value, key=record.key,
                                     timestamp_ms=record.timestamp, headers=list(headers.items()))


async def _read(settings: Settings, topic: str, partitions: list[int] | None = None
                ) -> list[Record]:
    async with LogReader(settings.kafka_connection, client_id="replay-tests-copy") as reader:
        return await reader.read(topic, partitions=partitions)


async def delete_topic(admin: AIOKafkaAdminClient, settings: Settings, topic: str) -> None:
    """Delete ``topic`` and wait until the broker's metadata no longer lists it."""
    await admin.delete_topics([topic])
    deadline = time.monotonic() + 30
    async with LogReader(settings.kafka_connection) as reader:
        while reader.exists(topic):
            assert time.monotonic() < deadline, f"{topic} still listed 30 s after deletion"
            await asyncio.sleep(0.05)
            await reader.refresh_topics()
