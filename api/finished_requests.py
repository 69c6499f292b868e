"""What the edge knows about requests' ends, for the cancel endpoint (``api.cancel``).

``FinishedRequests``: requests the cluster has seen end, request id → how it ended, read from
``chat.events``.
Fed by ``api.usage_ledger``, which already reads every ``completed`` / ``failed`` record of every
partition of ``chat.events`` (no group, so every edge sees all of them). The cancel endpoint asks
it to answer 409 for a request that is known to be over. "Not known" is not "still running": an
entry arrives milliseconds after the worker wrote it, an edge that starts knows only what the
ledger reads back (its horizon), and the least recently ended are forgotten past ``capacity``.

``PublishedCancels``: the cancels this edge published, so that a repeat says so.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Cancels this edge published, to say "repeated"; the oldest are forgotten first.
MAX_CANCELS_REMEMBERED = 10_000
FAILED = "error"  # finish_reason reported for a request whose terminal record is ``failed``


@dataclass(frozen=True)
class Finished:
    session_id: str
    finish_reason: str


class FinishedRequests:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._capacity = capacity
        self._ended: OrderedDict[str, Finished] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ended)

    def note(self, event: Mapping[str, Any]) -> None:
        """Remember a decoded ``completed`` / ``failed`` record; anything else is ignored."""
        kind, request_id = event.get("type"), event.get("request_id")
        session_id = event.get("session_id")
        if not isinstance(request_id, str) or not isinstance(session_id, str):
            return
        if kind == "completed":
            reason = event.get("finish_reason")
            finished = Finished(session_id, reason if isinstance(reason, str) else "stop")
        elif kind == "failed":
            finished = Finished(session_id, FAILED)
        else:
            return
        # A copy sent again after a worker crash carries the same content: first one wins.
        if request_id not in self._ended:
            self._ended[request_id] = finished
            if len(self._ended) > self._capacity:
                self._ended.popitem(last=False)

    def get(self, request_id: str, session_id: str) -> Finished | None:
        """How ``request_id`` of ``session_id`` ended, if this edge has read it."""
        finished = self._ended.get(request_id)
        if finished is None or finished.session_id != session_id:
            return None
        return finished


class PublishedCancels:
    """(session id, request id) of cancels this edge published, least recent first."""

    def __init__(self, capacity: int = MAX_CANCELS_REMEMBERED) -> None:
        self._capacity = capacity
        self._keys: OrderedDict[tuple[str, str], None] = OrderedDict()

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._keys

    def add(self, key: tuple[str, str]) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        if len(self._keys) > self._capacity:
            self._keys.popitem(last=False)
