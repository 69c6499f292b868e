"""What a client saw of one request, and the check that nothing was lost, repeated or reordered.

Both paths speak the same events (``start``, ``retry``, ``token {text, received_at, seq}``,
``done``, ``error``); with ``coalesce_mode=chunk`` one token event carries one simulator chunk,
so the token texts of the last attempt, ordered by ``seq``, must equal ``expected_tokens`` exactly.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

TERMINAL = frozenset({"done", "error"})


@dataclass(frozen=True)
class TokenCheck:
    delivered: int
    lost: int
    duplicated: int
    reordered: int
    mismatched: bool

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.reordered or self.mismatched)


def check_tokens(
    arrivals: list[tuple[int, str]], expected: list[str], *, joined: bool = False
) -> TokenCheck:
    """``arrivals``: (seq, text) of one attempt's token events in the order they were parsed.

    ``joined``: the worker coalesces (``adaptive``/``bounded``), so an event may carry several
    chunks: the texts must join into the answer, and a token counts as delivered once the text
    received covers it.
    """
    by_seq: dict[int, str] = {}
    duplicated = reordered = 0
    last = -1
    for seq, text in arrivals:
        if seq in by_seq:
            duplicated += 1
            continue
        if seq < last:
            reordered += 1
        last = max(last, seq)
        by_seq[seq] = text
    ordered = [by_seq[s] for s in sorted(by_seq)]
    if joined:
        got, want = "".join(ordered), "".join(expected)
        covered = _covered(got, expected) if want.startswith(got) else 0
        return TokenCheck(covered + duplicated, len(expected) - covered, duplicated, reordered,
                          got != want)
    lost = max(0, len(expected) - len(ordered))
    return TokenCheck(len(arrivals), lost, duplicated, reordered, ordered != expected)


def _covered(text: str, expected: list[str]) -> int:
    """How many of ``expected``'s tokens the prefix ``text`` holds whole."""
    length = count = 0
    for token in expected:
        length += len(token)
        if length > len(text):
            break
        count += 1
    return count


@dataclass
class RequestRecord:
    """Filled by the SSE handler as events arrive; ``finished`` is set by the terminal event."""

    expected: list[str] = field(default_factory=list)
    t0: float = 0.0
    submitted_at: float | None = None  # pipeline: POST /v1/chat answered (or publish acked)
    accepted_at: float | None = None
    first_at: float | None = None
    last_at: float | None = None
    first_received_at: float | None = None
    attempt: int = 1
    retries: int = 0
    terminal: str | None = None
    error: str | None = None
    arrivals: list[tuple[int, str]] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    # Pipeline only: received_at -> emitted_at (inside the worker), emitted_at -> parsed.
    worker_ms: list[float] = field(default_factory=list)
    after_worker_ms: list[float] = field(default_factory=list)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    # The worker may join chunks into one event (check_tokens' ``joined``).
    joined: bool = False

    def add(self, kind: str, data: dict[str, Any], at: float) -> None:
        if kind == "token":
            if data.get("attempt", 1) != self.attempt:
                return
            received_at = float(data["received_at"])
            if self.first_at is None:
                self.first_at, self.first_received_at = at, received_at
            self.last_at = at
            self.arrivals.append((int(data["seq"]), data["text"]))
            self.latencies_ms.append((at - received_at) * 1000.0)
            emitted_at = data.get("emitted_at")
            if emitted_at is not None:
                self.worker_ms.append((emitted_at - received_at) * 1000.0)
                self.after_worker_ms.append((at - emitted_at) * 1000.0)
        elif kind == "start":
            self.accepted_at = float(data.get("accepted_at", at))
        elif kind == "retry":
            self.attempt, self.retries = int(data["attempt"]), self.retries + 1
            self.arrivals.clear()
        elif kind in TERMINAL:
            self.terminal = kind
            if kind == "error":
                self.error = f"error event: {data.get('code')}: {data.get('message')}"
            self.finished.set()

    def summary(self, session: int, index: int, sim_ttft_ms: float) -> dict[str, Any]:
        check = check_tokens(self.arrivals, self.expected, joined=self.joined)
        error = self.error
        if error is None and self.terminal is None:
            error = "no terminal event"
        # Without a terminal event the answer was still coming when the client gave up: tokens
        # not seen yet are "undelivered", not lost (they are in the log); gaps before the last
        # token seen still count as lost.
        finished = self.terminal is not None
        seen = len({seq for seq, _ in self.arrivals})
        lost = check.lost if finished else max(0, max((q for q, _ in self.arrivals), default=0)
                                                 - seen)
        ttft = None if self.first_at is None else (self.first_at - self.t0) * 1000 - sim_ttft_ms
        ingress = None if self.accepted_at is None else (self.accepted_at - self.t0) * 1000
        llm = None
        if self.first_received_at is not None and self.accepted_at is not None:
            llm = (self.first_received_at - self.accepted_at) * 1000 - sim_ttft_ms
        delivery = None
        if self.first_at is not None and self.first_received_at is not None:
            delivery = (self.first_at - self.first_received_at) * 1000
        return {
            "session": session,
            "index": index,
            "ok": error is None and check.clean and self.retries == 0,
            "error": error,
            "expected": len(self.expected),
            "delivered": check.delivered,
            "lost": lost,
            "unfinished": not finished,
            "undelivered": 0 if finished else max(0, len(self.expected) - seen),
            "duplicated": check.duplicated,
            "reordered": check.reordered,
            "mismatched": check.mismatched and finished,
            "retries": self.retries,
            "t0": self.t0,
            "last_at": self.last_at,
            "ttft_added_ms": ttft,
            "ttft_ingress_ms": ingress,
            "ttft_llm_ms": llm,
            "ttft_delivery_ms": delivery,
            "submit_ms": None if self.submitted_at is None
            else (self.submitted_at - self.t0) * 1000,
        }
