"""The system under test for one run: simulator and relay, and one ``Deployment`` of the
pipeline at a time (its workers and edges) as child processes.

Each run has its own topics, consumer groups, ports and stream-token secret (``bench-<hex>``), so
it never reads another run's data; each deployment (a session layout, how many workers and
edges) has topics and a group of its own (``bench-<hex>.<deployment>.*``), so layouts never share
a topic. The run's topics are deleted at the end.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from pydantic import SecretStr

from tokenwire.auth_settings import Quota
from tokenwire.bench.config import BenchConfig
from tokenwire.bench.processes import Child, child_env, cpu_seconds, free_port, spawn, wait_http_ok
from tokenwire.kafka_clients import new_admin
from tokenwire.settings import Settings
from tokenwire.topics import (
    cluster_replication,
    create_topics,
    ensure_core_topics,
    session_topic_spec,
    topic_names,
)

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 90.0
GROUP_POLL_S = 0.5
TOPIC_BATCH = 200


BENCH_QUOTA = Quota(
    requests_per_minute=10_000_000, tokens_per_minute=10**12, concurrent_generations=1_000_000,
    new_sessions_per_minute=10_000_000, live_sessions=10_000_000, max_tokens=100_000,
)


@dataclass(frozen=True)
class Deployment:
    """One pipeline under test: a session layout, its own topics and group, N workers (one
    consumer group) and M edges."""

    name: str
    layout: str
    workers: int = 1
    edges: int = 1


def layout_deployment(layout: str) -> Deployment:
    return Deployment(layout, layout)


# §4 of the issue: the shared layout scaled out, at the same offered load as one of each.
SCALE_OUT = Deployment("shared-2w2e", "shared", workers=2, edges=2)


def bench_settings(base: Settings, tag: str, config: BenchConfig) -> Settings:
    """What every process of the run shares (simulator, auth, quotas); ``deployment_settings``
    adds a deployment's topics, group and ports."""
    sim_port = free_port()
    largest = max(*config.concurrency, config.cancel_streams, 1)
    return base.model_copy(update={
        "worker_concurrency": max(64, 2 * largest),
        "sim_port": sim_port,
        "sim_ttft_ms": config.ttft_ms,
        "sim_tokens_per_s": config.tps,
        "openai_base_url": f"http://127.0.0.1:{sim_port}/v1",
        "openai_api_key": SecretStr("sim-key"),
        # chunk by default: one event per chunk, each token's latency measured on its own.
        "coalesce_mode": config.coalesce,
        "sse_ping_s": config.ping_s,
        # Development mode: the local InfluxDB's token, development JWTs for the bench's users;
        # fresh stream-token keys and quotas no benchmark reaches.
        "mode": "development",
        "auth": base.auth.model_copy(update={
            "stream_token_keys": {"bench": SecretStr(secrets.token_urlsafe(32))},
            "stream_token_kid": "bench",
            "tiers": {"default": BENCH_QUOTA},
        }),
        # The idle part holds up to max(idle) streams on one edge, idle/idle_sessions per user.
        "sse_max_connections": max(base.sse_max_connections, 2 * max(config.idle, default=0)),
        "sse_max_connections_per_user": max(
            base.sse_max_connections_per_user, max(config.idle, default=0)
        ),
        "log_level": config.log_level,
    })


def deployment_settings(common: Settings, tag: str, deployment: Deployment) -> Settings:
    prefix = f"{tag}.{deployment.name}"
    return common.model_copy(update={
        "session_layout": deployment.layout,
        # Under the tag, session topics too: the janitor of a topic-layout worker lists only
        # this run's sessions, and clean-up finds them by prefix.
        **topic_names(prefix),
        # The Faust app id, hence the consumer group: every worker of a deployment shares it
        # (they are told apart by their web ports), no two deployments do.
        "worker_id": f"{tag}-{deployment.name}-worker",
        "worker_web_port": free_port(),
        "edge_port": free_port(),
    })


async def group_partitions(admin: Any, settings: Settings) -> tuple[str, list[list[int]]]:
    """The worker group's state and, per member, the ``requests_topic`` partitions it owns."""
    [response] = await admin.describe_consumer_groups([settings.worker_id])
    group = response.to_object()["groups"][0]
    owned = []
    for member in group["members"]:
        raw = member["member_assignment"]
        assignment = ConsumerProtocolMemberAssignment.decode(raw).assignment if raw else []
        owned.append(sorted(p for topic, parts in assignment if topic == settings.requests_topic
                            for p in parts))
    return str(group["state"]), sorted(owned)


class BenchStack:
    def __init__(self, base: Settings, config: BenchConfig, run_dir: Path) -> None:
        self.tag = f"bench-{uuid.uuid4().hex[:8]}"
        self.base = base
        self.config = config
        self.common = bench_settings(base, self.tag, config)
        self._deployments: dict[str, Settings] = {}
        self.deployment = layout_deployment(config.primary_layout)
        # The deployment's settings (what its first worker and edge run with).
        self.settings = self._settings_of(self.deployment)
        self.run_dir = run_dir
        self.relay_port = free_port()
        self.children: dict[str, Child] = {}
        self.session_topics: set[str] = set()
        self.worker_ports: list[int] = []
        self.edge_ports: list[int] = []
        # Per worker of the deployment, the requests partitions it owned when timing began.
        self.assignment: list[list[int]] = []

    @property
    def kafka_pid(self) -> int | None:
        """The local broker's pid when the run uses ``tokenwire services``' Kafka."""
        from tokenwire.services import kafka

        if self.settings.kafka_bootstrap != kafka.address(self.base):
            return None
        return kafka.running_pid(self.base)

    def _spawn(self, name: str, argv: list[str], settings: Settings | None = None, *,
               log_name: str | None = None) -> Child:
        child = spawn(log_name or name, argv, child_env(settings or self.settings), self.run_dir)
        self.children[name] = child
        return child

    def _settings_of(self, deployment: Deployment) -> Settings:
        if deployment.name not in self._deployments:
            self._deployments[deployment.name] = deployment_settings(
                self.common, self.tag, deployment)
        return self._deployments[deployment.name]

    @property
    def layout(self) -> str:
        return self.settings.session_layout

    def select(self, deployment: Deployment) -> None:
        """Make ``deployment``'s settings current without starting anything (the idle part
        spawns its own edge)."""
        self.deployment, self.settings = deployment, self._settings_of(deployment)

    async def start(self, *, streaming: bool) -> None:
        """Simulator, relay and the primary layout's worker + edge (streaming), or only the
        primary layout's topics (the idle part alone)."""
        if not streaming:
            await ensure_core_topics(self.settings)
            return
        c = self.common
        sim = self._spawn("sim", ["-m", "tokenwire.cli", "sim", "--host", "127.0.0.1",
                                  "--port", str(c.sim_port)], c)
        relay = self._spawn("relay", ["-m", "tokenwire.bench.relay",
                                      "--port", str(self.relay_port)], c)
        await wait_http_ok(sim, f"http://127.0.0.1:{c.sim_port}/healthz", READY_TIMEOUT_S)
        await wait_http_ok(relay, f"http://127.0.0.1:{self.relay_port}/healthz", READY_TIMEOUT_S)
        await self.deploy(self.deployment)

    async def deploy(self, deployment: Deployment) -> None:
        """Stop the running workers and edges, start ``deployment``'s, and return once every
        one answers ready (and, with several workers, each owns requests partitions)."""
        self.stop_pipeline()
        self.select(deployment)
        s = self.settings
        await ensure_core_topics(s)
        self.worker_ports = [s.worker_web_port, *(free_port() for _ in
                                                  range(deployment.workers - 1))]
        self.edge_ports = [s.edge_port, *(free_port() for _ in range(deployment.edges - 1))]
        workers = [self._spawn(name, ["-m", "tokenwire.cli", "worker"],
                               s.model_copy(update={"worker_web_port": port}),
                               log_name=f"{deployment.name}-{name}")
                   for name, port in zip(_numbered("worker", len(self.worker_ports)),
                                         self.worker_ports, strict=True)]
        edges = [self.spawn_edge(name, port, log_name=f"{deployment.name}-{name}")
                 for name, port in zip(_numbered("edge", len(self.edge_ports)),
                                       self.edge_ports, strict=True)]
        for edge, port in zip(edges, self.edge_ports, strict=True):
            await wait_http_ok(edge, f"http://127.0.0.1:{port}/readyz", READY_TIMEOUT_S)
        for worker, port in zip(workers, self.worker_ports, strict=True):
            await wait_http_ok(worker, f"http://127.0.0.1:{port}/readyz", READY_TIMEOUT_S)
        self.assignment = await self._wait_for_group() if deployment.workers > 1 else []
        log.info("deployment up name=%s layout=%s workers=%d edges=%d assignment=%s",
                 deployment.name, deployment.layout, deployment.workers, deployment.edges,
                 self.assignment)

    async def _wait_for_group(self) -> list[list[int]]:
        """Until the group is stable with every worker in it, each owning requests partitions
        (a worker that joined late would otherwise take its share mid-scenario)."""
        s, want = self.settings, self.deployment.workers
        admin = new_admin(s.kafka_connection, client_id=f"{self.tag}-group-watch")
        await admin.start()
        seen: tuple[str, list[list[int]]] = ("not described", [])
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while time.monotonic() < deadline:
                try:
                    seen = await group_partitions(admin, s)
                except Exception as exc:  # the group's coordinator not known yet: ask again
                    seen = (f"not described ({exc!r})", [])
                state, owned = seen
                if state == "Stable" and len(owned) == want and all(owned):
                    return owned
                await asyncio.sleep(GROUP_POLL_S)
        finally:
            await admin.close()
        raise RuntimeError(f"worker group {s.worker_id} not split over {want} workers in "
                           f"{READY_TIMEOUT_S}s: state={seen[0]} partitions={seen[1]}")

    def spawn_edge(self, name: str, port: int, *, log_name: str | None = None) -> Child:
        return self._spawn(name, ["-m", "tokenwire.cli", "edge", "--host", "127.0.0.1",
                                  "--port", str(port)], log_name=log_name)

    def stop_pipeline(self) -> None:
        """The deployment's workers and edges (not the simulator, the relay or an idle edge)."""
        for name in [n for n in self.children if n.startswith(("worker", "edge"))
                     and n != "edge-idle"]:
            self.stop(name)

    def stop(self, name: str) -> None:
        child = self.children.pop(name, None)
        if child is not None:
            child.stop()

    def stop_all(self) -> None:
        for name in reversed(list(self.children)):
            self.stop(name)

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of every child that runs, and of the local broker."""
        sample = {name: child.cpu_seconds() for name, child in self.children.items()}
        pid = self.kafka_pid
        if pid is not None:
            sample["kafka"] = cpu_seconds(pid)
        return sample

    async def create_session_topics(self, session_ids: list[str]) -> None:
        """As POST /v1/chat does before a session's first request, in the topic layout; the
        shared layout has no topic per session (nothing to create)."""
        if self.layout != "topic":
            return
        admin = new_admin(self.settings.kafka_connection, client_id=f"{self.tag}-admin")
        await admin.start()
        try:
            specs = [session_topic_spec(self.settings, sid) for sid in session_ids]
            replication = await cluster_replication(admin, self.settings)
            for start in range(0, len(specs), TOPIC_BATCH):
                await create_topics(admin, specs[start : start + TOPIC_BATCH], replication)
        finally:
            await admin.close()
        self.session_topics.update(spec.name for spec in specs)

    async def delete_topics(self) -> int:
        """Delete the run's topics (every deployment's core, session and changelog topics start
        with the tag); returns how many were deleted."""
        s = self.common
        admin = new_admin(s.kafka_connection, client_id=f"{self.tag}-admin")
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            ours = sorted(t for t in existing if t.startswith(self.tag) or t in self.session_topics)
            for start in range(0, len(ours), TOPIC_BATCH):
                await admin.delete_topics(ours[start : start + TOPIC_BATCH], timeout_ms=30_000)
        finally:
            await admin.close()
        log.info("deleted bench topics count=%d tag=%s", len(ours), self.tag)
        return len(ours)


def _numbered(role: str, count: int) -> list[str]:
    """``worker``, ``worker2``, ...: the first keeps the name the one-of-each figures use."""
    return [role if k == 0 else f"{role}{k + 1}" for k in range(count)]
