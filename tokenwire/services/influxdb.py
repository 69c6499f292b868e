"""InfluxDB 2.x OSS (``influxd``) run natively, built once from its Go module when needed.

The binary is ``settings.influxd`` if set, else ``influxd`` on PATH, else
``<cache_dir>/influxdb-<version>/bin/influxd``, built by :func:`build` on first use:

1. ``go install github.com/influxdata/pkg-config@v0.2.7`` -- influxdata's pkg-config wrapper that
   builds Flux's Rust library (libflux) with cargo when cgo asks for it;
2. ``go mod download -json github.com/influxdata/influxdb/v2@<version>`` and a writable copy of it
   (``go install ...@version`` is refused because the module's go.mod has replace directives);
3. ``go build ./cmd/influxd`` with ``GOFLAGS=-buildvcs=false -mod=mod``,
   ``RUSTUP_TOOLCHAIN=stable`` (Flux pins Rust 1.72 in a rust-toolchain file) and
   ``RUSTC_WORKSPACE_WRAPPER`` set to a script adding ``--cap-lints warn`` (flux-core has
   ``#![deny(warnings)]`` and newer compilers add lints; ``RUSTFLAGS`` is not enough because cargo
   does not apply it to build-script dependencies when ``--target`` is given, as the wrapper does).
   No ``assets`` tag: the server has no bundled UI, the HTTP API is complete.

``start`` runs it with every path under ``<state_dir>/influxdb`` and, on first start, onboards it
through ``POST /api/v2/setup`` with ``settings.influx_org/_bucket/_token``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import stat
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tokenwire.errors import ServiceError
from tokenwire.services.process import (
    Daemon,
    build_once,
    ensure_port_free,
    run_logged,
    wait_ready,
)
from tokenwire.settings import Settings

logger = logging.getLogger(__name__)

NAME = "influxdb"
HOST = "127.0.0.1"
MODULE = "github.com/influxdata/influxdb/v2"
PKG_CONFIG_MODULE = "github.com/influxdata/pkg-config@v0.2.7"
ADMIN_USER = "tokenwire"
_CAP_LINTS_WRAPPER = (
    '#!/bin/sh\n# tokenwire: build flux-core despite newer lints\nexec "$@" --cap-lints warn\n'
)


@dataclass(frozen=True)
class InfluxPaths:
    home: Path  # cache: the built binary, survives `down`
    state: Path  # bolt, engine, sqlite, log, pid

    @classmethod
    def of(cls, settings: Settings) -> InfluxPaths:
        return cls(
            home=settings.cache_dir / f"influxdb-{settings.influxdb_version}",
            state=settings.state_dir / NAME,
        )

    @property
    def built_binary(self) -> Path:
        return self.home / "bin" / "influxd"

    @property
    def build_log(self) -> Path:
        return self.home / "build.log"

    @property
    def bolt(self) -> Path:
        return self.state / "influxd.bolt"

    @property
    def log(self) -> Path:
        return self.state / "influxd.log"


def address(settings: Settings) -> str:
    return f"http://{HOST}:{settings.influx_port}"


def find_binary(settings: Settings) -> Path | None:
    """The influxd to run without building anything, if there is one."""
    if settings.influxd is not None:
        if not os.access(settings.influxd, os.X_OK):
            raise ServiceError(f"INFLUXD={settings.influxd} is not an executable file")
        return settings.influxd
    on_path = shutil.which("influxd")
    if on_path:
        return Path(on_path)
    built = InfluxPaths.of(settings).built_binary
    return built if os.access(built, os.X_OK) else None


def install(settings: Settings) -> Path:
    """The influxd binary, built from source into the cache the first time."""
    found = find_binary(settings)
    if found is not None:
        return found
    paths = InfluxPaths.of(settings)
    return build_once(paths.home, paths.built_binary, lambda: build(settings))


def build(settings: Settings) -> Path:
    """Build influxd ``settings.influxdb_version`` from its Go module (minutes, once)."""
    paths = InfluxPaths.of(settings)
    version = settings.influxdb_version
    tools = {name: shutil.which(name) for name in ("go", "cargo", "cc")}
    missing = [name for name, found in tools.items() if found is None]
    if missing:
        raise ServiceError(
            f"building influxd {version} needs go, cargo (Rust) and a C compiler on PATH; "
            f"missing: {', '.join(missing)} (or set INFLUXD to an influxd 2.x binary)"
        )
    go = str(tools["go"])
    tool_dir = paths.home / "tools"
    tool_dir.mkdir(parents=True, exist_ok=True)
    wrapper = tool_dir / "rustc-cap-lints"
    wrapper.write_text(_CAP_LINTS_WRAPPER)
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    log = paths.build_log
    started = time.monotonic()
    logger.info("building influxd %s from source; log %s", version, log)

    base_env = {k: v for k, v in os.environ.items() if k not in ("GOFLAGS", "RUSTFLAGS")}
    run_logged(
        [go, "install", PKG_CONFIG_MODULE],
        log,
        what="install influxdata/pkg-config",
        env={**base_env, "GOBIN": str(tool_dir)},
    )
    download = subprocess.run(
        [go, "mod", "download", "-json", f"{MODULE}@{version}"],
        env=base_env,
        capture_output=True,
        text=True,
        check=False,
    )
    with log.open("a") as fh:
        fh.write(download.stdout + download.stderr)
    try:
        module_dir = Path(json.loads(download.stdout)["Dir"])
    except (ValueError, KeyError) as exc:
        raise ServiceError(f"go mod download {MODULE}@{version} failed; log: {log}") from exc

    src = paths.home / "src"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(module_dir, src, symlinks=True)
    _make_writable(src)
    partial = paths.built_binary.with_name("influxd.partial")
    partial.parent.mkdir(parents=True, exist_ok=True)
    build_env = {
        **base_env,
        "GOFLAGS": "-buildvcs=false -mod=mod",
        "PKG_CONFIG": str(tool_dir / "pkg-config"),
        "RUSTUP_TOOLCHAIN": os.environ.get("RUSTUP_TOOLCHAIN", "stable"),
        "RUSTC_WORKSPACE_WRAPPER": str(wrapper),
    }
    ldflags = (
        f"-X main.version={version.removeprefix('v')} -X main.commit=tokenwire-source-build "
        f"-X main.date={datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"
    )
    run_logged(
        [go, "build", "-ldflags", ldflags, "-o", str(partial), "./cmd/influxd"],
        log,
        what=f"go build influxd {version}",
        cwd=src,
        env=build_env,
    )
    partial.replace(paths.built_binary)
    shutil.rmtree(src, ignore_errors=True)
    logger.info("built %s in %.0fs", paths.built_binary, time.monotonic() - started)
    return paths.built_binary


def daemon(settings: Settings, binary: Path | None = None) -> Daemon:
    paths = InfluxPaths.of(settings)
    exe = binary or find_binary(settings) or paths.built_binary
    # influxd reads INFLUXD_* variables and a config file in its cwd; keep both out of the way.
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUXD_")}
    return Daemon(
        name=NAME,
        argv=[
            str(exe),
            "run",
            "--bolt-path", str(paths.bolt),
            "--engine-path", str(paths.state / "engine"),
            "--sqlite-path", str(paths.state / "influxd.sqlite"),
            "--http-bind-address", f"{HOST}:{settings.influx_port}",
            "--reporting-disabled",
            "--log-level", "info",
        ],
        log_path=paths.log,
        pid_path=paths.state / "influxd.pid",
        marker=str(paths.bolt),
        cwd=paths.state,
        env=env,
    )  # fmt: skip


def running_pid(settings: Settings) -> int | None:
    return daemon(settings).running_pid()


def start(settings: Settings) -> tuple[int, bool]:
    """Start influxd unless it runs, wait until healthy, onboard once -> (pid, started_now)."""
    dmn = daemon(settings)
    pid = dmn.running_pid()
    if pid is not None:
        wait_ready(dmn, None, lambda: healthy(settings), 30.0)
        ensure_setup(settings)
        return pid, False
    binary = install(settings)
    dmn = daemon(settings, binary)
    InfluxPaths.of(settings).state.mkdir(parents=True, exist_ok=True)
    ensure_port_free(NAME, HOST, settings.influx_port)
    proc = dmn.start()
    waited = wait_ready(dmn, proc, lambda: healthy(settings), settings.service_start_timeout_s)
    logger.info("influxd ready on %s after %.1fs", address(settings), waited)
    ensure_setup(settings)
    return proc.pid, True


def stop(settings: Settings) -> int | None:
    return daemon(settings).stop(timeout_s=30.0)


def healthy(settings: Settings) -> bool:
    code, body = _request(settings, "GET", "/health")
    return code == 200 and isinstance(body, dict) and body.get("status") == "pass"


def ensure_setup(settings: Settings) -> None:
    """Onboard a fresh instance; on a set-up one, check the token and that the bucket exists."""
    code, body = _request(settings, "GET", "/api/v2/setup")
    if code != 200 or not isinstance(body, dict):
        log = InfluxPaths.of(settings).log
        raise ServiceError(f"GET /api/v2/setup answered {code}; log: {log}")
    if body.get("allowed"):
        code, body = _request(
            settings,
            "POST",
            "/api/v2/setup",
            body={
                "username": ADMIN_USER,
                "password": _admin_password(settings),
                "org": settings.influx_org,
                "bucket": settings.influx_bucket,
                "token": settings.influx_token.get_secret_value(),
                "retentionPeriodSeconds": 0,
            },
        )
        if code != 201:
            raise ServiceError(f"InfluxDB onboarding failed ({code}): {body}")
        logger.info("onboarded InfluxDB (org %s)", settings.influx_org)
        return
    query = urllib.parse.urlencode({"org": settings.influx_org})
    code, body = _request(settings, "GET", f"/api/v2/orgs?{query}", token=True)
    orgs = body.get("orgs") if isinstance(body, dict) else None
    if code != 200 or not orgs:
        raise ServiceError(
            f"InfluxDB at {address(settings)} is already set up, but not with org "
            f"{settings.influx_org!r} and this token (HTTP {code}); remove "
            f"{InfluxPaths.of(settings).state} after `tokenwire services down` to start afresh"
        )
    org_id = orgs[0]["id"]
    query = urllib.parse.urlencode({"orgID": org_id, "name": settings.influx_bucket})
    code, body = _request(settings, "GET", f"/api/v2/buckets?{query}", token=True)
    if code == 200 and isinstance(body, dict) and body.get("buckets"):
        return
    code, body = _request(
        settings,
        "POST",
        "/api/v2/buckets",
        token=True,
        body={"orgID": org_id, "name": settings.influx_bucket, "retentionRules": []},
    )
    if code != 201:
        raise ServiceError(f"creating bucket {settings.influx_bucket!r} failed ({code}): {body}")


def _admin_password(settings: Settings) -> str:
    """A random admin password, kept (0600) in the state dir; the token is what clients use."""
    path = InfluxPaths.of(settings).state / "admin-password"
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_urlsafe(18)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(password + "\n")
    return password


def _request(
    settings: Settings,
    method: str,
    path: str,
    *,
    token: bool = False,
    body: dict[str, Any] | None = None,
) -> tuple[int, Any]:
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Token {settings.influx_token.get_secret_value()}"
    request = urllib.request.Request(
        address(settings) + path, data=data, headers=headers, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise OSError(str(exc)) from exc
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def _make_writable(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, os.stat(dirpath).st_mode | stat.S_IWUSR)
        for name in filenames:
            file = os.path.join(dirpath, name)
            if not os.path.islink(file):
                os.chmod(file, os.stat(file).st_mode | stat.S_IWUSR)
