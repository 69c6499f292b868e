"""How many SSE streams one identity and the whole process may hold open.

An open stream costs the edge memory and a place in the shared consumer's fan-out for as long as
the client keeps it, so both are capped: beyond its own cap an identity gets 429, beyond the
process's cap anyone gets 503 (another edge replica may have room). A ``ConnectionSlot`` is held
for the whole response and released exactly once, on every path.
"""

from __future__ import annotations

from tokenwire.settings import Settings

# Why a stream was refused: the label values of tokenwire_edge_sse_refused_total.
REFUSED_USER = "user_limit"
REFUSED_PROCESS = "process_limit"
REFUSALS = (REFUSED_USER, REFUSED_PROCESS)


class ConnectionSlot:
    def __init__(self, limits: ConnectionLimits, identity: str) -> None:
        self._limits = limits
        self.identity = identity
        self._held = True

    def release(self) -> None:
        """Give the slot back; idempotent."""
        if self._held:
            self._held = False
            self._limits._release(self.identity)


class ConnectionLimits:
    def __init__(self, max_total: int, max_per_identity: int) -> None:
        self._max_total = max_total
        self._max_per_identity = max_per_identity
        # Only identities with an open stream are keys: the map is bounded by ``max_total``.
        self._per_identity: dict[str, int] = {}
        self.total = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(settings.sse_max_connections, settings.sse_max_connections_per_user)

    def acquire(self, identity: str, *, limit: int | None = None) -> ConnectionSlot | str:
        """A slot for one more stream of ``identity``, else why not (``REFUSED_*``).

        ``limit`` replaces the per-identity cap for this identity (e.g. a quota tier's).
        """
        held = self._per_identity.get(identity, 0)
        if held >= (self._max_per_identity if limit is None else limit):
            return REFUSED_USER
        if self.total >= self._max_total:
            return REFUSED_PROCESS
        self._per_identity[identity] = held + 1
        self.total += 1
        return ConnectionSlot(self, identity)

    def held_by(self, identity: str) -> int:
        return self._per_identity.get(identity, 0)

    def _release(self, identity: str) -> None:
        held = self._per_identity.pop(identity, 0) - 1
        if held > 0:
            self._per_identity[identity] = held
        self.total -= 1
