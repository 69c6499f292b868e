"""Stopping a generation: from the cancel endpoint to a closed upstream stream.

A cancel keeps what was already streamed, ends the request with ``done`` ``finish_reason:
"cancelled"`` (usage counted so far, marked as an estimate) and a ``completed`` record saying
so. It reaches a request wherever it is: generating, queued behind its session, or delivered
again to a new worker after the one generating it was killed.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from schemas.control import CancelRequest
from tests.fixtures.pipeline import WorkerProcess, edge_serving, pipeline_settings_for, start_worker
from tests.fixtures.sse_client import Received, read_session
from tests.fixtures.waiting import eventually_true
from tests.pipeline.conftest import lifecycle_of, token_for, user_message
from tokenwire.answers import fold
from tokenwire.settings import Settings
from tokenwire.simulator import expected_text
from tokenwire.topics import ensure_core_topics

SLOW = "[[sim: tokens=400 tps=20]]"


async def _closed_early(simulator_url: str, marker: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as client:
        closed = (await client.get(f"{simulator_url}/v1/_sim/closed")).json()["closed"]
    return [c for c in closed if marker in c["prompt"]]


async def _cancels(worker: WorkerProcess, when: str) -> float:
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{worker.web_url}/metrics")).text
    match = re.search(rf'^tokenwire_worker_cancels_total{{when="{when}"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


async def _post(post_chat, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    response = await post_chat(body, token=token)
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


def _answer(events: list[Received], request_id: str):  # type: ignore[no-untyped-def]
    return fold(e.data for e in events)[request_id]


async def test_a_cancel_mid_answer_keeps_the_text_and_closes_the_upstream_stream(
    worker: WorkerProcess, edge_url: str, simulator_url: str, post_chat, cancel_chat,
    pipeline_settings: Settings,
) -> None:
    marker = uuid.uuid4().hex
    messages = user_message(f"{SLOW} long story {marker}")
    chat = await _post(post_chat, {"user_id": "stopper", "messages": messages})
    sid, rid = chat["session_id"], chat["request_id"]
    await read_session(edge_url, sid, chat["stream_token"], stop_after=6)

    response = await cancel_chat(chat, "stopper")
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "cancelling"

    events = await read_session(edge_url, sid, chat["stream_token"], request_id=rid)
    done = events[-1].data
    answer = _answer(events, rid)
    assert done["type"] == "done" and done["finish_reason"] == "cancelled" and answer.cancelled
    assert 0 < len(answer.text) < len(expected_text(messages))
    assert expected_text(messages).startswith(answer.text), "the text so far is kept exactly"
    streamed = sum(1 for e in events if e.type == "token")
    assert done["usage"]["estimated"] is True
    assert done["usage"]["completion_tokens"] >= streamed > 0

    async def upstream_closed() -> bool:
        return bool(await _closed_early(simulator_url, marker))

    # The simulator saw the worker close its stream, long before its end.
    await eventually_true(upstream_closed, timeout_s=20)
    assert (await _closed_early(simulator_url, marker))[0]["tokens_sent"] < 400
    completed = await lifecycle_of(pipeline_settings, rid, "completed")
    assert completed["finish_reason"] == "cancelled" and completed["answer"] == answer.text

    async def refused_once_known_finished() -> bool:
        again = await cancel_chat(chat, "stopper")
        assert again.status_code in (202, 409), again.text
        return again.status_code == 409 and again.json()["status"] == "finished"

    await eventually_true(refused_once_known_finished, timeout_s=20)


async def test_a_request_cancelled_while_queued_is_never_sent_to_the_llm(
    worker: WorkerProcess, edge_url: str, simulator_url: str, post_chat, cancel_chat,
) -> None:
    marker = uuid.uuid4().hex
    first = await _post(post_chat, {"user_id": "queue", "messages": user_message(
        f"{SLOW} first {marker}")})
    sid = first["session_id"]
    await read_session(edge_url, sid, first["stream_token"], stop_after=2)
    queued_before = await _cancels(worker, "queued")
    second = await _post(post_chat, {"user_id": "queue", "session_id": sid,
                                      "messages": user_message(f"second {marker}")},
                         token=first["write_token"])

    assert (await cancel_chat(second, "queue")).status_code == 202
    assert (await cancel_chat(first, "queue")).status_code == 202

    events = await read_session(edge_url, sid, first["stream_token"],
                                request_id=second["request_id"])
    mine = [e for e in events if e.data["request_id"] == second["request_id"]]
    assert [e.type for e in mine] == ["start", "done"]
    assert mine[-1].data["finish_reason"] == "cancelled"
    assert await _cancels(worker, "queued") == queued_before + 1
    assert _answer(events, first["request_id"]).cancelled
    # The first was streaming when cancelled; the second never reached the simulator.
    assert [c["prompt"] for c in await _closed_early(simulator_url, marker)] == [
        f"{SLOW} first {marker}"
    ]


async def test_a_cancel_survives_the_worker_being_killed(
    kafka_bootstrap: str, simulator_url: str, session_layout: str, worker_logs,
    exit_stack: contextlib.AsyncExitStack,
) -> None:
    tag = f"cancelcrash{uuid.uuid4().hex[:8]}"
    settings = pipeline_settings_for(kafka_bootstrap, simulator_url, tag,
                                     session_layout=session_layout)
    await ensure_core_topics(settings)
    edge_url = await exit_stack.enter_async_context(edge_serving(settings))
    sid, rid = f"s-{tag}", f"r-{tag}"
    messages = user_message(f"{SLOW} crash {tag}")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all",
                                enable_idempotence=True)
    await producer.start()
    first = await start_worker(settings, worker_logs)
    second: WorkerProcess | None = None
    try:
        request = {"request_id": rid, "session_id": sid, "user_id": "crash",
                   "messages": messages}
        await producer.send_and_wait(settings.requests_topic, json.dumps(request).encode(),
                                     key=sid.encode())
        token = token_for(settings, sid)
        before = await read_session(edge_url, sid, token, stop_after=5)
        first.kill_hard()
        # Published straight to Kafka while no worker runs, as a direct producer would.
        cancel = CancelRequest(request_id=rid, session_id=sid, user_id="crash")
        await producer.send_and_wait(settings.control_topic, cancel.model_dump_json().encode(),
                                     key=sid.encode())

        second = await start_worker(settings, worker_logs)
        events = await read_session(edge_url, sid, token, request_id=rid, timeout_s=90)
        answer = _answer(events, rid)
        assert answer.cancelled and answer.retries == 0, "not generated again"
        assert [e.type for e in events].count("start") == 1
        assert "retry" not in [e.type for e in events]
        assert len(answer.text) >= len("".join(
            e.data["text"] for e in before if e.type == "token"))
        assert expected_text(messages).startswith(answer.text)
        assert await _cancels(second, "redelivered") == 1
    finally:
        await producer.stop()
        first.stop()
        if second is not None:
            second.stop()


async def test_a_hostile_control_record_is_dead_lettered_and_cancels_go_on(
    worker: WorkerProcess, edge_url: str, post_chat, cancel_chat, pipeline_settings: Settings,
) -> None:
    chat = await _post(post_chat, {"user_id": "hostile", "messages": user_message(
        f"{SLOW} {uuid.uuid4().hex}")})
    await read_session(edge_url, chat["session_id"], chat["stream_token"], stop_after=2)
    hostile = b'{"type": "cancel", "request_id": ' + b"[" * 50_000
    producer = AIOKafkaProducer(bootstrap_servers=pipeline_settings.kafka_bootstrap)
    await producer.start()
    try:
        # Into the partition the worker follows for this session: ahead of the real cancel.
        await producer.send_and_wait(pipeline_settings.control_topic, hostile,
                                     key=chat["session_id"].encode())
    finally:
        await producer.stop()
    assert (await cancel_chat(chat, "hostile")).status_code == 202

    events = await read_session(edge_url, chat["session_id"], chat["stream_token"],
                                request_id=chat["request_id"])
    assert _answer(events, chat["request_id"]).cancelled
    dead = await wait_for_raw(pipeline_settings, hostile)
    headers = dict(dead.headers)
    assert headers["tw-dlq-reason"] == b"schema_invalid"
    assert headers["tw-dlq-source-topic"] == pipeline_settings.control_topic.encode()


async def wait_for_raw(settings: Settings, value: bytes):  # type: ignore[no-untyped-def]
    from tests.fixtures.kafka_reading import read_topic

    async def there() -> bool:
        return any(r.value == value for r in await read_topic(
            settings.kafka_bootstrap, settings.dead_letter_topic))

    await eventually_true(there, timeout_s=30)
    records = await read_topic(settings.kafka_bootstrap, settings.dead_letter_topic)
    return next(r for r in records if r.value == value)
