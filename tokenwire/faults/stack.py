"""The system under fault: a simulator, two workers (one group) and two edges, as processes.

The run has its own topics and consumer group (``faults-<hex>``) on the cluster it is given;
every process can be killed (SIGKILL) and started again with the same settings, as a
supervisor would restart it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import uuid
from pathlib import Path

from pydantic import SecretStr

from tokenwire.bench.processes import Child, child_env, free_port, spawn, wait_http_ok
from tokenwire.bench.stack import BENCH_QUOTA
from tokenwire.kafka_clients import new_admin
from tokenwire.settings import Settings
from tokenwire.topics import ensure_core_topics, topic_names

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0
WORKERS = ("worker-1", "worker-2")
EDGES = ("edge-1", "edge-2")


def fault_settings(cluster: Settings, tag: str) -> Settings:
    sim_port = free_port()
    return cluster.model_copy(update={
        **topic_names(tag),
        "worker_id": f"{tag}-worker",
        "sim_port": sim_port,
        "openai_base_url": f"http://127.0.0.1:{sim_port}/v1",
        "openai_api_key": SecretStr("sim-key"),
        # One token event per simulator chunk: the client's answer is compared chunk by chunk.
        "coalesce_mode": "chunk",
        "sse_retry_ms": 250,
        "sse_ping_s": 2.0,
        # Development mode: development JWTs for the chat users, the local InfluxDB's token.
        "mode": "development",
        "auth": cluster.auth.model_copy(update={
            "stream_token_keys": {"faults": SecretStr(secrets.token_urlsafe(32))},
            "stream_token_kid": "faults",
            "tiers": {"default": BENCH_QUOTA},
        }),
    })


class FaultStack:
    def __init__(self, cluster: Settings, run_dir: Path) -> None:
        self.tag = f"faults-{uuid.uuid4().hex[:8]}"
        self.settings = fault_settings(cluster, self.tag)
        self.run_dir = run_dir
        self.ports = {name: free_port() for name in (*WORKERS, *EDGES)}
        self.children: dict[str, Child] = {}
        self._starts: dict[str, int] = {}

    @property
    def edges(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", self.ports[name]) for name in EDGES]

    def _settings_of(self, name: str) -> Settings:
        if name in WORKERS:
            return self.settings.model_copy(update={"worker_web_port": self.ports[name]})
        return self.settings

    def _argv(self, name: str) -> list[str]:
        if name == "sim":
            port = str(self.settings.sim_port)
            return ["-m", "tokenwire.cli", "sim", "--host", "127.0.0.1", "--port", port]
        if name in WORKERS:
            return ["-m", "tokenwire.cli", "worker"]
        return ["-m", "tokenwire.cli", "edge", "--host", "127.0.0.1", "--port",
                str(self.ports[name])]  # fmt: skip

    def _ready_url(self, name: str) -> str:
        if name == "sim":
            return f"http://127.0.0.1:{self.settings.sim_port}/healthz"
        return f"http://127.0.0.1:{self.ports[name]}/readyz"

    async def start(self) -> None:
        await ensure_core_topics(self.settings)
        for name in ("sim", *WORKERS, *EDGES):
            self._spawn(name)
        for name in ("sim", *WORKERS, *EDGES):
            await self.wait_ready(name)

    def _spawn(self, name: str) -> Child:
        self._starts[name] = self._starts.get(name, 0) + 1
        log_name = name if self._starts[name] == 1 else f"{name}.{self._starts[name]}"
        child = spawn(log_name, self._argv(name), child_env(self._settings_of(name)), self.run_dir)
        self.children[name] = child
        return child

    async def wait_ready(self, name: str) -> None:
        await wait_http_ok(self.children[name], self._ready_url(name), READY_TIMEOUT_S)

    def kill(self, name: str) -> None:
        """SIGKILL: no goodbye to the group, no flush, no closing of streams."""
        child = self.children[name]
        if child.alive():
            child.process.send_signal(signal.SIGKILL)
            child.process.wait()
        log.info("killed %s pid=%s", name, child.pid)

    async def restart(self, name: str) -> None:
        if self.children[name].alive():
            self.children[name].stop()
        self._spawn(name)
        await self.wait_ready(name)

    def stop_all(self) -> None:
        for name in reversed(list(self.children)):
            self.children[name].stop()

    async def delete_topics(self) -> None:
        """The run's topics, core and session, so runs do not pile up on the cluster."""
        admin = new_admin(self.settings.kafka_connection, client_id=f"{self.tag}-admin")
        await admin.start()
        try:
            # Core and session topics start with the tag, and so do the group's changelogs.
            mine = [t for t in await admin.list_topics() if t.startswith(self.tag)]
            if mine:
                await asyncio.wait_for(admin.delete_topics(mine), 60)
        finally:
            await admin.close()
