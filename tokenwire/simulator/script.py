"""What the simulator says, and which faults it injects, as pure functions of the request.

Text: a seed is the sha256 of every message's role and content with ``[[sim: ...]]``
directives removed; SHAKE-256 of that seed picks words from :data:`VOCABULARY`. Token 0
is a bare word, every later token is the word with one leading space.

Directives, written anywhere in the LAST user message, any number of blocks::

    [[sim: key=value key=value ...]]

    fail=<status>[x<n>]    the first n calls answer HTTP <status> (400..599) with OpenAI's
                           error JSON; without ``x<n>`` every call fails
    retry_after=<seconds>  retry-after (and retry-after-ms) on a failure; 429 defaults to 1
    cut_after=<k>[x<n>]    the first n streaming calls (default 1) send k content tokens,
                           then the connection is dropped: no finish chunk, no [DONE]
    stall_after=<k>[x<n>]  the first n calls (default 1) pause after k tokens ...
    stall_s=<seconds>      ... for this long (default 1), then continue normally
    tokens=<n>             answer length in tokens (default 24)
    tps=<float>            tokens per second for this request
    ttft_ms=<float>        time to first content token for this request

Calls are counted per conversation (sha256 of the raw messages, directives included), so
retrying the same request is the next call. ``fail`` consumes the first calls; ``cut_after``
and ``stall_after`` count only the calls that were not failed, so
``fail=429x1 cut_after=3`` answers 429, then a cut stream, then a full one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

DEFAULT_TOKENS = 24
MAX_TOKENS = 100_000

# Plain words plus a few that exercise UTF-8 (2-, 3- and 4-byte), JSON escaping and HTML
# escaping downstream; 64 entries so two random bytes map onto them without bias.
# fmt: off
VOCABULARY: tuple[str, ...] = (
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog",
    "kafka", "stream", "token", "event", "browser", "server", "topic", "partition",
    "offset", "record", "consumer", "producer", "broker", "replica", "leader", "commit",
    "signal", "packet", "buffer", "socket", "channel", "message", "latency", "throughput",
    "river", "mountain", "forest", "ocean", "desert", "valley", "island", "harbor",
    "amber", "cobalt", "crimson", "silver", "violet", "golden", "scarlet", "indigo",
    "café", "naïve", "über", "日本語", "🚀", "señor", "déjà", "façade",
    "it's", '"quoted"', "<tag>", "a&b", "back\\slash", "50%", "x=y;", "{json}",
)
# fmt: on

_DIRECTIVE_RE = re.compile(r"\[\[\s*sim\s*:(?P<body>.*?)\]\]", re.DOTALL | re.IGNORECASE)
_TIMES_RE = re.compile(r"^(?P<value>\d+)(?:x(?P<times>\d+))?$")

FinishReason = Literal["stop", "length"]
Message = Mapping[str, Any]


class DirectiveError(ValueError):
    """A ``[[sim: ...]]`` block could not be parsed."""


@dataclass(frozen=True, slots=True)
class Directives:
    """The parsed ``[[sim: ...]]`` blocks of one request (all fields optional)."""

    fail_status: int | None = None
    fail_times: int | None = None  # None: every call fails
    retry_after_s: float | None = None
    cut_after: int | None = None
    cut_times: int = 1
    stall_after: int | None = None
    stall_times: int = 1
    stall_s: float = 1.0
    tokens: int | None = None
    tps: float | None = None
    ttft_ms: float | None = None


@dataclass(frozen=True, slots=True)
class CallPlan:
    """Everything one call will do, decided before the first byte is sent."""

    call_index: int
    tokens: tuple[str, ...]
    finish_reason: FinishReason
    ttft_s: float
    tps: float
    fail_status: int | None = None
    retry_after_s: float | None = None
    cut_after: int | None = None
    stall_after: int | None = None
    stall_s: float = 0.0

    @property
    def fault(self) -> str:
        """A short key=value-friendly description of the injected fault, or ``none``."""
        parts = []
        if self.fail_status is not None:
            parts.append(f"fail{self.fail_status}")
        if self.cut_after is not None:
            parts.append(f"cut@{self.cut_after}")
        if self.stall_after is not None:
            parts.append(f"stall@{self.stall_after}:{self.stall_s:g}s")
        return ",".join(parts) or "none"


# --- message text -----------------------------------------------------------------------


def content_text(content: Any) -> str:
    """The text of a message's ``content``: a string, a list of parts, or None."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_part_text(part) for part in content)
    return str(content)


def _part_text(part: Any) -> str:
    if isinstance(part, Mapping) and isinstance(part.get("text"), str):
        return part["text"]
    if isinstance(part, str):
        return part
    return ""


def strip_directives(text: str) -> str:
    """``text`` without its ``[[sim: ...]]`` blocks and surrounding whitespace."""
    return _DIRECTIVE_RE.sub("", text).strip()


def last_user_text(messages: Sequence[Message]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


# --- hashing ----------------------------------------------------------------------------


def _digest(pairs: Iterable[tuple[str, str]]) -> bytes:
    h = hashlib.sha256()
    for role, text in pairs:
        h.update(role.encode())
        h.update(b"\x00")
        h.update(text.encode())
        h.update(b"\x1e")
    return h.digest()


def text_seed(messages: Sequence[Message]) -> bytes:
    """The seed of the answer: directives do not change it."""
    return _digest(
        (str(m.get("role", "")), strip_directives(content_text(m.get("content")))) for m in messages
    )


def conversation_key(messages: Sequence[Message]) -> str:
    """The key calls are counted under: the raw messages, directives included."""
    raw = json.dumps(list(messages), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


# --- deterministic text -----------------------------------------------------------------


def _words(seed: bytes, count: int) -> list[str]:
    stream = hashlib.shake_256(seed).digest(2 * count) if count else b""
    size = len(VOCABULARY)
    return [
        VOCABULARY[int.from_bytes(stream[2 * i : 2 * i + 2], "big") % size] for i in range(count)
    ]


def _as_tokens(words: list[str]) -> list[str]:
    return [word if i == 0 else f" {word}" for i, word in enumerate(words)]


def answer_length(directives: Directives, max_tokens: int | None) -> tuple[int, FinishReason]:
    """How many tokens the answer has, and whether a cap cut it (``length``)."""
    natural = DEFAULT_TOKENS if directives.tokens is None else directives.tokens
    if max_tokens is not None and max_tokens < natural:
        return max_tokens, "length"
    return natural, "stop"


def expected_tokens(messages: list[dict[str, Any]], max_tokens: int | None = None) -> list[str]:
    """The exact content deltas the simulator streams for ``messages``.

    Honors a ``tokens=`` directive in the last user message and the ``max_tokens`` cap
    (pass ``max_tokens`` or ``max_completion_tokens``, whichever the request sets).
    """
    directives = parse_directives(last_user_text(messages))
    count, _ = answer_length(directives, max_tokens)
    return _as_tokens(_words(text_seed(messages), count))


def expected_text(messages: list[dict[str, Any]], max_tokens: int | None = None) -> str:
    """The full answer the simulator gives for ``messages`` (see :func:`expected_tokens`)."""
    return "".join(expected_tokens(messages, max_tokens))


# --- directives -------------------------------------------------------------------------


def parse_directives(text: str) -> Directives:
    """Every ``[[sim: ...]]`` block in ``text``, merged (a later key wins)."""
    fields: dict[str, Any] = {}
    for match in _DIRECTIVE_RE.finditer(text):
        for item in match.group("body").replace(",", " ").split():
            key, sep, value = item.partition("=")
            if not sep or not value:
                raise DirectiveError(f"expected key=value, got {item!r}")
            fields.update(_parse_item(key.strip().lower(), value.strip()))
    return Directives(**fields)


def _parse_item(key: str, value: str) -> dict[str, Any]:
    if key == "fail":
        status, times = _count_with_times(key, value)
        if not 400 <= status <= 599:
            raise DirectiveError(f"fail status must be 400..599, got {status}")
        return {"fail_status": status, "fail_times": times}
    if key in ("cut_after", "stall_after"):
        k, times = _count_with_times(key, value)
        prefix = key.removesuffix("_after")
        return {key: k, f"{prefix}_times": 1 if times is None else times}
    if key in _FLOAT_KEYS:
        return {_FLOAT_KEYS[key]: _non_negative_float(key, value, positive=key == "tps")}
    if key == "tokens":
        tokens = _count_with_times(key, value, allow_times=False)[0]
        if tokens > MAX_TOKENS:
            raise DirectiveError(f"tokens must be <= {MAX_TOKENS}, got {tokens}")
        return {"tokens": tokens}
    raise DirectiveError(f"unknown key {key!r}")


_FLOAT_KEYS = {
    "retry_after": "retry_after_s",
    "stall_s": "stall_s",
    "tps": "tps",
    "ttft_ms": "ttft_ms",
}


def _count_with_times(key: str, value: str, *, allow_times: bool = True) -> tuple[int, int | None]:
    match = _TIMES_RE.match(value.lower())
    if match is None or (match.group("times") is not None and not allow_times):
        form = "<int>x<n>" if allow_times else "<int>"
        raise DirectiveError(f"{key} expects {form}, got {value!r}")
    times = match.group("times")
    return int(match.group("value")), None if times is None else int(times)


def _non_negative_float(key: str, value: str, *, positive: bool) -> float:
    try:
        number = float(value)
    except ValueError:
        raise DirectiveError(f"{key} expects a number, got {value!r}") from None
    if number != number or number < 0 or (positive and number == 0) or number == float("inf"):
        raise DirectiveError(f"{key} out of range: {value!r}")
    return number


# --- one call ---------------------------------------------------------------------------


def plan_call(
    messages: Sequence[Message],
    directives: Directives,
    *,
    call_index: int,
    max_tokens: int | None,
    ttft_ms: float,
    tokens_per_s: float,
) -> CallPlan:
    """Decide what call number ``call_index`` (0-based) of this conversation does."""
    count, finish = answer_length(directives, max_tokens)
    failing = _failing(directives, call_index)
    stream_index = call_index - (directives.fail_times or 0)
    stalling = directives.stall_after is not None and stream_index < directives.stall_times
    retry_after = directives.retry_after_s
    if retry_after is None and directives.fail_status == 429:
        retry_after = 1.0
    return CallPlan(
        call_index=call_index,
        tokens=tuple(_as_tokens(_words(text_seed(messages), count))),
        finish_reason=finish,
        ttft_s=(directives.ttft_ms if directives.ttft_ms is not None else ttft_ms) / 1000,
        tps=directives.tps if directives.tps is not None else tokens_per_s,
        fail_status=directives.fail_status if failing else None,
        retry_after_s=retry_after if failing else None,
        cut_after=directives.cut_after if stream_index < directives.cut_times else None,
        stall_after=directives.stall_after if stalling else None,
        stall_s=directives.stall_s if stalling else 0.0,
    )


def _failing(directives: Directives, call_index: int) -> bool:
    if directives.fail_status is None:
        return False
    return directives.fail_times is None or call_index < directives.fail_times


class CallCounter:
    """Calls seen per conversation key, least recently used keys forgotten first."""

    def __init__(self, max_keys: int = 10_000) -> None:
        self._max_keys = max_keys
        self._counts: OrderedDict[str, int] = OrderedDict()

    def next(self, key: str) -> int:
        """The 0-based index of this call, counting it."""
        index = self._counts.pop(key, 0)
        self._counts[key] = index + 1
        if len(self._counts) > self._max_keys:
            self._counts.popitem(last=False)
        return index

    def __len__(self) -> int:
        return len(self._counts)
