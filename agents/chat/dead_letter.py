"""Dead-letters bad ``chat.requests`` records: original bytes untouched, reason in headers."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaProducer

from agents.chat.request_intake import Rejection
from schemas import dead_letter as dl

log = logging.getLogger(__name__)


async def dead_letter(
    producer: AIOKafkaProducer,
    dlq_topic: str,
    rejection: Rejection,
    *,
    key: bytes | None,
    value: bytes | None,
    topic: str,
    partition: int,
    offset: int,
) -> None:
    headers = [
        (dl.REASON_HEADER, rejection.reason.encode()),
        # The detail may quote the record (lone surrogates included): never fail on it.
        (dl.ERROR_HEADER, rejection.detail.encode(errors="replace")),
        (dl.SOURCE_TOPIC_HEADER, topic.encode()),
        (dl.SOURCE_PARTITION_HEADER, str(partition).encode()),
        (dl.SOURCE_OFFSET_HEADER, str(offset).encode()),
    ]
    await producer.send_and_wait(dlq_topic, value=value, key=key, headers=headers)
    log.warning(
        "dead-lettered record topic=%s partition=%s offset=%s reason=%s detail=%s",
        topic,
        partition,
        offset,
        rejection.reason,
        rejection.detail,
    )
