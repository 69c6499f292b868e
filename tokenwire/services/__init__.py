"""Local Kafka and InfluxDB that tokenwire provisions and runs itself.

``up`` / ``down`` / ``status`` / ``install`` work on the services named (default: all) and are
what ``tokenwire services <action>`` and the test fixtures call. ``up`` is idempotent; ``down``
stops only the processes recorded in the state dir's pid files.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tokenwire.services import influxdb, kafka
from tokenwire.services.process import file_lock
from tokenwire.settings import Settings

ServiceName = Literal["kafka", "influxdb"]
ALL: tuple[ServiceName, ...] = ("kafka", "influxdb")


@dataclass(frozen=True)
class Service:
    name: ServiceName
    install: Callable[[Settings], Path]
    start: Callable[[Settings], tuple[int, bool]]
    stop: Callable[[Settings], int | None]
    running_pid: Callable[[Settings], int | None]
    address: Callable[[Settings], str]
    log: Callable[[Settings], Path]
    # Extra lines for humans: one per node of a cluster (status), where client files are (up).
    details: Callable[[Settings], list[str]] = lambda _: []
    notes: Callable[[Settings], list[str]] = lambda _: []


@dataclass(frozen=True)
class ServiceStatus:
    name: ServiceName
    running: bool
    pid: int | None
    address: str
    log: Path
    started_now: bool = False
    seconds: float = 0.0
    details: tuple[str, ...] = ()


SERVICES: dict[ServiceName, Service] = {
    "kafka": Service(
        "kafka",
        kafka.install,
        kafka.start,
        kafka.stop,
        kafka.running_pid,
        kafka.address,
        kafka.log_path,
        kafka.node_lines,
        kafka.client_files_lines,
    ),
    "influxdb": Service(
        "influxdb",
        influxdb.install,
        influxdb.start,
        influxdb.stop,
        influxdb.running_pid,
        influxdb.address,
        lambda s: influxdb.InfluxPaths.of(s).log,
    ),
}


def _lock(settings: Settings) -> Path:
    return settings.state_dir / ".services.lock"


def install(settings: Settings, names: Iterable[ServiceName] = ALL) -> dict[ServiceName, Path]:
    return {name: SERVICES[name].install(settings) for name in names}


def up(settings: Settings, names: Iterable[ServiceName] = ALL) -> list[ServiceStatus]:
    """Start what is not running and wait until all are ready (raises ServiceError)."""
    result = []
    with file_lock(_lock(settings)):
        for name in names:
            svc = SERVICES[name]
            began = time.monotonic()
            pid, started_now = svc.start(settings)
            result.append(
                ServiceStatus(
                    name,
                    True,
                    pid,
                    svc.address(settings),
                    svc.log(settings),
                    started_now,
                    time.monotonic() - began,
                    tuple(svc.details(settings) + svc.notes(settings)),
                )
            )
    return result


def down(settings: Settings, names: Iterable[ServiceName] = ALL) -> list[ServiceStatus]:
    """Stop the services this state dir's pid files name; reports the pid each one had."""
    result = []
    with file_lock(_lock(settings)):
        for name in reversed(list(names)):
            svc = SERVICES[name]
            began = time.monotonic()
            pid = svc.stop(settings)
            result.append(
                ServiceStatus(
                    name,
                    False,
                    pid,
                    svc.address(settings),
                    svc.log(settings),
                    seconds=time.monotonic() - began,
                )
            )
    return result


def status(settings: Settings, names: Iterable[ServiceName] = ALL) -> list[ServiceStatus]:
    result = []
    for name in names:
        svc = SERVICES[name]
        pid = svc.running_pid(settings)
        result.append(
            ServiceStatus(
                name,
                pid is not None,
                pid,
                svc.address(settings),
                svc.log(settings),
                details=tuple(svc.details(settings)),
            )
        )
    return result


__all__ = ["ALL", "SERVICES", "Service", "ServiceName", "ServiceStatus", "down", "status", "up"]
