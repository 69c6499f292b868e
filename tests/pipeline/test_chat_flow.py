"""A chat goes in (HTTP or Kafka) and the exact answer comes out over SSE, resumable."""

from __future__ import annotations

import uuid

from tests.fixtures.kafka_reading import wait_for_record
from tests.fixtures.pipeline import WorkerProcess
from tests.fixtures.sse_client import Received, read_session
from tests.pipeline.conftest import token_for, user_message
from tokenwire.answers import fold
from tokenwire.settings import Settings
from tokenwire.simulator import expected_text


def final_text(events: list[Received], request_id: str) -> str:
    answer = fold(e.data for e in events)[request_id]
    assert answer.status == "done", answer
    return answer.text


def assert_ordered_without_gaps(events: list[Received]) -> None:
    ids = [e.id for e in events]
    assert ids == sorted(set(ids)), "SSE ids are Kafka offsets: strictly increasing"
    by_attempt: dict[tuple[str, int], list[int]] = {}
    for e in events:
        by_attempt.setdefault((e.data["request_id"], e.data["attempt"]), []).append(e.data["seq"])
    for seqs in by_attempt.values():
        assert seqs == list(range(len(seqs)))


async def test_a_chat_posted_over_http_streams_the_exact_answer(
    worker: WorkerProcess, edge_url: str, post_chat
) -> None:
    messages = user_message(f"Tell me about Kafka {uuid.uuid4().hex}")
    response = await post_chat({"user_id": "alice", "messages": messages})
    assert response.status_code == 202, response.text
    chat = response.json()

    events = await read_session(edge_url, chat["session_id"], chat["stream_token"],
                                request_id=chat["request_id"])

    assert final_text(events, chat["request_id"]) == expected_text(messages)
    assert events[0].type == "start" and events[-1].type == "done"
    assert_ordered_without_gaps(events)


async def test_a_request_published_straight_to_kafka_streams_too(
    worker: WorkerProcess, edge_url: str, pipeline_settings: Settings, publish_direct, session_ids
) -> None:
    session_id, request_id = next(session_ids), uuid.uuid4().hex
    messages = user_message(f"direct {uuid.uuid4().hex}")
    await publish_direct({"request_id": request_id, "session_id": session_id,
                          "user_id": "bob", "messages": messages}, key=session_id)

    events = await read_session(edge_url, session_id, token_for(pipeline_settings, session_id),
                                request_id=request_id)

    assert final_text(events, request_id) == expected_text(messages)


async def test_a_reconnect_with_last_event_id_resumes_exactly(
    worker: WorkerProcess, edge_url: str, post_chat
) -> None:
    messages = user_message(f"resume me [[sim: tokens=40 tps=80]] {uuid.uuid4().hex}")
    chat = (await post_chat({"user_id": "carol", "messages": messages})).json()
    sid, token, rid = chat["session_id"], chat["stream_token"], chat["request_id"]

    first = await read_session(edge_url, sid, token, request_id=rid, stop_after=4)
    rest = await read_session(edge_url, sid, token, request_id=rid, last_event_id=first[-1].id)
    from_scratch = await read_session(edge_url, sid, token, request_id=rid)

    assert [e.id for e in first + rest] == [e.id for e in from_scratch]
    assert final_text(first + rest, rid) == expected_text(messages)
    # Already finished for this client: EventSource must stop reconnecting.
    assert await read_session(edge_url, sid, token, request_id=rid,
                              last_event_id=rest[-1].id) == []


async def test_a_client_gone_mid_answer_gets_all_of_it_after_the_answer_finished(
    worker: WorkerProcess, edge_url: str, post_chat, pipeline_settings: Settings
) -> None:
    messages = user_message(f"long one [[sim: tokens=60 tps=60]] {uuid.uuid4().hex}")
    chat = (await post_chat({"user_id": "dave", "messages": messages})).json()
    sid, token, rid = chat["session_id"], chat["stream_token"], chat["request_id"]

    seen = await read_session(edge_url, sid, token, request_id=rid, stop_after=2)
    await wait_for_record(pipeline_settings.kafka_bootstrap, pipeline_settings.events_topic,
                          lambda e: e.get("request_id") == rid and e["type"] == "completed")
    rest = await read_session(edge_url, sid, token, request_id=rid, last_event_id=seen[-1].id)

    assert final_text(seen + rest, rid) == expected_text(messages)


async def test_two_clients_on_one_session_see_the_same_sequence(
    worker: WorkerProcess, edge_url: str, post_chat
) -> None:
    import asyncio

    messages = user_message(f"shared [[sim: tokens=30 tps=100]] {uuid.uuid4().hex}")
    chat = (await post_chat({"user_id": "erin", "messages": messages})).json()
    sid, token, rid = chat["session_id"], chat["stream_token"], chat["request_id"]

    a, b = await asyncio.gather(read_session(edge_url, sid, token, request_id=rid),
                                read_session(edge_url, sid, token, request_id=rid))

    assert [(e.id, e.data) for e in a] == [(e.id, e.data) for e in b]


async def test_the_completed_lifecycle_event_carries_the_answer_for_audit(
    worker: WorkerProcess, edge_url: str, post_chat, pipeline_settings: Settings
) -> None:
    messages = user_message(f"audit {uuid.uuid4().hex}")
    chat = (await post_chat({"user_id": "frank", "messages": messages})).json()

    completed = await wait_for_record(
        pipeline_settings.kafka_bootstrap, pipeline_settings.events_topic,
        lambda e: e.get("request_id") == chat["request_id"] and e["type"] == "completed")

    assert completed["answer"] == expected_text(messages)
    assert completed["user_id"] == "frank" and completed["usage"]["completion_tokens"] > 0
