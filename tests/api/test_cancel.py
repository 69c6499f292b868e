"""POST /v1/sessions/{id}/requests/{id}/cancel: authorised like posting, published, idempotent.

Against a real edge and broker; the worker that would act on the cancel is not running (its part
is tested in tests/agents/chat/), so these read the control topic back instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from aiokafka import AIOKafkaProducer

from schemas.control import parse_control_record
from schemas.lifecycle import Completed, Failed
from schemas.requests import ChatRequest
from schemas.session_events import CANCELLED, Timings, Usage
from tests.api.conftest import Edge, EdgeFactory, eventually, metric_value
from tests.api.test_ingress import chat_body, post
from tests.fixtures.credentials import caller_jwt
from tests.fixtures.kafka_reading import read_topic

CANCELS = "tokenwire_edge_cancels_total"


async def cancel(
    edge: Edge, session_id: str, request_id: str, *, token: str | None,
    user_id: str = "u-test", anonymous: bool = False,
) -> httpx.Response:
    headers = {} if anonymous else {"Authorization": f"Bearer {caller_jwt(user_id)}"}
    if token is not None:
        headers["X-Stream-Token"] = token
    url = f"{edge.url}/v1/sessions/{session_id}/requests/{request_id}/cancel"
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(url, headers=headers)


async def new_chat(edge: Edge, user_id: str = "u-test") -> dict[str, str]:
    response = await post(edge, chat_body(user_id))
    assert response.status_code == 202, response.text
    accepted: dict[str, str] = response.json()
    return accepted


async def control_records(edge: Edge) -> list[tuple[int, bytes | None, bytes]]:
    records = await read_topic(edge.settings.kafka_bootstrap, edge.settings.control_topic)
    return [(r.partition, r.key, r.value) for r in records]


async def test_a_cancel_is_published_keyed_by_session_in_the_partition_of_its_request(
    make_edge: EdgeFactory
) -> None:
    # Several partitions and several sessions: a record that is not keyed by the session would
    # land in the request's partition number only by chance, not every time.
    async with make_edge(requests_partitions=4) as edge:
        chats = [await new_chat(edge) for _ in range(4)]
        for chat in chats:
            response = await cancel(
                edge, chat["session_id"], chat["request_id"], token=chat["write_token"]
            )
            assert response.status_code == 202
            assert response.json() == {
                "request_id": chat["request_id"], "session_id": chat["session_id"],
                "status": "cancelling",
            }

        requests = await read_topic(edge.settings.kafka_bootstrap, edge.settings.requests_topic)
        request_partition = {
            ChatRequest.model_validate_json(r.value).request_id: r.partition for r in requests
        }
        published = await control_records(edge)
        assert len(published) == len(chats)
        for partition, key, value in published:
            record = parse_control_record(value)
            assert key == record.session_id.encode()
            assert partition == request_partition[record.request_id]
            assert record.user_id == "u-test"
        assert {parse_control_record(v).request_id for _, _, v in published} == {
            chat["request_id"] for chat in chats
        }

        # Idempotent: the same answer again, saying it is a repeat, and no second record.
        first = chats[0]
        again = await cancel(
            edge, first["session_id"], first["request_id"], token=first["write_token"]
        )
        assert again.status_code == 202
        assert again.json() == {
            "request_id": first["request_id"], "session_id": first["session_id"],
            "status": "cancelling", "repeated": True,
        }
        assert len(await control_records(edge)) == len(chats)
        assert metric_value(edge, CANCELS, {"outcome": "accepted"}) == len(chats)
        assert metric_value(edge, CANCELS, {"outcome": "repeated"}) == 1


async def test_only_the_session_owner_with_a_write_token_can_cancel(make_edge: EdgeFactory) -> None:
    async with make_edge() as edge:
        chat = await new_chat(edge)
        session_id, request_id = chat["session_id"], chat["request_id"]

        anonymous = await cancel(
            edge, session_id, request_id, token=chat["write_token"], anonymous=True
        )
        assert anonymous.status_code == 401
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
        cases = [
            (None, 401, "unauthorized"),
            ("forged.token", 401, "unauthorized"),
            # The read token travels in URLs: it must not stop anything.
            (chat["stream_token"], 403, "forbidden"),
            (edge.token("s-someone-else", scope="write"), 403, "forbidden"),
        ]
        for token, status, code in cases:
            response = await cancel(edge, session_id, request_id, token=token)
            assert response.status_code == status, token
            assert response.json()["error"]["code"] == code
        # Another caller holding the owner's write token is still not the owner.
        impostor = await cancel(
            edge, session_id, request_id, token=chat["write_token"], user_id="u-other"
        )
        assert impostor.status_code == 403
        assert impostor.json()["error"]["code"] == "forbidden"

        assert await control_records(edge) == []
        assert metric_value(edge, CANCELS, {"outcome": "unauthorized"}) == 3
        assert metric_value(edge, CANCELS, {"outcome": "forbidden"}) == 3


async def test_a_bad_path_is_refused_with_a_json_error(make_edge: EdgeFactory) -> None:
    async with make_edge() as edge:
        chat = await new_chat(edge)
        too_long = await cancel(edge, chat["session_id"], "r" * 65, token=chat["write_token"])
        assert too_long.status_code == 422
        error = too_long.json()["error"]
        assert error["code"] == "invalid_request"
        assert error["details"][0]["loc"] == ["path", "request_id"]

        bad_session = await cancel(edge, "no_underscores", chat["request_id"], token="x")
        assert bad_session.status_code == 422
        assert bad_session.json()["error"]["details"][0]["loc"] == ["path", "session_id"]

        assert await control_records(edge) == []


async def test_a_request_known_to_have_ended_answers_409_with_how_it_ended(
    make_edge: EdgeFactory, kafka_producer: AIOKafkaProducer
) -> None:
    async with make_edge() as edge:
        chats = [await new_chat(edge) for _ in range(3)]
        ended = [
            completed(chats[0], finish_reason="stop"),
            completed(chats[1], finish_reason=CANCELLED),
            failed(chats[2]),
        ]
        await play_the_worker(kafka_producer, edge, ended)
        await eventually(lambda: all(
            edge.runtime.finished.get(c["request_id"], c["session_id"]) for c in chats
        ))

        for chat, reason in zip(chats, ["stop", CANCELLED, "error"], strict=True):
            response = await cancel(
                edge, chat["session_id"], chat["request_id"], token=chat["write_token"]
            )
            assert response.status_code == 409
            body = response.json()
            assert body["error"]["code"] == "already_finished"
            assert (body["status"], body["finish_reason"]) == ("finished", reason)
        assert await control_records(edge) == []
        assert metric_value(edge, CANCELS, {"outcome": "finished"}) == 3


async def test_a_cancel_kafka_refuses_is_a_503(
    make_edge: EdgeFactory, unique_name: Callable[..., str]
) -> None:
    # No topics at all (the broker creates none on its own): waiting for the control topic's
    # metadata is given up after the edge's publish deadline.
    async with make_edge(core_topics=False) as edge:
        session_id = unique_name("s")
        token = edge.token(session_id, scope="write")
        response = await cancel(edge, session_id, "r-1", token=token)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "unavailable"
        assert metric_value(edge, CANCELS, {"outcome": "unavailable"}) == 1
        # Not remembered as published: the next try publishes rather than saying "repeated".
        assert (session_id, "r-1") not in edge.runtime.cancels


# --- playing the worker --------------------------------------------------------------------


def _ended_fields(chat: dict[str, str]) -> dict[str, object]:
    now = time.time()
    return {
        "request_id": chat["request_id"], "session_id": chat["session_id"], "user_id": "u-test",
        "model": "sim", "attempt": 1, "at": now,
        "timings": Timings(accepted_at=now, finished_at=now, duration_s=0.0),
    }


def completed(chat: dict[str, str], *, finish_reason: str) -> Completed:
    return Completed(
        **_ended_fields(chat), finish_reason=finish_reason, usage=Usage(), answer="partial"
    )  # type: ignore[arg-type]


def failed(chat: dict[str, str]) -> Failed:
    return Failed(**_ended_fields(chat), code="upstream", message="boom")  # type: ignore[arg-type]


async def play_the_worker(
    producer: AIOKafkaProducer, edge: Edge, records: list[Completed | Failed]
) -> None:
    """The terminal records a worker writes to chat.events (key = user id)."""
    for record in records:
        await producer.send_and_wait(
            edge.settings.events_topic, value=record.model_dump_json().encode(),
            key=record.user_id.encode(),
        )
