"""A daemon started by tokenwire and found again through its pid file.

A :class:`Daemon` is started in its own session (so it outlives the ``tokenwire services up``
process), its pid is written to a file in the state dir, and it is only ever stopped by that pid
after checking that ``/proc/<pid>/cmdline`` still carries the daemon's ``marker`` (a path under
the state dir) -- a stale pid file that now names some other process is removed, never killed.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tokenwire.errors import ServiceError

logger = logging.getLogger(__name__)

POLL_S = 0.2
LOG_TAIL_LINES = 15


@dataclass(frozen=True)
class Daemon:
    """How to start one long-running process and how to recognise it later."""

    name: str
    argv: Sequence[str]
    log_path: Path
    pid_path: Path
    marker: str
    cwd: Path | None = None
    env: Mapping[str, str] | None = field(default=None, repr=False)

    def running_pid(self) -> int | None:
        """The pid of this daemon if it runs; a stale pid file is removed."""
        pid = _read_pid(self.pid_path)
        if pid is None:
            return None
        if _is_alive(pid) and self.marker in _cmdline(pid):
            return pid
        logger.info("removing stale pid file %s (pid %s)", self.pid_path, pid)
        self.pid_path.unlink(missing_ok=True)
        return None

    def start(self) -> subprocess.Popen[bytes]:
        """Start the process detached from this one and record its pid."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.pid_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ if self.env is None else self.env)
        with self.log_path.open("ab") as log:
            log.write(f"\n--- tokenwire: starting {self.name} at {time.ctime()}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                list(self.argv),
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _write_atomically(self.pid_path, f"{proc.pid}\n")
        logger.info("started %s pid %d, log %s", self.name, proc.pid, self.log_path)
        return proc

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL. Returns the pid stopped, if any."""
        pid = self.running_pid()
        if pid is None:
            return None
        logger.info("stopping %s pid %d", self.name, pid)
        _signal(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout_s):
            logger.warning("%s pid %d ignored SIGTERM %.0fs: SIGKILL", self.name, pid, timeout_s)
            _signal(pid, signal.SIGKILL)
            if not _wait_gone(pid, 10.0):
                raise ServiceError(f"{self.name} pid {pid} survived SIGKILL; see {self.log_path}")
        self.pid_path.unlink(missing_ok=True)
        return pid

    def terminate(self) -> int | None:
        """SIGTERM without waiting (see :func:`stop_all`); the pid signalled, if any."""
        pid = self.running_pid()
        if pid is not None:
            logger.info("stopping %s pid %d", self.name, pid)
            _signal(pid, signal.SIGTERM)
        return pid

    def kill(self, timeout_s: float = 10.0) -> int | None:
        """SIGKILL (no shutdown hook runs) and return once the process is gone."""
        pid = self.running_pid()
        if pid is None:
            return None
        logger.info("killing %s pid %d", self.name, pid)
        _signal(pid, signal.SIGKILL)
        if not _wait_gone(pid, timeout_s):
            raise ServiceError(f"{self.name} pid {pid} survived SIGKILL; see {self.log_path}")
        self.pid_path.unlink(missing_ok=True)
        return pid


def stop_all(daemons: Sequence[Daemon], timeout_s: float = 30.0) -> list[int]:
    """SIGTERM all at once, then wait for each (SIGKILL after ``timeout_s``): the pids stopped.

    At once, because members of a quorum stopped one by one lose their majority on the way, and
    the last ones then wait out their shutdown timeouts.
    """
    signalled = [(dmn, pid) for dmn in daemons if (pid := dmn.terminate()) is not None]
    deadline = time.monotonic() + timeout_s
    for dmn, pid in signalled:
        if not _wait_gone(pid, max(0.0, deadline - time.monotonic())):
            logger.warning("%s pid %d ignored SIGTERM %.0fs: SIGKILL", dmn.name, pid, timeout_s)
            dmn.kill()
        dmn.pid_path.unlink(missing_ok=True)
    return [pid for _, pid in signalled]


def wait_ready(
    daemon: Daemon,
    proc: subprocess.Popen[bytes] | None,
    ready: Callable[[], bool],
    timeout_s: float,
) -> float:
    """Poll ``ready`` until it is true; fail naming the log if the process exits or time runs out.

    Returns the seconds waited.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            daemon.pid_path.unlink(missing_ok=True)
            raise ServiceError(
                f"{daemon.name} exited with code {proc.returncode} while starting; "
                f"log: {daemon.log_path}\n{tail(daemon.log_path)}"
            )
        if proc is None and daemon.running_pid() is None:
            raise ServiceError(f"{daemon.name} is not running; log: {daemon.log_path}")
        try:
            if ready():
                return time.monotonic() - started
        except OSError as exc:  # a half-started server may reset the connection
            logger.debug("%s not ready yet: %s", daemon.name, exc)
        if time.monotonic() >= deadline:
            raise ServiceError(
                f"{daemon.name} was not ready within {timeout_s:.0f}s; log: {daemon.log_path}\n"
                f"{tail(daemon.log_path)}"
            )
        time.sleep(POLL_S)


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def ensure_port_free(name: str, host: str, port: int) -> None:
    """Refuse to start when something we did not start already listens on the port."""
    if port_open(host, port):
        raise ServiceError(
            f"cannot start {name}: {host}:{port} is already in use by a process tokenwire did "
            "not start (stop it, or choose another port in the settings)"
        )


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16_384))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def run_logged(
    argv: Sequence[str],
    log_path: Path,
    *,
    what: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run a blocking install step, appending its output to ``log_path``; fail naming the log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"\n--- tokenwire: {what}: {' '.join(argv)}\n".encode())
        log.flush()
        try:
            code = subprocess.call(
                list(argv),
                cwd=cwd,
                env=None if env is None else dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        except OSError as exc:
            raise ServiceError(f"{what} failed to run {argv[0]!r}: {exc}; log: {log_path}") from exc
    if code != 0:
        raise ServiceError(f"{what} failed (exit {code}); log: {log_path}\n{tail(log_path)}")


def build_once(home: Path, binary: Path, build: Callable[[], Path]) -> Path:
    """``binary`` as another process may just have built it, else ``build()``: under the cache's
    build lock, so processes starting at once build a service's binary once between them."""
    home.mkdir(parents=True, exist_ok=True)
    with file_lock(home / ".build.lock"):
        if os.access(binary, os.X_OK):
            return binary
        return build()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so concurrent ``up``/``down`` calls do not race."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _is_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (an exited child not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True
