"""Topics replicated below the settings: found, reported, and raised (``tokenwire topics``).

A topic made before a cluster grew (or by a tool that left replication at 1) keeps its replica
count for ever: ``acks=all`` then waits for one copy only and a broker's disk is the record. Two
things can be below ``Settings.kafka.replication(brokers)``:

- the replication factor, raised by a partition reassignment (AlterPartitionReassignments):
  each partition keeps its replicas and gains the least-loaded other brokers, the leader stays,
  and the brokers copy the log in the background; ``raise_replication`` waits until every new
  replica is in sync;
- ``min.insync.replicas``, set on the topic with IncrementalAlterConfigs, which changes that one
  config and leaves the others (retention) as they are.

aiokafka has no client call for either, so both requests are sent with its protocol structs.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.admin import AlterPartitionReassignmentsRequest
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Int8, Int16, Int32, Schema, String

from tokenwire.errors import TopicError
from tokenwire.kafka_clients import new_admin, new_client, send_to_any
from tokenwire.settings import Settings
from tokenwire.topics import Replication, core_topics

log = logging.getLogger(__name__)

MIN_INSYNC = "min.insync.replicas"
DESCRIBE_BATCH = 500
REASSIGN_TIMEOUT_MS = 30_000
IN_SYNC_POLL_S = 0.5
TOPIC_RESOURCE = 2  # ConfigResource type TOPIC in the Kafka protocol
SET = 0  # IncrementalAlterConfigs operation


@dataclass(frozen=True)
class TopicReplicas:
    """A topic as the cluster holds it: replica brokers per partition, and its min.insync."""

    name: str
    replicas: dict[int, tuple[int, ...]]
    in_sync: dict[int, tuple[int, ...]]
    min_insync: int

    @property
    def factor(self) -> int:
        return min((len(r) for r in self.replicas.values()), default=0)

    def below(self, wanted: Replication) -> bool:
        return self.factor < wanted.factor or self.min_insync < wanted.min_insync


async def describe(admin: AIOKafkaAdminClient, topics: Sequence[str]) -> list[TopicReplicas]:
    """Replicas and min.insync of ``topics`` (those that exist), asked in bounded batches."""
    found: list[TopicReplicas] = []
    for start in range(0, len(topics), DESCRIBE_BATCH):
        batch = list(topics[start : start + DESCRIBE_BATCH])
        min_insync = await _min_insync(admin, batch)
        for topic in await admin.describe_topics(batch):
            if topic["error_code"] != 0:
                continue  # deleted meanwhile
            partitions = topic["partitions"]
            found.append(
                TopicReplicas(
                    name=topic["topic"],
                    replicas={p["partition"]: tuple(p["replicas"]) for p in partitions},
                    in_sync={p["partition"]: tuple(p["isr"]) for p in partitions},
                    min_insync=min_insync.get(topic["topic"], 1),
                )
            )
    return found


async def _min_insync(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, int]:
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, topic, configs={MIN_INSYNC: None})
        for topic in topics
    ]
    values: dict[str, int] = {}
    for response in await admin.describe_configs(resources):
        for resource in response.to_object()["resources"]:
            for entry in resource["config_entries"]:
                if entry["config_names"] == MIN_INSYNC and entry["config_value"] is not None:
                    values[resource["resource_name"]] = int(entry["config_value"])
    return values


def plan_replicas(
    topics: Iterable[TopicReplicas], brokers: Sequence[int], factor: int
) -> dict[str, dict[int, list[int]]]:
    """New replica lists for partitions below ``factor``: current replicas first (the leader
    stays), then the brokers holding the fewest replicas so far."""
    topics = list(topics)
    load = Counter({broker: 0 for broker in brokers})
    for topic in topics:
        for replicas in topic.replicas.values():
            load.update(r for r in replicas if r in load)
    plan: dict[str, dict[int, list[int]]] = {}
    for topic in topics:
        for partition, replicas in sorted(topic.replicas.items()):
            if len(replicas) >= factor:
                continue
            target = list(replicas)
            for broker in sorted(load, key=lambda b: (load[b], b)):
                if len(target) >= factor:
                    break
                if broker not in target:
                    target.append(broker)
                    load[broker] += 1
            plan.setdefault(topic.name, {})[partition] = target
    return plan


async def raise_replication(
    client: AIOKafkaClient,
    admin: AIOKafkaAdminClient,
    plan: dict[str, dict[int, list[int]]],
    *,
    timeout_s: float,
) -> None:
    """Start the reassignments in ``plan`` and wait until every new replica is in sync."""
    if not plan:
        return
    request = AlterPartitionReassignmentsRequest(
        REASSIGN_TIMEOUT_MS,
        [
            (name, [(partition, replicas, {}) for partition, replicas in partitions.items()], {})
            for name, partitions in plan.items()
        ],
        {},
    )
    response = (await _send_to_any(client, request)).to_object()
    if response["error_code"]:
        raise TopicError(
            f"reassignment refused: error {response['error_code']} {response['error_message']}"
        )
    for topic in response["responses"]:
        for partition in topic["partitions"]:
            if partition["error_code"]:
                raise TopicError(
                    f"reassigning {topic['name']}[{partition['partition_index']}] refused: "
                    f"error {partition['error_code']} {partition['error_message']}"
                )
    async with asyncio.timeout(timeout_s):
        # The brokers say nothing when a copy catches up: asked again until all are in sync.
        while True:
            if await _in_sync(admin, plan):
                return
            await asyncio.sleep(IN_SYNC_POLL_S)


async def _in_sync(admin: AIOKafkaAdminClient, plan: dict[str, dict[int, list[int]]]) -> bool:
    for topic in await describe(admin, list(plan)):
        for partition, wanted in plan[topic.name].items():
            held = topic.replicas.get(partition, ())
            if set(held) != set(wanted) or not set(wanted) <= set(topic.in_sync.get(partition, ())):
                return False
    return True


class _IncrementalAlterConfigsResponse_v0(Response):
    API_KEY = 44
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "responses",
            Array(
                ("error_code", Int16),
                ("error_message", String("utf-8")),
                ("resource_type", Int8),
                ("resource_name", String("utf-8")),
            ),
        ),
    )


class _IncrementalAlterConfigsRequest_v0(RequestStruct):
    API_KEY = 44
    API_VERSION = 0
    RESPONSE_TYPE = _IncrementalAlterConfigsResponse_v0
    SCHEMA = Schema(
        (
            "resources",
            Array(
                ("resource_type", Int8),
                ("resource_name", String("utf-8")),
                (
                    "configs",
                    Array(
                        ("name", String("utf-8")),
                        ("config_operation", Int8),
                        ("value", String("utf-8")),
                    ),
                ),
            ),
        ),
        ("validate_only", Boolean),
    )


class IncrementalAlterConfigsRequest(Request[_IncrementalAlterConfigsRequest_v0]):
    """Sets single topic configs, leaving the topic's other configs untouched."""

    API_KEY = 44

    def __init__(self, topic_configs: dict[str, dict[str, str]]) -> None:
        self._resources = [
            (TOPIC_RESOURCE, topic, [(name, SET, value) for name, value in configs.items()])
            for topic, configs in topic_configs.items()
        ]

    def build(
        self, request_struct_class: type[_IncrementalAlterConfigsRequest_v0]
    ) -> _IncrementalAlterConfigsRequest_v0:
        return request_struct_class(self._resources, False)


async def set_min_insync(client: AIOKafkaClient, topics: Sequence[str], value: int) -> None:
    for start in range(0, len(topics), DESCRIBE_BATCH):
        batch = topics[start : start + DESCRIBE_BATCH]
        request = IncrementalAlterConfigsRequest({t: {MIN_INSYNC: str(value)} for t in batch})
        response = (await _send_to_any(client, request)).to_object()
        for resource in response["responses"]:
            if resource["error_code"]:
                raise TopicError(
                    f"setting {MIN_INSYNC}={value} on {resource['resource_name']} failed: "
                    f"error {resource['error_code']} {resource['error_message']}"
                )


async def _send_to_any(client: AIOKafkaClient, request: Request[RequestStruct]) -> Response:
    # KRaft brokers forward both requests to the active controller.
    return await send_to_any(client, request)


@dataclass(frozen=True)
class ReplicationReview:
    """What ``tokenwire topics`` found (and, with ``fix``, left after raising)."""

    wanted: Replication
    brokers: int
    core: list[TopicReplicas]
    sessions: list[TopicReplicas]
    fixed: list[str]

    def below(self) -> list[TopicReplicas]:
        return [t for t in (*self.core, *self.sessions) if t.below(self.wanted)]


async def review(
    settings: Settings, *, fix: bool = False, timeout_s: float = 300.0
) -> ReplicationReview:
    """Core and session topics against the replication the settings ask for on this cluster."""
    kafka = settings.kafka_connection
    admin = new_admin(kafka, client_id="tokenwire-topics")
    client = new_client(kafka, client_id="tokenwire-topics-repair")
    await admin.start()
    try:
        await client.bootstrap()
        cluster = await admin.describe_cluster()
        brokers = sorted(b["node_id"] for b in cluster["brokers"])
        wanted = Replication(*settings.kafka.replication(len(brokers)))
        core_names = [spec.name for spec in core_topics(settings)]
        names = await admin.list_topics()
        session_names = sorted(t for t in names if t.startswith(settings.session_topic_prefix))
        topics = await describe(admin, [t for t in core_names if t in names] + session_names)
        fixed: list[str] = []
        if fix:
            fixed = await _fix(client, admin, topics, brokers, wanted, timeout_s)
            topics = await describe(admin, [t.name for t in topics])
    finally:
        await client.close()
        await admin.close()
    core = [t for t in topics if t.name in core_names]
    sessions = [t for t in topics if t.name not in core_names]
    return ReplicationReview(wanted, len(brokers), core, sessions, fixed)


async def _fix(
    client: AIOKafkaClient,
    admin: AIOKafkaAdminClient,
    topics: list[TopicReplicas],
    brokers: list[int],
    wanted: Replication,
    timeout_s: float,
) -> list[str]:
    low = [t for t in topics if t.below(wanted)]
    plan = plan_replicas(low, brokers, wanted.factor)
    log.info("raising replication topics=%s to factor=%s", len(plan), wanted.factor)
    await raise_replication(client, admin, plan, timeout_s=timeout_s)
    # After the replicas, so a partition never asks for more in-sync copies than it has.
    low_min_insync = [t.name for t in low if t.min_insync < wanted.min_insync]
    await set_min_insync(client, low_min_insync, wanted.min_insync)
    return [t.name for t in low]


MAX_NAMED = 10


def report_lines(found: ReplicationReview) -> list[str]:
    """Human-readable lines: every core topic, session topics summed up (the low ones named)."""
    wanted = found.wanted
    lines = [
        f"cluster: {found.brokers} broker(s); wanted: replication factor {wanted.factor}, "
        f"min.insync.replicas {wanted.min_insync}"
    ]
    for topic in found.core:
        lines.append(_topic_line(topic, wanted))
    low = [t for t in found.sessions if t.below(wanted)]
    lines.append(f"session topics: {len(found.sessions)}, below the settings: {len(low)}")
    lines.extend(f"  {_topic_line(t, wanted)}" for t in low[:MAX_NAMED])
    if len(low) > MAX_NAMED:
        lines.append(f"  ... and {len(low) - MAX_NAMED} more")
    if found.fixed:
        lines.append(f"raised: {len(found.fixed)} topic(s)")
    elif found.below():
        lines.append("run `tokenwire topics --fix` to raise them")
    return lines


def _topic_line(topic: TopicReplicas, wanted: Replication) -> str:
    flag = "  BELOW" if topic.below(wanted) else ""
    return (
        f"{topic.name:<32} partitions {len(topic.replicas):<3} replicas {topic.factor}/"
        f"{wanted.factor}  min.insync {topic.min_insync}/{wanted.min_insync}{flag}"
    )
