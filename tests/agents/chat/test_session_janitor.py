"""The janitor deletes session topics idle past the TTL and nothing else."""

from __future__ import annotations

import time
from collections.abc import Callable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.chat.session_janitor import SessionJanitor
from tokenwire.settings import Settings
from tokenwire.topics import SessionTopics

TTL_S = 60.0


async def test_a_sweep_deletes_only_topics_idle_past_the_ttl(
    kafka_bootstrap: str,
    kafka_admin: AIOKafkaAdminClient,
    kafka_producer: AIOKafkaProducer,
    unique_name: Callable[..., str],
) -> None:
    prefix = f"{unique_name('janitor')}."
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap, session_topic_prefix=prefix, session_idle_ttl_s=TTL_S
    )
    idle, active, empty = (f"{prefix}{name}" for name in ("idle", "active", "empty"))
    await kafka_admin.create_topics([NewTopic(t, 1, 1) for t in (idle, active, empty)])
    hour_ago_ms = int((time.time() - 3600) * 1000)
    await (await kafka_producer.send(idle, b"{}", timestamp_ms=hour_ago_ms))
    await (await kafka_producer.send(active, b"{}"))
    janitor = SessionJanitor(settings, kafka_admin, SessionTopics(settings, kafka_admin))

    assert await janitor.sweep() == [idle]

    remaining = set(await kafka_admin.list_topics())
    # The empty topic's grace starts when the janitor first saw it empty.
    assert {active, empty} <= remaining
    await kafka_admin.delete_topics([active, empty])
