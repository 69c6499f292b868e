"""``tokenwire services``: the CLI on the running services, and the pid-file machinery under it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.fixtures.services import InfluxTarget, providers
from tokenwire.errors import ServiceError
from tokenwire.services import cli
from tokenwire.services import influxdb as native_influxdb
from tokenwire.services.process import Daemon, ensure_port_free, wait_ready
from tokenwire.settings import Settings


def _tokenwire(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tokenwire.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _require_native(request: pytest.FixtureRequest) -> None:
    used = providers(request.config)
    if any(used.get(name) != "native" for name in ("kafka", "influxdb")):
        pytest.skip(f"services come from {used}, not from `tokenwire services` (nothing to check)")


# --- the CLI on the session's services ----------------------------------------------------


def test_status_reports_both_services_up(
    request: pytest.FixtureRequest, kafka_bootstrap: str, influxdb: InfluxTarget
) -> None:
    _require_native(request)
    result = _tokenwire("services", "status")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert lines["kafka"].split()[1] == "up" and kafka_bootstrap in lines["kafka"]
    assert lines["influxdb"].split()[1] == "up" and influxdb.url in lines["influxdb"]
    assert "does not answer" not in result.stdout


def test_up_when_running_is_idempotent_and_fast(
    request: pytest.FixtureRequest, kafka_bootstrap: str, influxdb: InfluxTarget
) -> None:
    _require_native(request)
    before = _tokenwire("services", "status").stdout
    began = time.monotonic()
    result = _tokenwire("services", "up")
    elapsed = time.monotonic() - began
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("already running") == 2, result.stdout
    assert elapsed < 20, f"`up` on running services took {elapsed:.1f}s"
    assert _tokenwire("services", "status").stdout == before  # same pids


def test_onboarded_influxdb_rejects_another_token(
    request: pytest.FixtureRequest, influxdb: InfluxTarget
) -> None:
    if providers(request.config).get("influxdb") != "native":
        pytest.skip("InfluxDB is not the native one")
    wrong = Settings().model_copy(update={"influx_token": SecretStr("not-the-token")})
    with pytest.raises(ServiceError, match="already set up"):
        native_influxdb.ensure_setup(wrong)


# --- the CLI without services ---------------------------------------------------------------


def test_status_of_an_empty_state_dir_is_down_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.run("status", Settings(cache_dir=tmp_path)) == 1
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in out] == [["kafka", "down"], ["influxdb", "down"]]


def test_down_with_nothing_running_is_fine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.run("down", Settings(cache_dir=tmp_path)) == 0
    assert capsys.readouterr().out.count("was not running") == 2


# --- the pid-file daemon ----------------------------------------------------------------------


def _daemon(tmp_path: Path, code: str, marker: str = "tokenwire-test-marker") -> Daemon:
    return Daemon(
        name="sleeper",
        argv=[sys.executable, "-c", code, marker],
        log_path=tmp_path / "sleeper.log",
        pid_path=tmp_path / "sleeper.pid",
        marker=marker,
    )


SLEEP = "import time; print('sleeping', flush=True); time.sleep(300)"
IGNORE_TERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(300)"
)


def test_daemon_runs_in_its_own_session_and_stops_by_pid(tmp_path: Path) -> None:
    daemon = _daemon(tmp_path, SLEEP)
    proc = daemon.start()
    try:
        assert daemon.running_pid() == proc.pid
        assert int(daemon.pid_path.read_text()) == proc.pid
        assert os.getsid(proc.pid) == proc.pid != os.getsid(0)  # survives our exit
        assert daemon.stop(timeout_s=10) == proc.pid
        assert proc.wait(timeout=5) == -signal.SIGTERM
        assert not daemon.pid_path.exists()
        assert daemon.running_pid() is None
    finally:
        if proc.poll() is None:
            proc.kill()


def test_daemon_ignoring_sigterm_gets_sigkill(tmp_path: Path) -> None:
    daemon = _daemon(tmp_path, IGNORE_TERM)
    proc = daemon.start()
    try:
        wait_ready(daemon, proc, lambda: "ready" in daemon.log_path.read_text(), 10)
        assert daemon.stop(timeout_s=1) == proc.pid
        assert proc.wait(timeout=5) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()


def test_stale_pid_file_naming_another_process_is_dropped_not_killed(tmp_path: Path) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", SLEEP])  # no marker on its cmdline
    try:
        daemon = _daemon(tmp_path, SLEEP)
        daemon.pid_path.write_text(f"{bystander.pid}\n")
        assert daemon.running_pid() is None
        assert not daemon.pid_path.exists()
        assert daemon.stop() is None
        assert bystander.poll() is None  # untouched
    finally:
        bystander.kill()
        bystander.wait()


def test_pid_file_of_a_dead_process_is_dropped(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    daemon = _daemon(tmp_path, SLEEP)
    daemon.pid_path.write_text(f"{gone.pid}\n")
    assert daemon.running_pid() is None
    assert not daemon.pid_path.exists()


def test_a_daemon_that_exits_while_starting_names_its_log(tmp_path: Path) -> None:
    daemon = _daemon(tmp_path, "print('boom: bad config'); raise SystemExit(3)")
    proc = daemon.start()
    with pytest.raises(ServiceError) as failure:
        wait_ready(daemon, proc, lambda: False, timeout_s=20)
    message = str(failure.value)
    assert "exited with code 3" in message
    assert str(daemon.log_path) in message and "boom: bad config" in message
    assert not daemon.pid_path.exists()


def test_a_daemon_that_never_gets_ready_times_out_naming_its_log(tmp_path: Path) -> None:
    daemon = _daemon(tmp_path, SLEEP)
    proc = daemon.start()
    try:
        with pytest.raises(ServiceError, match="not ready within") as failure:
            wait_ready(daemon, proc, lambda: False, timeout_s=0.5)
        assert str(daemon.log_path) in str(failure.value)
    finally:
        daemon.stop(timeout_s=5)
        proc.wait(timeout=5)


def test_a_port_taken_by_someone_else_is_refused() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(ServiceError, match="already in use"):
            ensure_port_free("kafka", "127.0.0.1", port)
