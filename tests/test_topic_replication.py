"""Replication follows the cluster: new topics get min(3, brokers) replicas and min.insync 2, and
``tokenwire topics`` finds topics below that and ``--fix`` raises them (keeping their configs)."""

from __future__ import annotations

import asyncio
import sys
import uuid
from dataclasses import dataclass

from aiokafka.admin import NewTopic

from tests.fixtures.waiting import eventually_true
from tokenwire.bench.processes import child_env
from tokenwire.kafka_clients import new_admin
from tokenwire.kafka_settings import KafkaSettings
from tokenwire.settings import Settings
from tokenwire.topic_replication import describe
from tokenwire.topics import SessionTopics, cluster_replication, ensure_core_topics

RETENTION_MS = "3600000"


def _own_topics(cluster: Settings, **overrides: object) -> Settings:
    tag = f"repl-{uuid.uuid4().hex[:8]}"
    return cluster.model_copy(update={
        "requests_topic": f"{tag}.requests", "events_topic": f"{tag}.events",
        "alerts_topic": f"{tag}.alerts", "dead_letter_topic": f"{tag}.dlq",
        "control_topic": f"{tag}.control",
        "session_topic_prefix": f"{tag}.session.", "mode": "development", **overrides,
    })  # fmt: skip


def test_the_default_is_three_replicas_and_two_in_sync_from_three_brokers_up() -> None:
    defaults = KafkaSettings()
    assert defaults.replication(1) == (1, 1)
    assert defaults.replication(2) == (2, 1)
    assert defaults.replication(3) == (3, 2)
    assert defaults.replication(5) == (3, 2)
    assert KafkaSettings(replication_factor=2, min_insync_replicas=2).replication(5) == (2, 2)


async def test_core_and_session_topics_are_made_with_the_clusters_replication(
    kafka_cluster3: Settings,
) -> None:
    settings = _own_topics(kafka_cluster3)
    await ensure_core_topics(settings)
    admin = new_admin(settings.kafka_connection, client_id="test-replication")
    await admin.start()
    try:
        assert (await cluster_replication(admin, settings)).factor == 3
        session_topic = await SessionTopics(settings, admin).ensure("s1")

        async def replicated() -> bool:
            # Asked of any broker; a new topic's configs reach each one a moment apart.
            found = await describe(admin, [settings.requests_topic, session_topic])
            return [(t.factor, t.min_insync) for t in found] == [(3, 2), (3, 2)]

        await eventually_true(replicated)
    finally:
        await admin.close()


async def test_topics_reports_an_under_replicated_topic_and_fix_raises_it(
    kafka_cluster3: Settings,
) -> None:
    settings = _own_topics(kafka_cluster3)
    await ensure_core_topics(settings)
    legacy = settings.session_topic("legacy")
    admin = new_admin(settings.kafka_connection, client_id="test-replication")
    await admin.start()
    try:
        # A topic as a tool that left replication at 1 would have made it.
        await admin.create_topics(
            [NewTopic(legacy, 2, 1, topic_configs={"retention.ms": RETENTION_MS})]
        )

        report = await _topics_cli(settings)
        assert report.returncode == 1, report.stdout
        assert f"{legacy}" in report.stdout and "BELOW" in report.stdout

        fixed = await _topics_cli(settings, "--fix")
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr

        async def raised() -> bool:
            (topic,) = await describe(admin, [legacy])
            three = all(len(set(r)) == 3 for r in topic.replicas.values())
            return three and (topic.factor, topic.min_insync) == (3, 2)

        await eventually_true(raised)
        assert await _retention(admin, legacy) == RETENTION_MS
        assert (await _topics_cli(settings)).returncode == 0
    finally:
        await admin.delete_topics([legacy])
        await admin.close()


@dataclass(frozen=True)
class CliRun:
    returncode: int
    stdout: str
    stderr: str


async def _topics_cli(settings: Settings, *args: str) -> CliRun:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tokenwire.cli", "topics", *args, env=child_env(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode is not None
    return CliRun(process.returncode, out.decode(), err.decode())


async def _retention(admin: object, topic: str) -> str | None:
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": None})
    for response in await admin.describe_configs([resource]):  # type: ignore[attr-defined]
        for entry in response.to_object()["resources"][0]["config_entries"]:
            if entry["config_names"] == "retention.ms":
                return str(entry["config_value"])
    return None
