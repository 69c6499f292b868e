"""The shared session layout at the edge: many sessions in one partition of ``chat.sessions``,
each stream exact (its own events, in order, once), resumable, and its history found through
``chat.sessions.index``.

The worker's part is played with the real ``SharedSessionLog`` (the index write before a
request's first event) and the real producer; one partition, so every session interleaves.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import pytest
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from schemas.session_events import TokenEvent
from tests.api.conftest import Edge, EdgeFactory, SseStream, answer_events
from tokenwire.session_log import SharedSessionLog

TOKENS = ["Hel", "lo", " wor", "ld"]


class WorkerStandIn:
    """Writes sessions as the worker does in the shared layout."""

    def __init__(self, edge: Edge, producer: AIOKafkaProducer) -> None:
        self.log = SharedSessionLog(edge.settings, producer)
        self.producer = producer

    async def open(self, session_id: str, request_id: str) -> None:
        opening = await self.log.open_request(session_id, request_id)
        if opening is not None:
            await opening  # as the worker's writer does before the request's first event

    async def write(self, session_id: str, events: list[BaseModel]) -> list[int]:
        place = self.log.place(session_id)
        futures = [
            await self.producer.send(
                place.topic, value=e.model_dump_json().encode(), key=session_id.encode(),
                partition=place.partition,
            )
            for e in events
        ]  # fmt: skip
        offsets = [(await f).offset for f in futures]
        for offset in offsets:
            self.log.written(place, offset)
        return offsets

    async def answer(self, session_id: str, request_id: str) -> list[int]:
        await self.open(session_id, request_id)
        return await self.write(session_id, answer_events(session_id, request_id, TOKENS))

    async def noise(self, count: int, tag: str) -> None:
        """``count`` events of other sessions in the same partition."""
        await self.write(f"noise-{tag}", [
            TokenEvent(request_id=f"n-{tag}", session_id=f"noise-{tag}", attempt=1, seq=i,
                       text="x", received_at=0.0)
            for i in range(count)
        ])  # fmt: skip


@pytest.fixture
async def shared_edge(make_edge: EdgeFactory, unique_name: Callable[..., str]
                      ) -> AsyncIterator[Edge]:
    name = unique_name("sh")
    async with make_edge(
        session_layout="shared", sessions_topic=f"{name}.sessions",
        sessions_index_topic=f"{name}.sessions.index",
    ) as edge:  # fmt: skip
        yield edge


@pytest.fixture
def worker(shared_edge: Edge, kafka_producer: AIOKafkaProducer) -> WorkerStandIn:
    return WorkerStandIn(shared_edge, kafka_producer)


def _sessions_of(received: list) -> set[str]:  # type: ignore[type-arg]
    return {json.loads(e.data)["session_id"] for e in received}


async def test_interleaved_sessions_each_see_their_own_events_in_order(
    shared_edge: Edge, worker: WorkerStandIn, unique_name: Callable[..., str]
) -> None:
    a, b = unique_name("a"), unique_name("b")
    events_a, events_b = answer_events(a, "ra", TOKENS), answer_events(b, "rb", TOKENS)
    async with (
        SseStream(shared_edge.events_url(a), token=shared_edge.token(a)) as sa,
        SseStream(shared_edge.events_url(b), token=shared_edge.token(b)) as sb,
    ):
        await worker.open(a, "ra")
        await worker.open(b, "rb")
        offsets_a, offsets_b = [], []
        for ea, eb in zip(events_a, events_b, strict=True):
            offsets_a += await worker.write(a, [ea])
            offsets_b += await worker.write(b, [eb])
        got_a, got_b = await sa.take(len(events_a)), await sb.take(len(events_b))
    assert [e.id for e in got_a] == offsets_a and [e.id for e in got_b] == offsets_b
    assert [e.data for e in got_a] == [e.model_dump_json() for e in events_a]
    assert [e.data for e in got_b] == [e.model_dump_json() for e in events_b]
    # Ids are offsets in the one partition both share: they interleave, never repeat.
    assert sorted(set(offsets_a) | set(offsets_b)) == sorted(offsets_a + offsets_b)


async def test_resume_after_other_sessions_wrote_yields_exactly_the_rest(
    shared_edge: Edge, worker: WorkerStandIn, unique_name: Callable[..., str]
) -> None:
    sid = unique_name("s")
    offsets = await worker.answer(sid, "r1")
    url, token = shared_edge.events_url(sid), shared_edge.token(sid)
    async with SseStream(url, token=token) as stream:
        head = await stream.take(3)
    await worker.noise(500, sid)
    more = await worker.answer(sid, "r2")
    async with SseStream(url, token=token, headers={"Last-Event-ID": head[-1].last_event_id}
                         ) as stream:
        tail = await stream.take(len(offsets) + len(more) - 3)
    assert [e.id for e in head + tail] == offsets + more
    assert _sessions_of(head + tail) == {sid}


async def test_an_old_sessions_history_is_read_near_its_own_events_then_live(
    shared_edge: Edge, worker: WorkerStandIn, unique_name: Callable[..., str]
) -> None:
    sid = unique_name("s")
    first = await worker.answer(sid, "r1")
    await worker.noise(10_000, sid)
    second = await worker.answer(sid, "r2")
    hub = shared_edge.runtime.hub
    async with SseStream(shared_edge.events_url(sid), token=shared_edge.token(sid)) as stream:
        history = await stream.take(len(first) + len(second))
        live = answer_events(sid, "r3", TOKENS)
        await worker.open(sid, "r3")
        third = await worker.write(sid, live)
        rest = await stream.take(len(live))
    assert [e.id for e in history + rest] == first + second + third
    assert _sessions_of(history + rest) == {sid}
    # Between its two requests the history read seeks past most of the 10,000 other records
    # (what its first fetch brought in beyond the first request is all it reads of them).
    assert hub.history_records_read < 4_000  # type: ignore[union-attr]


async def test_a_start_below_the_session_reveals_nothing_of_other_sessions(
    shared_edge: Edge, worker: WorkerStandIn, unique_name: Callable[..., str]
) -> None:
    await worker.noise(50, "before")
    sid = unique_name("s")
    offsets = await worker.answer(sid, "r1")
    async with SseStream(
        shared_edge.events_url(sid), token=shared_edge.token(sid), params={"from": "0"}
    ) as stream:
        received = await stream.take(len(offsets))
    assert [e.id for e in received] == offsets
    assert _sessions_of(received) == {sid}


async def test_a_session_with_no_event_yet_starts_at_the_partition_end_and_misses_nothing(
    shared_edge: Edge, worker: WorkerStandIn, unique_name: Callable[..., str]
) -> None:
    await worker.noise(20, "old")
    sid = unique_name("s")
    async with SseStream(shared_edge.events_url(sid), token=shared_edge.token(sid)) as stream:
        offsets = await worker.answer(sid, "r1")
        received = await stream.take(len(offsets))
    assert [e.id for e in received] == offsets


async def test_until_done_reconnect_past_the_terminal_gets_204(
    shared_edge: Edge, worker: WorkerStandIn, unique_name: Callable[..., str]
) -> None:
    sid = unique_name("s")
    offsets = await worker.answer(sid, "r1")
    await worker.noise(100, sid)
    url, token = shared_edge.events_url(sid), shared_edge.token(sid)
    params = {"until": "done", "request_id": "r1"}
    async with SseStream(url, token=token, params=params) as stream:
        received = await stream.rest()
    assert [e.id for e in received] == offsets
    headers = {"Last-Event-ID": received[-1].last_event_id}
    async with SseStream(url, token=token, params=params, headers=headers) as again:
        assert again.status == 204


async def test_hostile_records_in_the_shared_topics_are_skipped_and_streams_go_on(
    shared_edge: Edge, worker: WorkerStandIn, kafka_producer: AIOKafkaProducer,
    unique_name: Callable[..., str],
) -> None:
    sid = unique_name("s")
    s = shared_edge.settings
    place = worker.log.place(sid)
    for junk in (b"[" * 50_000, b'{"type": "token"}', b"\xff\xfe", b'{"type": 1, "request_id": 2}'):
        await kafka_producer.send_and_wait(s.sessions_index_topic, junk, key=b"x", partition=0)
        await kafka_producer.send_and_wait(place.topic, junk, key=sid.encode(),
                                           partition=place.partition)
    offsets = await worker.answer(sid, "r1")
    async with SseStream(shared_edge.events_url(sid), token=shared_edge.token(sid),
                         params={"from": "0"}) as stream:
        received = await stream.take(len(offsets))
    assert [e.id for e in received] == offsets
    assert shared_edge.runtime.hub.ready


async def test_a_stream_opened_just_after_its_answer_is_filled_from_the_edges_recent_records(
    shared_edge: Edge, worker: WorkerStandIn, unique_name: Callable[..., str]
) -> None:
    hub = shared_edge.runtime.hub
    first = unique_name("s")
    async with SseStream(shared_edge.events_url(first), token=shared_edge.token(first)) as one:
        await one.take(0)  # the partition is followed from here on
        sid = unique_name("s")
        offsets = await worker.answer(sid, "r1")
        async with SseStream(shared_edge.events_url(sid), token=shared_edge.token(sid)) as two:
            received = await two.take(len(offsets))
    assert [e.id for e in received] == offsets
    assert hub.recent_fills >= 1 and hub.backfills_run == 0  # type: ignore[union-attr]


async def test_a_request_that_starts_while_a_stream_looks_for_its_beginning_is_streamed_whole(
    shared_edge: Edge, worker: WorkerStandIn, unique_name: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found at 20,000 sessions (29 streams got nothing or a cut answer): the worker wrote a new
    session's start and first events after the edge had read the index but before it read the
    partition's end, and the stream started past them."""
    hub = shared_edge.runtime.hub
    sid = unique_name("s")
    written: list[int] = []
    index_reader = hub._index  # type: ignore[union-attr]
    real_catch_up = index_reader.catch_up

    async def worker_writes_right_after(partitions: list[int], *, timeout_s: float) -> None:
        await real_catch_up(partitions, timeout_s=timeout_s)
        if not written:
            written.extend(await worker.answer(sid, "r1"))

    monkeypatch.setattr(index_reader, "catch_up", worker_writes_right_after)
    async with SseStream(shared_edge.events_url(sid), token=shared_edge.token(sid)) as stream:
        received = await stream.take(len(answer_events(sid, "r1", TOKENS)), timeout_s=10)
    assert [e.id for e in received] == written
