"""The system under test for one run: simulator, worker, edge and relay as child processes.

Each run has its own topics, consumer group, ports and stream-token secret (``bench-<hex>``), so
it never reads another run's data; its topics are deleted at the end.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from pathlib import Path

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
)

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 90.0
TOPIC_BATCH = 200


BENCH_QUOTA = Quota(
    requests_per_minute=10_000_000, tokens_per_minute=10**12, concurrent_generations=1_000_000,
    new_sessions_per_minute=10_000_000, live_sessions=10_000_000, max_tokens=100_000,
)


def bench_settings(base: Settings, tag: str, config: BenchConfig) -> Settings:
    sim_port = free_port()
    largest = max(*config.concurrency, config.cancel_streams, 1)
    return base.model_copy(update={
        "requests_topic": f"{tag}.requests",
        "events_topic": f"{tag}.events",
        "alerts_topic": f"{tag}.alerts",
        "dead_letter_topic": f"{tag}.dlq",
        "control_topic": f"{tag}.control",
        "worker_id": f"{tag}-worker",
        "worker_web_port": free_port(),
        "worker_concurrency": max(64, 2 * largest),
        "edge_port": free_port(),
        "sim_port": sim_port,
        "sim_ttft_ms": config.ttft_ms,
        "sim_tokens_per_s": config.tps,
        "openai_base_url": f"http://127.0.0.1:{sim_port}/v1",
        "openai_api_key": SecretStr("sim-key"),
        # One event per chunk: each token's latency is measured on its own.
        "coalesce_mode": "chunk",
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


class BenchStack:
    def __init__(self, base: Settings, config: BenchConfig, run_dir: Path) -> None:
        self.tag = f"bench-{uuid.uuid4().hex[:8]}"
        self.base = base
        self.config = config
        self.settings = bench_settings(base, self.tag, config)
        self.run_dir = run_dir
        self.relay_port = free_port()
        self.children: dict[str, Child] = {}
        self.session_topics: set[str] = set()

    @property
    def kafka_pid(self) -> int | None:
        """The local broker's pid when the run uses ``tokenwire services``' Kafka."""
        from tokenwire.services import kafka

        if self.settings.kafka_bootstrap != kafka.address(self.base):
            return None
        return kafka.running_pid(self.base)

    def _spawn(self, name: str, argv: list[str], settings: Settings | None = None) -> Child:
        child = spawn(name, argv, child_env(settings or self.settings), self.run_dir)
        self.children[name] = child
        return child

    async def start(self, *, streaming: bool) -> None:
        await ensure_core_topics(self.settings)
        s = self.settings
        if streaming:
            sim = self._spawn("sim", ["-m", "tokenwire.cli", "sim", "--host", "127.0.0.1",
                                      "--port", str(s.sim_port)])
            relay = self._spawn("relay", ["-m", "tokenwire.bench.relay",
                                          "--port", str(self.relay_port)])
            worker = self._spawn("worker", ["-m", "tokenwire.cli", "worker"])
            edge = self.spawn_edge("edge", s.edge_port)
            await wait_http_ok(sim, f"http://127.0.0.1:{s.sim_port}/healthz", READY_TIMEOUT_S)
            await wait_http_ok(relay, f"http://127.0.0.1:{self.relay_port}/healthz",
                               READY_TIMEOUT_S)
            await wait_http_ok(edge, f"http://127.0.0.1:{s.edge_port}/readyz", READY_TIMEOUT_S)
            await wait_http_ok(worker, f"http://127.0.0.1:{s.worker_web_port}/readyz",
                               READY_TIMEOUT_S)

    def spawn_edge(self, name: str, port: int) -> Child:
        return self._spawn(name, ["-m", "tokenwire.cli", "edge", "--host", "127.0.0.1",
                                  "--port", str(port)])

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
        """Delete the run's topics (core and session); returns how many were deleted."""
        s = self.settings
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
