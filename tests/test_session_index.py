"""The shared layout's index of request starts (tokenwire/session_index.py), on a real broker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.session_index import RequestStart
from tokenwire.kafka_settings import KafkaConnection
from tokenwire.session_index import IndexReader, IndexTable


def _start(session: str, request: str, offset: int) -> RequestStart:
    return RequestStart(session_id=session, request_id=request, partition=0, offset=offset)


def test_a_session_begins_at_its_lowest_request_start_and_a_request_keeps_its_lowest() -> None:
    table = IndexTable(capacity=10)
    table.add(_start("s", "r2", 40))
    table.add(_start("s", "r1", 10))
    table.add(_start("s", "r1", 25))  # a re-delivered request's later, higher bound
    assert table.session_start("s") == 10
    assert table.request_start("r1") == 10
    assert table.starts("s") == [(10, "r1"), (40, "r2")]


def test_a_table_that_forgot_a_session_no_longer_says_unknown_means_empty() -> None:
    table = IndexTable(capacity=2)
    for i in range(3):
        table.add(_start(f"s{i}", f"r{i}", i))
    assert table.session_start("s0") is None and not table.complete
    assert table.session_start("s2") == 2


async def test_a_burst_of_lookups_shares_reads_and_each_sees_what_was_written_before_it(
    kafka_bootstrap: str, kafka_admin: AIOKafkaAdminClient, kafka_producer: AIOKafkaProducer,
    unique_name: Callable[..., str],
) -> None:
    topic = unique_name("index")
    await kafka_admin.create_topics([NewTopic(topic, 1, 1)])
    for i in range(20):
        start = _start("s", f"r{i}", i)
        await kafka_producer.send_and_wait(topic, start.model_dump_json().encode(),
                                           key=f"r{i}@{i}".encode(), partition=0)
    reader = IndexReader(KafkaConnection.plaintext(kafka_bootstrap), topic, IndexTable(100),
                         client_id="tests-index")
    try:
        await asyncio.gather(*(reader.catch_up([0], timeout_s=20) for _ in range(50)))
        assert len(reader.table.starts("s")) == 20
        assert reader.reads <= 3
        await kafka_producer.send_and_wait(topic, _start("t", "q", 99).model_dump_json().encode(),
                                           key=b"q@99", partition=0)
        await reader.catch_up([0], timeout_s=20)
        assert reader.table.session_start("t") == 99
    finally:
        await reader.close()
