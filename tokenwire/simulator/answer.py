"""The pieces of one answer: words, JSON text, tool calls, a refusal, reasoning, logprobs.

Pure functions of a seed (see ``script.text_seed``). A *piece* is what one stream chunk
carries and what counts as one completion token: a word, a fragment of JSON text (content
or tool-call arguments), a word of a refusal or of the reasoning.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

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

REFUSAL_TEXT = "I'm sorry, but I can't help with that request."
PieceKind = Literal["reasoning", "content", "refusal", "arguments"]

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Runs of word characters, of spaces, or of punctuation: '{"city":"Paris"}' becomes
# '{"', 'city', '":"', 'Paris', '"}' -- about how OpenAI's tokenizer splits JSON.
_JSON_PIECE_RE = re.compile(r"\w+|\s+|[^\w\s]+")
_WORD_PIECE_RE = re.compile(r"\s*\S+")
_MAX_SCHEMA_DEPTH = 6


@dataclass(frozen=True, slots=True)
class Piece:
    """One streamed fragment; ``index`` is the tool call an ``arguments`` piece belongs to."""

    kind: PieceKind
    text: str
    index: int = 0


@dataclass(frozen=True, slots=True)
class ToolCall:
    index: int
    id: str
    name: str
    arguments: str

    def wire(self) -> dict[str, Any]:
        """OpenAI's ``message.tool_calls[i]``."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


# --- words ------------------------------------------------------------------------------


def words(seed: bytes, count: int) -> list[str]:
    stream = hashlib.shake_256(seed).digest(2 * count) if count else b""
    size = len(VOCABULARY)
    return [
        VOCABULARY[int.from_bytes(stream[2 * i : 2 * i + 2], "big") % size] for i in range(count)
    ]


def as_tokens(plain_words: list[str]) -> list[str]:
    """Token 0 is a bare word, every later token has one leading space."""
    return [word if i == 0 else f" {word}" for i, word in enumerate(plain_words)]


def json_pieces(text: str) -> list[str]:
    """``text`` cut the way a tokenizer cuts JSON; the pieces join back to ``text``."""
    return _JSON_PIECE_RE.findall(text)


def word_pieces(text: str) -> list[str]:
    return _WORD_PIECE_RE.findall(text)


def reasoning_tokens(seed: bytes, count: int) -> list[str]:
    return as_tokens(words(seed + b"\x00reasoning", count))


# --- tool calls -------------------------------------------------------------------------


def tool_call_id(seed: bytes, index: int, name: str) -> str:
    """``call_`` and 24 base62 characters, like OpenAI's, fixed by the conversation."""
    digest = hashlib.sha256(seed + f"\x00tool\x00{index}\x00{name}".encode()).digest()
    number = int.from_bytes(digest, "big")
    chars = []
    for _ in range(24):
        number, rest = divmod(number, 62)
        chars.append(_BASE62[rest])
    return "call_" + "".join(chars)


# --- structured output ------------------------------------------------------------------


def json_object_text(answer_words: list[str]) -> str:
    """The content for ``response_format: json_object``."""
    return _compact({"answer": " ".join(answer_words)})


def json_schema_text(schema: Any, seed: bytes) -> str:
    """A compact JSON text that satisfies the simple parts of ``schema``.

    Every property is filled (so ``required`` holds); ``const``/``enum`` pick the first
    value; ``anyOf``/``oneOf`` the first branch; local ``$ref`` are followed; arrays get
    ``minItems`` items (at least one); numbers respect ``minimum``/``maximum``.
    """
    filler = _Filler(seed, schema if isinstance(schema, Mapping) else {})
    return _compact(filler.value(schema, 0))


class _Filler:
    def __init__(self, seed: bytes, root: Mapping[str, Any]) -> None:
        self._root = root
        self._words = _endless_words(seed + b"\x00json")

    def value(self, schema: Any, depth: int) -> Any:
        if not isinstance(schema, Mapping) or depth > _MAX_SCHEMA_DEPTH:
            return next(self._words)
        if isinstance(schema.get("$ref"), str):
            return self.value(self._resolve(schema["$ref"]), depth + 1)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        for key in ("anyOf", "oneOf", "allOf"):
            if isinstance(schema.get(key), list) and schema[key]:
                return self.value(schema[key][0], depth + 1)
        kind = _schema_type(schema)
        if kind == "object":
            properties = schema.get("properties")
            if not isinstance(properties, Mapping):
                return {}
            return {str(k): self.value(v, depth + 1) for k, v in properties.items()}
        if kind == "array":
            count = schema.get("minItems", 1)
            count = count if isinstance(count, int) and 1 <= count <= 8 else 1
            return [self.value(schema.get("items"), depth + 1) for _ in range(count)]
        if kind in ("integer", "number"):
            return _number(schema, len(next(self._words)), integer=kind == "integer")
        if kind == "boolean":
            return len(next(self._words)) % 2 == 0
        if kind == "null":
            return None
        return next(self._words)

    def _resolve(self, ref: str) -> Any:
        node: Any = self._root
        if not ref.startswith("#"):
            return {}
        for part in ref.lstrip("#").strip("/").split("/"):
            if not part:
                continue
            if not isinstance(node, Mapping) or part not in node:
                return {}
            node = node[part]
        return node


def _schema_type(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None and "properties" in schema:
        return "object"
    return kind if isinstance(kind, str) else "string"


def _number(schema: Mapping[str, Any], base: int, *, integer: bool) -> int | float:
    value: float = base if integer else base + 0.5
    low, high = schema.get("minimum"), schema.get("maximum")
    if isinstance(low, int | float) and value < low:
        value = math.ceil(low) if integer else low
    if isinstance(high, int | float) and value > high:
        value = math.floor(high) if integer else high
    return int(value) if integer else float(value)


def _endless_words(seed: bytes) -> Iterator[str]:
    batch = 0
    while True:
        yield from words(seed + batch.to_bytes(4, "big"), 32)
        batch += 1


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# --- logprobs ---------------------------------------------------------------------------


def logprob_entry(seed: bytes, position: int, token: str, top: int) -> dict[str, Any]:
    """OpenAI's ``logprobs.content[i]``: the token, its logprob and ``top`` alternatives.

    The chosen token is always the most likely one (greedy), so it heads ``top_logprobs``.
    """
    digest = hashlib.sha256(seed + f"\x00logprob\x00{position}".encode()).digest()
    chosen = -round(digest[0] / 255 * 1.5, 6)
    alternatives = [token]
    space = " " if token.startswith(" ") else ""
    offset = digest[1]
    while len(alternatives) < top:
        candidate = space + VOCABULARY[offset % len(VOCABULARY)]
        offset += 1
        if candidate not in alternatives:
            alternatives.append(candidate)
    top_entries = [
        _top_entry(alt, chosen if i == 0 else round(chosen - 1.0 - i * 0.75, 6))
        for i, alt in enumerate(alternatives[:top])
    ]
    return {**_top_entry(token, chosen), "top_logprobs": top_entries}


def _top_entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode())}
