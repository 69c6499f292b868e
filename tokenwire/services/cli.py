"""``tokenwire services up|down|status|install``: human-readable lines, exit code 0 or 1."""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

from tokenwire.errors import ServiceError
from tokenwire.services import ServiceStatus, down, install, status, up
from tokenwire.services.process import port_open
from tokenwire.settings import Settings


def run(action: str, settings: Settings) -> int:
    """Run one action; ``status`` exits 1 unless every service is up."""
    try:
        if action == "install":
            for name, path in install(settings).items():
                print(f"{name:<9} installed  {path}")
            return 0
        if action == "up":
            for st in up(settings):
                how = f"started in {st.seconds:.1f}s" if st.started_now else "already running"
                print(f"{st.name:<9} up    pid {st.pid:<7} {st.address:<24} {how}  log {st.log}")
                for line in st.details:
                    print(line)
            return 0
        if action == "down":
            for st in down(settings):
                what = f"stopped pid {st.pid} in {st.seconds:.1f}s" if st.pid else "was not running"
                print(f"{st.name:<9} down  {what}")
            return 0
        if action == "status":
            statuses = status(settings)
            for st in statuses:
                print(_status_line(st))
                for line in st.details:
                    print(line)
            return 0 if all(st.running for st in statuses) else 1
    except (ServiceError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"error: unknown action {action!r} (up, down, status, install)", file=sys.stderr)
    return 1


def _status_line(st: ServiceStatus) -> str:
    if not st.running:
        return f"{st.name:<9} down  {'-':<11} {st.address}"
    answering = _answers(st.address)
    note = "" if answering else "  (process runs but the port does not answer yet)"
    return f"{st.name:<9} up    pid {st.pid:<7} {st.address:<24} log {st.log}{note}"


def _answers(address: str) -> bool:
    address = address.split(",", 1)[0]  # a cluster's bootstrap list: its first node
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    return parts.hostname is not None and port_open(parts.hostname, parts.port or 80)
