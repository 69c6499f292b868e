"""Topic layout and creation. Auto-creation is off on the broker: every topic is made here.

Session topics are created on demand by the worker before the first event; concurrent requests
for one session share a single creation, and other sessions never wait on it.

Every topic is made with the cluster's ``Replication`` (``Settings.kafka``: by default
min(3, brokers) replicas and ``min.insync.replicas`` 2 from 3 replicas up), resolved once per
process from the brokers the cluster reports.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    NodeNotReadyError,
    RequestTimedOutError,
    TopicAlreadyExistsError,
    for_code,
)

from tokenwire.errors import TopicError
from tokenwire.kafka_clients import new_admin
from tokenwire.settings import Settings

log = logging.getLogger(__name__)

CREATE_TIMEOUT_MS = 10_000
# A session topic creation is tried again for this long (backoff doubling up to the max) when
# it fails for a moment: longer than a dead broker takes to be fenced (5 s locally).
CREATE_RETRY_FOR_S = 30.0
CREATE_BACKOFF_S = 0.2
CREATE_BACKOFF_MAX_S = 2.0
# How long a topic created a moment ago may go undescribed before co-partitioning is checked.
COPARTITION_WAIT_S = 10.0
INVALID_REPLICATION_FACTOR = 38


@dataclass(frozen=True)
class Replication:
    factor: int
    min_insync: int


# One replica: a single-broker cluster's only choice (and what tests on one broker use).
UNREPLICATED = Replication(1, 1)

@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int
    # Compacted as well as aged out: only the newest record per key is needed.
    compacted: bool = False

    def as_new_topic(self, replication: Replication) -> NewTopic:
        configs = {
            "retention.ms": str(self.retention_ms),
            "min.insync.replicas": str(replication.min_insync),
        }
        if self.compacted:
            configs["cleanup.policy"] = "compact,delete"
        return NewTopic(
            name=self.name,
            num_partitions=self.partitions,
            replication_factor=replication.factor,
            topic_configs=configs,
        )


async def cluster_replication(admin: AIOKafkaAdminClient, settings: Settings) -> Replication:
    """The replication the settings ask for, on the cluster this admin client talks to."""
    cluster = await admin.describe_cluster()
    factor, min_insync = settings.kafka.replication(len(cluster["brokers"]))
    return Replication(factor, min_insync)


def core_topics(settings: Settings) -> list[TopicSpec]:
    return [
        TopicSpec(
            settings.requests_topic, settings.requests_partitions, settings.requests_retention_ms
        ),
        TopicSpec(
            settings.events_topic, settings.requests_partitions, settings.events_retention_ms
        ),
        # Partition for partition with chat.requests: a session's cancel lands in the partition
        # with its requests' number (schemas/control.py).
        TopicSpec(
            settings.control_topic, settings.requests_partitions, settings.control_retention_ms
        ),
        TopicSpec(settings.alerts_topic, 1, settings.alerts_retention_ms),
        TopicSpec(settings.dead_letter_topic, 1, settings.dead_letter_retention_ms),
        *shared_session_topics(settings),
    ]


def topic_names(prefix: str) -> dict[str, str]:
    """Every topic name of one deployment under ``prefix``, as Settings fields: a benchmark or
    fault run's processes read and write only their own topics (session topics included)."""
    return {
        "requests_topic": f"{prefix}.requests",
        "events_topic": f"{prefix}.events",
        "alerts_topic": f"{prefix}.alerts",
        "dead_letter_topic": f"{prefix}.dlq",
        "control_topic": f"{prefix}.control",
        "session_topic_prefix": f"{prefix}.session.",
        "sessions_topic": f"{prefix}.sessions",
        "sessions_index_topic": f"{prefix}.sessions.index",
    }


def shared_session_topics(settings: Settings) -> list[TopicSpec]:
    """The shared layout's two topics (tokenwire/session_log.py), partition for partition with
    chat.requests: a session's events are written by the worker owning its requests."""
    if settings.session_layout != "shared":
        return []
    n, retention = settings.requests_partitions, settings.session_retention_ms
    return [
        TopicSpec(settings.sessions_topic, n, retention),
        TopicSpec(settings.sessions_index_topic, n, retention, compacted=True),
    ]


def copartitioned_topics(settings: Settings) -> list[str]:
    """Topics whose partition n belongs with chat.requests' partition n."""
    shared = [spec.name for spec in shared_session_topics(settings)]
    return [settings.requests_topic, settings.control_topic, *shared]


def session_topic_spec(settings: Settings, session_id: str) -> TopicSpec:
    return TopicSpec(settings.session_topic(session_id), 1, settings.session_retention_ms)


async def create_topics(
    admin: AIOKafkaAdminClient, specs: list[TopicSpec], replication: Replication
) -> None:
    """Create topics that do not exist yet; an existing topic is success, anything else raises."""
    existing = set(await admin.list_topics())
    missing = [spec.as_new_topic(replication) for spec in specs if spec.name not in existing]
    if not missing:
        return
    try:
        response = await admin.create_topics(missing, timeout_ms=CREATE_TIMEOUT_MS)
    except TopicAlreadyExistsError:
        return
    except Exception as exc:
        raise TopicError(f"creating {[t.name for t in missing]} failed: {exc!r}") from exc
    for name, code, message in _topic_errors(response):
        if code not in (0, TopicAlreadyExistsError.errno):
            raise TopicError(f"creating topic {name} failed: error {code} {message}")


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    errors = getattr(response, "topic_errors", None) or getattr(response, "topic_error_codes", [])
    result = []
    for entry in errors:
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        result.append((name, code, message))
    return result


async def ensure_core_topics(settings: Settings) -> None:
    admin = new_admin(settings.kafka_connection, client_id="tokenwire-topics")
    await admin.start()
    try:
        await create_topics(
            admin, core_topics(settings), await cluster_replication(admin, settings)
        )
        await _check_copartitioned(admin, *copartitioned_topics(settings))
    finally:
        await admin.close()


async def _check_copartitioned(admin: AIOKafkaAdminClient, *topics: str) -> None:
    """A session's cancels (and, shared, its events) are with its requests' worker only if
    these topics have as many partitions."""
    deadline = time.monotonic() + COPARTITION_WAIT_S
    while True:
        described = await admin.describe_topics(list(topics))
        counts = {d["topic"]: len(d.get("partitions") or ()) for d in described}
        # A topic created a moment ago may be described before its partitions are.
        if all(counts.get(t) for t in topics) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    if not all(counts.get(t) for t in topics):
        log.warning("partitions not described yet, co-partitioning unchecked counts=%s", counts)
        return
    if len(set(counts.values())) > 1:
        raise TopicError(
            f"topics must have the same number of partitions: {counts}; add partitions to the "
            "smaller (kafka-topics --alter --partitions) before starting"
        )


class SessionTopics:
    """Creates session topics once each; callers for the same topic await the same creation.

    Topics known to exist are remembered up to ``settings.session_topics_remembered``, least
    recently used forgotten first: a forgotten one costs one idempotent CreateTopics call.
    Creations in flight are bounded by the callers awaiting them.
    """

    def __init__(self, settings: Settings, admin: AIOKafkaAdminClient) -> None:
        self._settings = settings
        self._admin = admin
        self._capacity = settings.session_topics_remembered
        self._ready: OrderedDict[str, None] = OrderedDict()
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._replication: Replication | None = None
        # Set when the cluster said it has too few brokers for the factor: until a creation
        # with the full factor works again, new topics get as many replicas as brokers are up.
        self._short_of_brokers = False

    def __len__(self) -> int:
        """How many topics are remembered as existing."""
        return len(self._ready)

    def forget(self, topic: str) -> None:
        self._ready.pop(topic, None)

    def _remember(self, topic: str) -> None:
        self._ready[topic] = None
        self._ready.move_to_end(topic)
        while len(self._ready) > self._capacity:
            self._ready.popitem(last=False)

    async def ensure(self, session_id: str) -> str:
        spec = session_topic_spec(self._settings, session_id)
        if spec.name in self._ready:
            self._ready.move_to_end(spec.name)
            return spec.name
        pending = self._pending.get(spec.name)
        if pending is None:
            pending = asyncio.ensure_future(self._create(spec))
            self._pending[spec.name] = pending
            pending.add_done_callback(lambda _: self._pending.pop(spec.name, None))
        await asyncio.shield(pending)
        return spec.name

    async def _create(self, spec: TopicSpec) -> None:
        """Create ``spec``'s topic, riding out a broker's death for up to ``CREATE_RETRY_FOR_S``.

        A CreateTopics in flight to a broker that dies, or sent while the cluster still elects
        a controller, fails for a moment only; a new chat must not fail with it. While fewer
        brokers are up than the replication factor asks, the topic is made with as many
        replicas as there are brokers (logged; ``tokenwire topics --fix`` raises it later):
        a session topic is on the path to its chat's first token.
        """
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + CREATE_RETRY_FOR_S
        delay = CREATE_BACKOFF_S
        while True:
            try:
                created = await self._create_once(spec)
            except _TryAgain as exc:
                if loop.time() + delay > give_up_at:
                    raise TopicError(f"creating topic {spec.name} failed: {exc}") from exc
                log.info("creating topic again topic=%s in_s=%.1f why=%s", spec.name, delay, exc)
                await asyncio.sleep(delay)
                delay = min(CREATE_BACKOFF_MAX_S, delay * 2)
                continue
            if created:
                log.info("session topic created topic=%s", spec.name)
            self._remember(spec.name)
            return

    async def _create_once(self, spec: TopicSpec) -> bool:
        """True if created, False if it existed; ``_TryAgain`` for what passes on its own."""
        try:
            if self._replication is None:
                self._replication = await cluster_replication(self._admin, self._settings)
            replication = self._replication
            if self._short_of_brokers:
                replication = await self._degraded(replication)
            response = await self._admin.create_topics(
                [spec.as_new_topic(replication)], timeout_ms=CREATE_TIMEOUT_MS
            )
        except TopicAlreadyExistsError:
            return False
        except (KafkaConnectionError, NodeNotReadyError, RequestTimedOutError, TimeoutError,
                OSError) as exc:  # fmt: skip
            raise _TryAgain(repr(exc)) from exc
        except KafkaError as exc:
            if exc.retriable:
                raise _TryAgain(repr(exc)) from exc
            raise TopicError(f"creating topic {spec.name} failed: {exc!r}") from exc
        except Exception as exc:
            raise TopicError(f"creating topic {spec.name} failed: {exc!r}") from exc
        created = True
        for name, code, message in _topic_errors(response):
            if code == TopicAlreadyExistsError.errno:
                created = False
            elif code == INVALID_REPLICATION_FACTOR:
                self._short_of_brokers = True
                raise _TryAgain(f"error {code} {message}")
            elif code != 0 and for_code(code).retriable:
                raise _TryAgain(f"error {code} {message}")
            elif code != 0:
                raise TopicError(f"creating topic {name} failed: error {code} {message}")
        self._short_of_brokers = False
        return created

    async def _degraded(self, wanted: Replication) -> Replication:
        brokers = len((await self._admin.describe_cluster())["brokers"])
        if brokers >= wanted.factor:
            return wanted
        factor = max(1, brokers)
        log.warning(
            "fewer brokers up than replicas wanted: creating with replicas=%s (wanted %s); "
            "`tokenwire topics --fix` raises it once they are back", factor, wanted.factor,
        )  # fmt: skip
        return Replication(factor, min(wanted.min_insync, factor))


class _TryAgain(Exception):
    """A topic creation that failed for a moment (a broker died, a controller moved)."""
