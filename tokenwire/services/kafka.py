"""Local KRaft Kafka, one node or a cluster, run natively from the official jars on Maven Central.

``install`` resolves the broker's class path with Maven (see ``kafka-runtime.xml``) into
``<cache_dir>/kafka-<version>/libs`` once; every cluster on the machine shares it. A cluster's
state (config, data, logs, pids, secrets) lives in ``Settings.kafka_state_dir`` (default
``<state_dir>/kafka``), so several clusters run side by side with their own dirs and ports.

- ``kafka_nodes`` nodes, ids 1..n, each broker + controller; node ``i`` listens on
  ``kafka_port + 2(i-1)`` and its controller on ``kafka_controller_port + 2(i-1)``. One node
  keeps its files in the state dir itself, a cluster's node ``i`` in ``node-<i>/``.
- ``kafka_secured``: see ``kafka_security`` (CA, certificate, SCRAM users bootstrapped at format)
  and ``kafka_acls`` (the ACL table, created once the cluster is up).

``start`` renders each node's config, formats its data dir on first start (all nodes with one
cluster id), runs ``kafka.Kafka`` detached for every node and waits until each logs
"Kafka Server started" and the cluster's metadata lists every broker.

Node control for fault tests: :func:`node_ids`, :func:`node_address`, :func:`node_pid`,
:func:`kill_node`, :func:`stop_node`, :func:`start_node`. They block (they wait on processes and
the cluster): from async code call them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import shutil
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TypeVar

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.metadata import MetadataRequest

from tokenwire.errors import ServiceError
from tokenwire.kafka_clients import new_client
from tokenwire.kafka_settings import KafkaConnection
from tokenwire.services import kafka_acls, kafka_security
from tokenwire.services.kafka_config import HOST, NodeSpec, render
from tokenwire.services.process import (
    POLL_S,
    Daemon,
    ensure_port_free,
    file_lock,
    port_open,
    run_logged,
    stop_all,
    tail,
)
from tokenwire.settings import Settings

logger = logging.getLogger(__name__)

NAME = "kafka"
READY_LINE = "Kafka Server started"
STOP_TIMEOUT_S = 30.0
ACL_APPLY_TIMEOUT_S = 30.0
_COMPLETE = ".complete"
# Metadata naming no topic: the brokers a node knows, and nothing else.
_BROKERS_ONLY = MetadataRequest([], allow_auto_topic_creation=False)
T = TypeVar("T")


@dataclass(frozen=True)
class KafkaPaths:
    home: Path  # cache: jars, survives `down`, shared by every cluster
    state: Path  # this cluster's config, data, logs, pids, secrets

    @classmethod
    def of(cls, settings: Settings) -> KafkaPaths:
        return cls(
            home=settings.cache_dir / f"kafka-{settings.kafka_version}",
            state=settings.kafka_state_dir or settings.state_dir / NAME,
        )

    @property
    def libs(self) -> Path:
        return self.home / "libs"

    @property
    def install_log(self) -> Path:
        return self.home / "install.log"

    @property
    def cluster_id_file(self) -> Path:
        return self.state / "cluster.id"


# --- nodes -------------------------------------------------------------------------------------


def node_ids(settings: Settings) -> list[int]:
    return list(range(1, settings.kafka_nodes + 1))


def node_spec(settings: Settings, node_id: int) -> NodeSpec:
    if node_id not in node_ids(settings):
        raise ServiceError(f"no Kafka node {node_id} (nodes are {node_ids(settings)})")
    state = KafkaPaths.of(settings).state
    offset = 2 * (node_id - 1)
    return NodeSpec(
        node_id=node_id,
        port=settings.kafka_port + offset,
        controller_port=settings.kafka_controller_port + offset,
        directory=state if settings.kafka_nodes == 1 else state / f"node-{node_id}",
    )


def cluster(settings: Settings) -> list[NodeSpec]:
    return [node_spec(settings, node_id) for node_id in node_ids(settings)]


def node_address(settings: Settings, node_id: int) -> str:
    """``host:port`` of the node's client listener."""
    return f"{HOST}:{node_spec(settings, node_id).port}"


def address(settings: Settings) -> str:
    """The bootstrap list of the whole cluster (``Settings.kafka_bootstrap`` to use)."""
    return ",".join(node_address(settings, node_id) for node_id in node_ids(settings))


def node_daemon(settings: Settings, node_id: int) -> Daemon:
    paths, node = KafkaPaths.of(settings), node_spec(settings, node_id)
    heap = settings.kafka_heap if settings.kafka_nodes == 1 else settings.kafka_cluster_heap
    java = shutil.which("java") or "java"
    return Daemon(
        name=NAME if settings.kafka_nodes == 1 else f"{NAME} node {node_id}",
        argv=[
            java,
            f"-Xmx{heap}",
            f"-Xms{heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{node.log4j_properties}",
            f"-Dkafka.logs.dir={node.directory}",
            "-cp",
            f"{paths.libs}/*",
            "kafka.Kafka",
            str(node.server_properties),
        ],
        log_path=node.stdout_log,
        pid_path=node.pid_file,
        marker=str(node.server_properties),
        cwd=node.directory,
    )


def daemon(settings: Settings) -> Daemon:
    """The first node's daemon (the only one of a one-node cluster)."""
    return node_daemon(settings, 1)


def node_pid(settings: Settings, node_id: int) -> int | None:
    return node_daemon(settings, node_id).running_pid()


def kill_node(settings: Settings, node_id: int) -> None:
    """SIGKILL the node; returns once its process is gone."""
    node_daemon(settings, node_id).kill()


def stop_node(settings: Settings, node_id: int) -> None:
    """Graceful SIGTERM (controlled shutdown: leaderships move first); waits until it exited."""
    node_daemon(settings, node_id).stop(timeout_s=STOP_TIMEOUT_S)


def start_node(settings: Settings, node_id: int) -> None:
    """Start a stopped node of a cluster that ran before; returns once the cluster lists it."""
    node = node_spec(settings, node_id)
    if not (node.server_properties.exists() and (node.data / "meta.properties").exists()):
        raise ServiceError(f"Kafka node {node_id} was never provisioned; run `up` first")
    if node_pid(settings, node_id) is None:
        _launch_and_wait(settings, [node])
    _wait_brokers(settings, {node_id}, settings.service_start_timeout_s)


# --- the service -------------------------------------------------------------------------------


def running_pid(settings: Settings) -> int | None:
    """The first running node's pid (any node up counts as the service running)."""
    return next((pid for i in node_ids(settings) if (pid := node_pid(settings, i))), None)


def installed(settings: Settings) -> bool:
    return (KafkaPaths.of(settings).libs / _COMPLETE).exists()


def install(settings: Settings) -> Path:
    """Resolve the broker jars into the cache (once); returns the libs dir."""
    paths = KafkaPaths.of(settings)
    if installed(settings):
        return paths.libs
    java, mvn = shutil.which("java"), shutil.which("mvn")
    if java is None or mvn is None:
        raise ServiceError(
            f"installing Kafka needs `java` (17+) and `mvn` on PATH (found java={java}, mvn={mvn})"
        )
    paths.home.mkdir(parents=True, exist_ok=True)
    with file_lock(paths.home / ".install.lock"):
        if installed(settings):
            return paths.libs
        staging = paths.home / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        pom = resources.files("tokenwire.services").joinpath("kafka-runtime.xml")
        with resources.as_file(pom) as pom_path:
            logger.info("resolving Kafka %s jars with Maven", settings.kafka_version)
            run_logged(
                [
                    mvn, "-q", "-B", "-f", str(pom_path),
                    "dependency:copy-dependencies",
                    f"-DoutputDirectory={staging}",
                    "-DincludeScope=runtime",
                    f"-Dkafka.version={settings.kafka_version}",
                ],
                paths.install_log,
                what=f"Kafka {settings.kafka_version} install (mvn)",
            )  # fmt: skip
        if not any(staging.glob("kafka_2.13-*.jar")):
            raise ServiceError(f"Maven resolved no kafka_2.13 jar; log: {paths.install_log}")
        shutil.rmtree(paths.libs, ignore_errors=True)
        staging.rename(paths.libs)
        (paths.libs / _COMPLETE).write_text(f"{settings.kafka_version}\n")
    return paths.libs


def start(settings: Settings) -> tuple[int, bool]:
    """Start every node not running; wait until the cluster is ready. Returns (pid, started_now).

    A secured cluster gets its ACLs (again: creating one that exists is a no-op) once ready.
    """
    nodes = cluster(settings)
    stopped = [node for node in nodes if node_pid(settings, node.node_id) is None]
    if stopped:
        install(settings)
        paths = KafkaPaths.of(settings)
        credentials = (
            kafka_security.ensure_material(paths.state) if settings.kafka_secured else None
        )
        for node in stopped:
            ensure_port_free(f"{NAME} node {node.node_id}", HOST, node.port)
            ensure_port_free(f"{NAME} node {node.node_id} controller", HOST, node.controller_port)
            render(node, nodes, credentials, paths.state)
        _format_once(settings, stopped, credentials)
        began = time.monotonic()
        _launch_and_wait(settings, stopped)
        logger.info(
            "kafka nodes %s ready after %.1fs",
            [n.node_id for n in stopped],
            time.monotonic() - began,
        )
    _wait_brokers(settings, set(node_ids(settings)), settings.service_start_timeout_s)
    if settings.kafka_secured:
        _run(lambda: _provision_acls(settings))
    pid = running_pid(settings)
    if pid is None:
        raise ServiceError(f"kafka stopped right after starting; log: {nodes[0].server_log}")
    return pid, bool(stopped)


def stop(settings: Settings) -> int | None:
    """Stop every node (all at once); the first pid stopped, if any."""
    pids = stop_all([node_daemon(settings, i) for i in node_ids(settings)], STOP_TIMEOUT_S)
    return pids[0] if pids else None


def log_path(settings: Settings) -> Path:
    return node_spec(settings, 1).server_log


def node_lines(settings: Settings) -> list[str]:
    """One status line per node of a cluster (nothing extra for a single node)."""
    if settings.kafka_nodes == 1:
        return []
    lines = []
    for node in cluster(settings):
        pid = node_pid(settings, node.node_id)
        state = f"up    pid {pid:<7}" if pid else f"down  {'-':<11}"
        lines.append(f"  node {node.node_id} {state} {HOST}:{node.port:<15} log {node.server_log}")
    return lines


def client_files_lines(settings: Settings) -> list[str]:
    """Where a secured cluster's client settings are (what ``services up`` prints)."""
    if not settings.kafka_secured:
        return []
    paths = kafka_security.SecurityPaths(KafkaPaths.of(settings).state)
    lines = [f"  CA certificate      {paths.ca_cert}"]
    for principal in kafka_security.PRINCIPALS:
        lines.append(f"  client settings     {paths.client_env(principal)}  ({principal})")
    return lines


# --- provisioning ------------------------------------------------------------------------------


def admin_connection(settings: Settings) -> KafkaConnection:
    """The super user's connection to this cluster (plaintext when it is not secured)."""
    if not settings.kafka_secured:
        return KafkaConnection.plaintext(address(settings))
    root = KafkaPaths.of(settings).state
    credentials = kafka_security.load_credentials(root)
    security = kafka_security.client_security(root, credentials, kafka_security.ADMIN)
    return KafkaConnection(address(settings), security)


def _format_once(
    settings: Settings, nodes: list[NodeSpec], credentials: kafka_security.Credentials | None
) -> None:
    """``kafka-storage format`` the nodes lacking meta.properties, in parallel, one cluster id."""
    todo = [node for node in nodes if not (node.data / "meta.properties").exists()]
    if not todo:
        return
    paths = KafkaPaths.of(settings)
    cluster_id = _cluster_id(paths)
    java = shutil.which("java") or "java"
    scram = kafka_security.scram_format_args(credentials) if credentials else []
    running = []
    for node in todo:
        argv = [
            java, "-Xmx128m", "-cp", f"{paths.libs}/*",
            f"-Dlog4j.configuration=file:{node.log4j_properties}",
            "kafka.tools.StorageTool", "format",
            "-t", cluster_id, "-c", str(node.server_properties), *scram,
        ]  # fmt: skip
        log = node.stdout_log.open("ab")
        log.write(f"\n--- tokenwire: Kafka storage format node {node.node_id}\n".encode())
        log.flush()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        running.append((node, proc, log))
    failed = []
    for node, proc, log in running:
        code = proc.wait()
        log.close()
        if code != 0:
            failed.append(
                f"node {node.node_id} (exit {code}); log: {node.stdout_log}\n"
                f"{tail(node.stdout_log)}"
            )
    if failed:
        raise ServiceError("Kafka storage format failed: " + "\n".join(failed))


def _cluster_id(paths: KafkaPaths) -> str:
    paths.state.mkdir(parents=True, exist_ok=True)
    if paths.cluster_id_file.exists():
        return paths.cluster_id_file.read_text().strip()
    cluster_id = new_cluster_id()
    paths.cluster_id_file.write_text(f"{cluster_id}\n")
    return cluster_id


def new_cluster_id() -> str:
    """A Kafka ``Uuid`` as ``StorageTool random-uuid`` prints it: 16 random bytes, base64url."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka avoids ids that look like a CLI option
            return text


def _launch_and_wait(settings: Settings, nodes: list[NodeSpec]) -> None:
    """Start the nodes together (a quorum forms only once a majority runs), wait for each."""
    started = []
    for node in nodes:
        dmn = node_daemon(settings, node.node_id)
        offset = _size(node.server_log)
        started.append((node, dmn, dmn.start(), offset))
    deadline = time.monotonic() + settings.service_start_timeout_s
    waiting = list(started)
    while waiting:
        for node, dmn, proc, offset in list(waiting):
            if proc.poll() is not None:
                dmn.pid_path.unlink(missing_ok=True)
                raise ServiceError(
                    f"{dmn.name} exited with code {proc.returncode} while starting; "
                    f"log: {node.server_log}\n{tail(node.server_log)}\n{tail(node.stdout_log)}"
                )
            if port_open(HOST, node.port) and _log_has(node.server_log, offset, READY_LINE):
                waiting.remove((node, dmn, proc, offset))
        if waiting and time.monotonic() >= deadline:
            node = waiting[0][0]
            raise ServiceError(
                f"kafka node {node.node_id} was not ready within "
                f"{settings.service_start_timeout_s:.0f}s; log: {node.server_log}\n"
                f"{tail(node.server_log)}"
            )
        if waiting:
            time.sleep(POLL_S)


def _wait_brokers(settings: Settings, expected: set[int], timeout_s: float) -> None:
    """Until every node's metadata lists every broker in ``expected`` (registered, unfenced).

    Every node is asked: each learns of the others from the metadata log at its own pace.
    """
    connection, nodes = admin_connection(settings), set(node_ids(settings))
    _run(lambda: _brokers_listed(connection, nodes, expected, timeout_s))


async def _brokers_listed(
    connection: KafkaConnection, nodes: set[int], expected: set[int], timeout_s: float
) -> None:
    client = new_client(connection, client_id="tokenwire-services")
    lagging = set(nodes)
    try:
        async with asyncio.timeout(timeout_s):
            await _bootstrap(client)
            while lagging:
                for node_id in sorted(lagging):
                    if expected <= await _brokers_seen_by(client, node_id):
                        lagging.discard(node_id)
                if lagging:
                    await asyncio.sleep(POLL_S)
                    await _refresh_brokers(client)
    except TimeoutError as exc:
        raise ServiceError(
            f"kafka nodes {sorted(lagging)} did not list brokers {sorted(expected)} within "
            f"{timeout_s:.0f}s"
        ) from exc
    finally:
        await client.close()


async def _bootstrap(client: AIOKafkaClient) -> None:
    while True:
        try:
            await client.bootstrap()
            return
        except KafkaError as exc:
            logger.debug("kafka not answering yet: %r", exc)
            await asyncio.sleep(POLL_S)


async def _refresh_brokers(client: AIOKafkaClient) -> None:
    """Learn the brokers a live node knows, naming no topic (``force_metadata_update`` would
    fetch every topic's metadata: thousands of session topics on a busy cluster)."""
    node_id = client.get_random_node()
    if node_id is None:
        # Bootstrapped off a node that answered before any broker was registered: its metadata
        # named no broker, so nothing is known to ask; bootstrap again (this hung `up` for good).
        await _bootstrap(client)
        return
    try:
        response = await client.send(node_id, _BROKERS_ONLY)
    except KafkaError as exc:
        logger.debug("kafka node %s not answering yet: %r", node_id, exc)
        return
    client.cluster.update_metadata(response)


async def _brokers_seen_by(client: AIOKafkaClient, node_id: int) -> set[int]:
    if client.cluster.broker_metadata(node_id) is None:
        return set()  # not known to the client yet (asking would log an error)
    try:
        response = await client.send(node_id, _BROKERS_ONLY)
    except KafkaError as exc:
        logger.debug("kafka node %s not answering yet: %r", node_id, exc)
        return set()
    return {broker[0] for broker in response.brokers}


async def _provision_acls(settings: Settings) -> None:
    acls = kafka_acls.acl_table(settings)
    client = new_client(admin_connection(settings), client_id="tokenwire-services-acls")
    try:
        await client.bootstrap()
        await kafka_acls.create_acls(client, acls)
        await kafka_acls.wait_applied(
            client, node_ids(settings), len(set(acls)), ACL_APPLY_TIMEOUT_S
        )
    except TimeoutError as exc:
        raise ServiceError("the brokers did not apply the new ACLs in time") from exc
    finally:
        await client.close()
    logger.info("kafka ACLs in place count=%d", len(set(acls)))


def _run(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a loop of its own, in a thread: callers may already be
    inside an event loop (async tests), where ``asyncio.run`` is refused."""

    async def main() -> T:
        return await make()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenwire-kafka") as pool:
        return pool.submit(asyncio.run, main()).result()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _log_has(path: Path, offset: int, needle: str) -> bool:
    try:
        with path.open("rb") as fh:
            if fh.seek(0, 2) < offset:  # rolled over since we looked
                offset = 0
            fh.seek(offset)
            return needle.encode() in fh.read()
    except OSError:
        return False
