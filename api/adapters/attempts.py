"""One request's attempts, as a client that cannot retract output sees them.

A tokenwire ``retry`` means "drop this request's partial output, a new attempt starts". The AI
SDK's and OpenAI's wire formats have no way to take back what was sent, so an adapter feeds the
request's events through one ``AttemptFilter``:

- it remembers what it let through per output channel (answer text, reasoning, refusal, and
  each tool call's arguments by index);
- a new attempt's output is compared with that: while it repeats what was sent nothing goes out,
  past it only the new remainder does (the simulator is deterministic, so a cut-and-retry gives
  the exact answer once);
- a new attempt that says something else than what was sent (a real model with temperature)
  cannot be repaired on a live stream: ``accept`` answers ``Diverged`` and the adapter ends the
  stream with an error telling the client to resume (which replays the final attempt alone).

Interface (pure, no I/O; one filter per request and response)::

    f = AttemptFilter()
    for event in drop_superseded(batch):     # optional: a backlog read without waiting
        out = f.accept(event)
        if isinstance(out, Diverged): ...     # end the stream with out.reason
        for e in out: ...                     # output events trimmed to what is new, or the
                                              # terminal event; start/retry never come out

Output events that come out are copies of the input with ``text``/``arguments`` cut to the
unsent suffix; a ``tool_call`` names ``id``/``name`` only on the first fragment the client gets
for its index, and keeps the id the client first saw (a real provider names a retried call
anew). The terminal ``done`` comes out with its ``tool_calls`` ids rewritten the same way.
``f.model`` is the first attempt's model (from ``start``), for formats that carry it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from schemas.messages import ToolCall
from schemas.session_events import (
    DoneEvent,
    ReasoningEvent,
    RefusalEvent,
    SessionEvent,
    StartEvent,
    TokenEvent,
    ToolCallEvent,
)

TextEvent = TokenEvent | ReasoningEvent | RefusalEvent


@dataclass(frozen=True, slots=True)
class Diverged:
    """The current attempt says something else than the output already sent."""

    reason: str


class _Sent:
    """Text the client has on one channel, kept as the pieces sent: a long answer must not be
    copied whole on every token (O(n^2) on the event loop). It is joined only when a retry
    compares its repeat with it, once per retry: nothing is appended while an attempt repeats."""

    __slots__ = ("_joined", "_pieces", "length")

    def __init__(self) -> None:
        self._pieces: list[str] = []
        self._joined = ""
        self.length = 0

    def append(self, piece: str) -> None:
        self._pieces.append(piece)
        self.length += len(piece)

    def window(self, start: int, size: int) -> str:
        """The ``size`` characters sent from ``start`` on (fewer at the end)."""
        return "" if start >= self.length else self.text()[start : start + size]

    def text(self) -> str:
        if len(self._joined) != self.length:
            self._joined = "".join(self._pieces)
            self._pieces = [self._joined]
        return self._joined


@dataclass(slots=True)
class _ToolSent:
    id: str | None = None
    name: str | None = None
    arguments: _Sent = field(default_factory=_Sent)


@dataclass(slots=True)
class _Attempt:
    """How far the current attempt has got (what it said so far is always a prefix of what was
    sent: past it, the rest is sent), so its lengths say it all."""

    number: int = 0
    texts: dict[str, int] = field(default_factory=dict)
    tool_ids: dict[str, str] = field(default_factory=dict)
    tool_arguments: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class SentTool:
    """A tool call as the client has it: the id it saw, the name, the arguments so far."""

    index: int
    id: str | None
    name: str | None
    arguments: str


class AttemptFilter:
    """Lets one request's events through as a client that never saw a retry should see them."""

    def __init__(self) -> None:
        self.model: str | None = None
        self._texts: dict[str, _Sent] = {}  # channel (event type) -> text sent
        self._tools: dict[int, _ToolSent] = {}
        self._attempt = _Attempt()

    def accept(self, event: SessionEvent) -> list[SessionEvent] | Diverged:
        if event.attempt > self._attempt.number:
            self._attempt = _Attempt(number=event.attempt)
        if isinstance(event, StartEvent):
            self.model = self.model or event.model
            return []
        if isinstance(event, TokenEvent | ReasoningEvent | RefusalEvent):
            return self._text(event)
        if isinstance(event, ToolCallEvent):
            return self._tool_call(event)
        if isinstance(event, DoneEvent):
            return self._done(event)
        if event.type == "error":
            return [event]
        return []  # retry: the next attempt's output is compared with what was sent

    def sent_tools(self) -> list[SentTool]:
        """The tool calls the client has, by index."""
        return [
            SentTool(index, tool.id, tool.name, tool.arguments.text())
            for index, tool in sorted(self._tools.items())
        ]

    def _text(self, event: TextEvent) -> list[SessionEvent] | Diverged:
        channel = event.type
        said = self._attempt.texts.get(channel, 0)
        sent = self._texts.setdefault(channel, _Sent())
        fresh = _unsent(sent.window(said, len(event.text)), event.text)
        if fresh is None:
            return Diverged(f"{channel} differs from the text already sent")
        self._attempt.texts[channel] = said + len(event.text)
        if not fresh:
            return []
        sent.append(fresh)
        return [event.model_copy(update={"text": fresh})]

    def _tool_call(self, event: ToolCallEvent) -> list[SessionEvent] | Diverged:
        index, attempt = event.index, self._attempt
        tool = self._tools.setdefault(index, _ToolSent())
        if event.name is not None and tool.name is not None and event.name != tool.name:
            return Diverged(f"tool call {index} names another function than the one sent")
        if event.id is not None:
            attempt.tool_ids[event.id] = tool.id or event.id
        said = attempt.tool_arguments.get(index, 0)
        fresh = _unsent(tool.arguments.window(said, len(event.arguments)), event.arguments)
        if fresh is None:
            return Diverged(f"tool call {index} arguments differ from those sent")
        attempt.tool_arguments[index] = said + len(event.arguments)
        # The client learns a call's id and name once, from the first fragment it gets.
        announce = tool.id is None and event.id is not None
        if announce:
            tool.id, tool.name = event.id, event.name
        elif not fresh:
            return []
        tool.arguments.append(fresh)
        names = {"id": tool.id, "name": tool.name} if announce else {"id": None, "name": None}
        return [event.model_copy(update={"arguments": fresh, **names})]

    def _done(self, event: DoneEvent) -> list[SessionEvent] | Diverged:
        attempt = self._attempt
        for channel, sent in self._texts.items():
            if attempt.texts.get(channel, 0) < sent.length:
                return Diverged(f"the final attempt's {channel} ended short of the text sent")
        for index, tool in self._tools.items():
            if attempt.tool_arguments.get(index, 0) < tool.arguments.length:
                return Diverged(f"the final attempt lacks tool call {index} as it was sent")
        if not attempt.tool_ids or all(old == new for old, new in attempt.tool_ids.items()):
            return [event]
        return [event.model_copy(update={"tool_calls": _renamed(event.tool_calls, attempt)})]


def new_suffix(sent: str, said: str, piece: str) -> str | None:
    """What of ``piece`` is new for a client that has ``sent``, when the current attempt had
    said ``said`` before it; None when ``said + piece`` contradicts ``sent``."""
    return _unsent(sent[len(said) : len(said) + len(piece)], piece)


def _unsent(overlap: str, piece: str) -> str | None:
    """``piece`` past ``overlap`` (what was sent where it goes), None when they differ."""
    if not piece.startswith(overlap):
        return None
    return piece[len(overlap) :]


def _renamed(calls: Sequence[ToolCall], attempt: _Attempt) -> list[ToolCall]:
    return [
        call.model_copy(update={"id": attempt.tool_ids.get(call.id, call.id)}) for call in calls
    ]


def drop_superseded(events: Iterable[SessionEvent]) -> list[SessionEvent]:
    """``events`` (one request's, read together) without the attempts a later attempt among
    them supersedes: a client that never got them needs neither them nor their retry."""
    items = list(events)
    last = max((event.attempt for event in items), default=0)
    return [event for event in items if event.attempt == last]
