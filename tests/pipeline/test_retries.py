"""Every retry path, driven by simulator faults, ends in an exact answer or a clear error."""

from __future__ import annotations

import uuid

import pytest

from tests.fixtures.pipeline import WorkerProcess
from tests.fixtures.sse_client import read_session
from tests.pipeline.conftest import user_message
from tokenwire.answers import fold
from tokenwire.simulator import expected_text


async def chat_until_done(post_chat, edge_url: str, messages):  # type: ignore[no-untyped-def]
    chat = (await post_chat({"user_id": "retrier", "messages": messages})).json()
    events = await read_session(edge_url, chat["session_id"], chat["stream_token"],
                                request_id=chat["request_id"])
    return events, fold(e.data for e in events)[chat["request_id"]]


@pytest.mark.parametrize(
    ("fault", "retries"),
    [("fail=429x1 retry_after=0.1", 1), ("fail=500x2", 2), ("fail=503x1", 1)],
)
async def test_failures_before_the_first_token_are_retried_to_an_exact_answer(
    worker: WorkerProcess, edge_url: str, post_chat, fault: str, retries: int
) -> None:
    messages = user_message(f"[[sim: {fault}]] {uuid.uuid4().hex}")

    events, answer = await chat_until_done(post_chat, edge_url, messages)

    assert answer.status == "done" and answer.text == expected_text(messages)
    assert [e.type for e in events].count("retry") == retries
    assert answer.attempt == retries + 1


async def test_a_stream_cut_after_partial_output_is_announced_and_the_text_stays_exact(
    worker: WorkerProcess, edge_url: str, post_chat
) -> None:
    messages = user_message(f"[[sim: cut_after=6 tokens=30 tps=40]] {uuid.uuid4().hex}")

    events, answer = await chat_until_done(post_chat, edge_url, messages)

    kinds = [e.type for e in events]
    assert kinds.index("token") < kinds.index("retry"), "partial output came before the retry"
    assert answer.discarded and expected_text(messages).startswith(answer.discarded[0])
    assert answer.status == "done" and answer.text == expected_text(messages)


async def test_an_error_that_cannot_be_retried_ends_the_request_with_an_error_event(
    worker: WorkerProcess, edge_url: str, post_chat
) -> None:
    messages = user_message(f"[[sim: fail=400]] {uuid.uuid4().hex}")

    events, answer = await chat_until_done(post_chat, edge_url, messages)

    assert [e.type for e in events] == ["start", "error"]
    assert events[-1].data["code"] == "http_400" and events[-1].data["retryable"] is False
    assert answer.status == "error"
