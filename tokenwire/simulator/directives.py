"""Parse the ``[[sim: key=value ...]]`` blocks of a user message (the table is in ``script``).

Values are bare words, except ``args=`` which takes one balanced JSON object, so
``args={"city": "Paris", "unit": "c"}`` may hold spaces and commas. A block ends at the
first ``]]`` outside a JSON string.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

MAX_TOKENS = 100_000
MAX_TOOL_CALLS = 16

# A JSON string is skipped whole so "]]" inside it does not end the block; a lone quote
# (an unterminated string) still lets the block end at the next "]]".
_DIRECTIVE_RE = re.compile(
    r'\[\[\s*sim\s*:(?P<body>(?:"(?:[^"\\]|\\.)*"|[^"\]]|\](?!\])|")*?)\]\]',
    re.DOTALL | re.IGNORECASE,
)
_SEPARATORS_RE = re.compile(r"[\s,]*")
_KEY_RE = re.compile(r"(?P<key>[A-Za-z_]+)=")
_WORD_RE = re.compile(r"[^\s,]+")
_TIMES_RE = re.compile(r"^(?P<value>\d+)(?:x(?P<times>\d+))?$")
_FUNCTION_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_JSON = json.JSONDecoder()
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class DirectiveError(ValueError):
    """A ``[[sim: ...]]`` block could not be parsed."""


@dataclass(frozen=True, slots=True)
class ToolDirective:
    """One ``tool=<name> args=<json object>`` pair; ``arguments`` is compact JSON text."""

    name: str
    arguments: str = "{}"


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
    tools: tuple[ToolDirective, ...] = field(default_factory=tuple)
    refusal: bool = False
    reasoning: int = 0


def strip_directives(text: str) -> str:
    """``text`` without its ``[[sim: ...]]`` blocks and surrounding whitespace."""
    return _DIRECTIVE_RE.sub("", text).strip()


def parse_directives(text: str) -> Directives:
    """Every ``[[sim: ...]]`` block in ``text``, merged (a later key wins; tools add up)."""
    fields: dict[str, Any] = {}
    tools: list[tuple[str, str | None]] = []
    for match in _DIRECTIVE_RE.finditer(text):
        for key, value in _items(match.group("body")):
            if key in ("tool", "args"):
                _add_tool_item(tools, key, value)
            else:
                fields.update(_parse_item(key, _bare(key, value)))
    if len(tools) > MAX_TOOL_CALLS:
        raise DirectiveError(f"at most {MAX_TOOL_CALLS} tool calls, got {len(tools)}")
    calls = tuple(ToolDirective(name, "{}" if args is None else args) for name, args in tools)
    return Directives(**fields, tools=calls)


def _items(body: str) -> list[tuple[str, Any]]:
    """(key, value) pairs of one block; a value is a word or, for ``{``, a JSON object."""
    items: list[tuple[str, Any]] = []
    pos = _SEPARATORS_RE.match(body, 0).end()  # type: ignore[union-attr]
    while pos < len(body):
        key_match = _KEY_RE.match(body, pos)
        if key_match is None:
            word = _WORD_RE.match(body, pos)
            raise DirectiveError(f"expected key=value, got {word.group() if word else body!r}")
        key, pos = key_match.group("key").lower(), key_match.end()
        value: Any
        if body.startswith("{", pos):
            try:
                value, pos = _JSON.raw_decode(body, pos)
            except ValueError as exc:
                raise DirectiveError(f"{key} has invalid JSON: {exc}") from None
        else:
            word = _WORD_RE.match(body, pos)
            if word is None:
                raise DirectiveError(f"expected key=value, got {key + '='!r}")
            value, pos = word.group(), word.end()
        items.append((key, value))
        pos = _SEPARATORS_RE.match(body, pos).end()  # type: ignore[union-attr]
    return items


def _bare(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise DirectiveError(f"{key} expects a plain value, not JSON")
    return value


def _add_tool_item(tools: list[tuple[str, str | None]], key: str, value: Any) -> None:
    """``tool=`` opens a call; ``args=`` fills the arguments of the call just opened."""
    if key == "tool":
        name = _bare(key, value)
        if not _FUNCTION_NAME_RE.match(name):
            raise DirectiveError(f"tool name must match ^[a-zA-Z0-9_-]{{1,64}}$, got {name!r}")
        tools.append((name, None))
        return
    if not tools or tools[-1][1] is not None:
        raise DirectiveError("args= must follow its tool=<name>")
    if not isinstance(value, dict):
        raise DirectiveError('args expects a JSON object, e.g. args={"city":"Paris"}')
    tools[-1] = (tools[-1][0], json.dumps(value, separators=(",", ":"), ensure_ascii=False))


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
    if key in ("tokens", "reasoning"):
        count = _count_with_times(key, value, allow_times=False)[0]
        if count > MAX_TOKENS:
            raise DirectiveError(f"{key} must be <= {MAX_TOKENS}, got {count}")
        return {key: count}
    if key == "refusal":
        return {"refusal": _flag(key, value)}
    raise DirectiveError(f"unknown key {key!r}")


_FLOAT_KEYS = {
    "retry_after": "retry_after_s",
    "stall_s": "stall_s",
    "tps": "tps",
    "ttft_ms": "ttft_ms",
}


def _flag(key: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE or lowered in _FALSE:
        return lowered in _TRUE
    raise DirectiveError(f"{key} expects 1 or 0, got {value!r}")


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
