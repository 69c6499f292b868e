"""A single-node KRaft Kafka broker run natively from the official jars on Maven Central.

``install`` resolves the broker's class path with Maven (see ``kafka-runtime.xml``) into
``<cache_dir>/kafka-<version>/libs`` once; ``start`` renders ``server.properties`` and
``log4j.properties`` into ``<state_dir>/kafka``, formats the data dir on first start and runs
``kafka.Kafka`` detached; ready means the port accepts connections and the log says
"Kafka Server started".
"""

from __future__ import annotations

import base64
import logging
import shutil
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from tokenwire.errors import ServiceError
from tokenwire.services.process import (
    Daemon,
    ensure_port_free,
    file_lock,
    port_open,
    run_logged,
    wait_ready,
)
from tokenwire.settings import Settings

logger = logging.getLogger(__name__)

NAME = "kafka"
HOST = "127.0.0.1"
READY_LINE = "Kafka Server started"
_COMPLETE = ".complete"


@dataclass(frozen=True)
class KafkaPaths:
    home: Path  # cache: jars, survives `down`
    state: Path  # config, data, logs, pid

    @classmethod
    def of(cls, settings: Settings) -> KafkaPaths:
        return cls(
            home=settings.cache_dir / f"kafka-{settings.kafka_version}",
            state=settings.state_dir / NAME,
        )

    @property
    def libs(self) -> Path:
        return self.home / "libs"

    @property
    def install_log(self) -> Path:
        return self.home / "install.log"

    @property
    def data(self) -> Path:
        return self.state / "data"

    @property
    def server_properties(self) -> Path:
        return self.state / "server.properties"

    @property
    def log4j_properties(self) -> Path:
        return self.state / "log4j.properties"

    @property
    def server_log(self) -> Path:
        return self.state / "kafka.log"

    @property
    def stdout_log(self) -> Path:
        return self.state / "kafka.out"


def address(settings: Settings) -> str:
    return f"{HOST}:{settings.kafka_port}"


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


def daemon(settings: Settings) -> Daemon:
    paths = KafkaPaths.of(settings)
    java = shutil.which("java") or "java"
    return Daemon(
        name=NAME,
        argv=[
            java,
            f"-Xmx{settings.kafka_heap}",
            f"-Xms{settings.kafka_heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{paths.log4j_properties}",
            f"-Dkafka.logs.dir={paths.state}",
            "-cp",
            f"{paths.libs}/*",
            "kafka.Kafka",
            str(paths.server_properties),
        ],
        log_path=paths.stdout_log,
        pid_path=paths.state / "kafka.pid",
        marker=str(paths.server_properties),
        cwd=paths.state,
    )


def running_pid(settings: Settings) -> int | None:
    return daemon(settings).running_pid()


def start(settings: Settings) -> tuple[int, bool]:
    """Start the broker unless it runs; wait until ready. Returns (pid, started_now)."""
    dmn = daemon(settings)
    pid = dmn.running_pid()
    if pid is not None:
        wait_ready(dmn, None, lambda: port_open(HOST, settings.kafka_port), 30.0)
        return pid, False
    install(settings)
    paths = KafkaPaths.of(settings)
    ensure_port_free(NAME, HOST, settings.kafka_port)
    ensure_port_free(f"{NAME} controller", HOST, settings.kafka_controller_port)
    _render_config(settings, paths)
    _format_once(settings, paths)
    log_offset = _size(paths.server_log)
    proc = dmn.start()

    def ready() -> bool:
        return port_open(HOST, settings.kafka_port) and _log_has(
            paths.server_log, log_offset, READY_LINE
        )

    waited = wait_ready(dmn, proc, ready, settings.service_start_timeout_s)
    logger.info("kafka ready on %s after %.1fs", address(settings), waited)
    return proc.pid, True


def stop(settings: Settings) -> int | None:
    return daemon(settings).stop(timeout_s=30.0)


def _render_config(settings: Settings, paths: KafkaPaths) -> None:
    paths.state.mkdir(parents=True, exist_ok=True)
    values = {
        "port": str(settings.kafka_port),
        "controller_port": str(settings.kafka_controller_port),
        "data_dir": str(paths.data),
        "log_file": str(paths.server_log),
    }
    for template, target in (
        ("kafka-server.properties", paths.server_properties),
        ("kafka-log4j.properties", paths.log4j_properties),
    ):
        text = resources.files("tokenwire.services").joinpath(template).read_text()
        target.write_text(Template(text).substitute(values))


def _format_once(settings: Settings, paths: KafkaPaths) -> None:
    """``kafka-storage format`` the data dir unless it already carries meta.properties."""
    if (paths.data / "meta.properties").exists():
        return
    java = shutil.which("java") or "java"
    run_logged(
        [
            java, "-Xmx128m", "-cp", f"{paths.libs}/*",
            f"-Dlog4j.configuration=file:{paths.log4j_properties}",
            "kafka.tools.StorageTool", "format",
            "-t", new_cluster_id(), "-c", str(paths.server_properties),
        ],
        paths.stdout_log,
        what="Kafka storage format",
    )  # fmt: skip


def new_cluster_id() -> str:
    """A Kafka ``Uuid`` as ``StorageTool random-uuid`` prints it: 16 random bytes, base64url."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka avoids ids that look like a CLI option
            return text


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
