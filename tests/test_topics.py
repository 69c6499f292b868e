"""Session topics: created once each, and the memory of which exist is bounded."""

from __future__ import annotations

from collections.abc import Callable

from aiokafka.admin import AIOKafkaAdminClient

from tests.fixtures.waiting import eventually_true
from tokenwire.settings import Settings
from tokenwire.topics import SessionTopics


async def test_known_session_topics_are_bounded_and_a_forgotten_one_is_ensured_again(
    kafka_bootstrap: str, kafka_admin: AIOKafkaAdminClient, unique_name: Callable[..., str]
) -> None:
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap, session_topic_prefix=f"{unique_name('st')}.",
        session_topics_remembered=2,
    )
    topics = SessionTopics(settings, kafka_admin)
    names = [await topics.ensure(f"s{n}") for n in range(4)]
    try:
        assert len(topics) == 2

        async def all_listed() -> bool:
            return set(names) <= set(await kafka_admin.list_topics())

        await eventually_true(all_listed)
        # s0 was forgotten: ensuring it again asks the broker, which says it exists already.
        assert await topics.ensure("s0") == names[0]
        assert len(topics) == 2
    finally:
        await kafka_admin.delete_topics(names)
