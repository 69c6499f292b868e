"""The session writer numbers what reaches the log, without gaps, against a real broker.

Found in review: ``seq`` was taken before an event was built and sent, so an event that failed
to serialise left a gap; and a terminal ``error`` written again by the write retry got a new
``seq``, a second terminal event.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pydantic_core import PydanticSerializationError

from agents.chat.session_writer import SessionWriter
from schemas.requests import ChatRequest
from tests.fixtures.kafka_reading import read_topic


async def _writer(
    kafka_admin: AIOKafkaAdminClient, kafka_producer: AIOKafkaProducer, topic: str
) -> SessionWriter:
    await kafka_admin.create_topics([NewTopic(topic, 1, 1)])
    request = ChatRequest.model_validate(
        {"request_id": "r", "session_id": "s", "user_id": "u",
         "messages": [{"role": "user", "content": "hi"}]}
    )  # fmt: skip
    return SessionWriter(kafka_producer, TopicPartition(topic, 0), request, "r", "m", 1.0)


async def _seqs(bootstrap: str, topic: str) -> list[tuple[str, int]]:
    return [(json.loads(r.value)["type"], json.loads(r.value)["seq"])
            for r in await read_topic(bootstrap, topic)]  # fmt: skip


async def test_an_event_that_cannot_be_written_leaves_no_gap(
    kafka_bootstrap: str, kafka_admin: AIOKafkaAdminClient, kafka_producer: AIOKafkaProducer,
    unique_name: Callable[..., str],
) -> None:
    topic = unique_name("writer")
    writer = await _writer(kafka_admin, kafka_producer, topic)
    await writer.begin(1)
    with pytest.raises(PydanticSerializationError):
        await writer.token("\ud800", 1.0)  # a lone surrogate: valid JSON, no UTF-8
    await writer.token("ok", 1.0)
    await writer.flush()
    assert await _seqs(kafka_bootstrap, topic) == [("start", 0), ("token", 1)]


async def test_an_error_written_again_is_the_same_event(
    kafka_bootstrap: str, kafka_admin: AIOKafkaAdminClient, kafka_producer: AIOKafkaProducer,
    unique_name: Callable[..., str],
) -> None:
    topic = unique_name("writer")
    writer = await _writer(kafka_admin, kafka_producer, topic)
    await writer.begin(1)
    for _ in range(2):  # as the write retry does after a try that timed out
        await writer.error("unavailable", "down", retryable=True, emitted_at=5.0)
    records = await read_topic(kafka_bootstrap, topic)
    assert await _seqs(kafka_bootstrap, topic) == [("start", 0), ("error", 1), ("error", 1)]
    assert records[1].value == records[2].value
