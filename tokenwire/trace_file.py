"""Spans as OTLP JSON lines: an SDK exporter that writes them, and a reader for such files.

Each line is one ``ExportTraceServiceRequest`` in the OTLP/JSON encoding: camelCase fields,
64-bit integers as decimal strings, enums as integers and trace/span ids as lowercase hex (the
one place OTLP/JSON differs from protobuf's canonical JSON, which would write base64). That is
the shape the OpenTelemetry Collector's ``file`` exporter writes, so ``read_spans`` reads both.

Several processes (edge and worker) may append to one file: each line goes out in one
``write(2)`` on an ``O_APPEND`` descriptor, so lines from different processes do not interleave.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

logger = logging.getLogger(__name__)

# A line longer than this is skipped unread: one export of a few thousand spans is a few MB.
MAX_LINE_BYTES = 64 * 1024 * 1024
_ID_FIELDS = ("traceId", "spanId", "parentSpanId")
_STATUS_NAMES = {0: "UNSET", 1: "OK", 2: "ERROR"}


class OtlpJsonFileExporter(SpanExporter):
    """Append one OTLP/JSON ``ExportTraceServiceRequest`` line per ``export`` call to ``path``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._closed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        try:
            line = (json.dumps(encode_request(spans), separators=(",", ":")) + "\n").encode()
        except Exception:  # a span the encoder cannot take must not kill the batch thread
            logger.exception("trace file encode failed path=%s spans=%s", self.path, len(spans))
            return SpanExportResult.FAILURE
        with self._lock:
            if self._closed:
                return SpanExportResult.FAILURE
            try:
                _write_all(self._open(), line)
            except OSError as exc:
                logger.warning("trace file write failed path=%s error=%s", self.path, exc)
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        # Every line is written straight to the descriptor (no user-space buffer to flush).
        return True

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return self._fd


def encode_request(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """The OTLP/JSON form of one export request, built from the SDK's own protobuf encoder."""
    request = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for resource_spans in request.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                _hex_ids(span)
                for link in span.get("links", []):
                    _hex_ids(link)
    return request


def _hex_ids(message: dict[str, Any]) -> None:
    for name in _ID_FIELDS:
        if name in message:
            message[name] = base64.b64decode(message[name]).hex()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


@dataclass(frozen=True)
class SpanEvent:
    name: str
    time_unix_nano: int
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SpanRecord:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    service: str
    start_unix_nano: int
    end_unix_nano: int
    attributes: dict[str, Any] = field(default_factory=dict)
    events: tuple[SpanEvent, ...] = ()
    status: str = "UNSET"
    status_message: str = ""
    kind: int = 0

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_unix_nano - self.start_unix_nano)


@dataclass
class SpanLoad:
    """What ``load_spans`` found: the spans, and how much it had to skip."""

    spans: list[SpanRecord] = field(default_factory=list)
    skipped_lines: int = 0
    skipped_spans: int = 0


class _BadSpan(ValueError):
    pass


def read_spans(paths: Iterable[str | os.PathLike[str]]) -> list[SpanRecord]:
    """Every readable span in the OTLP JSON line files ``paths``; bad lines are logged, skipped."""
    load = load_spans(paths)
    if load.skipped_lines or load.skipped_spans:
        logger.warning(
            "trace files had unreadable parts skipped_lines=%s skipped_spans=%s",
            load.skipped_lines, load.skipped_spans,
        )
    return load.spans


def load_spans(paths: Iterable[str | os.PathLike[str]]) -> SpanLoad:
    load = SpanLoad()
    for path in paths:
        with open(path, "rb") as handle:
            for line in _lines(handle, load):
                _load_line(line, load)
    return load


def _lines(handle: Any, load: SpanLoad) -> Iterator[bytes]:
    """Lines of the file, each read with a bound so one huge line cannot take all memory."""
    while True:
        line = handle.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            load.skipped_lines += 1
            while (rest := handle.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass
            continue
        if line.strip():
            yield line


def _load_line(line: bytes, load: SpanLoad) -> None:
    try:
        request = json.loads(line)
        resource_spans = _list(_dict(request).get("resourceSpans"))
    except (ValueError, RecursionError, _BadSpan):  # json.JSONDecodeError is a ValueError
        load.skipped_lines += 1
        return
    for entry in resource_spans:
        try:
            entry = _dict(entry)
            service = _service_name(entry)
            spans = [s for scope in _list(entry.get("scopeSpans")) for s in _spans_of(scope)]
        except (_BadSpan, ValueError, TypeError):
            load.skipped_spans += 1
            continue
        for span in spans:
            try:
                load.spans.append(_span_record(span, service))
            except (_BadSpan, ValueError, TypeError, OverflowError):
                load.skipped_spans += 1


def _spans_of(scope: Any) -> list[Any]:
    return _list(_dict(scope).get("spans"))


def _service_name(resource_spans: Mapping[str, Any]) -> str:
    resource = _dict(resource_spans.get("resource"))
    service = _attributes(resource.get("attributes")).get("service.name")
    return service if isinstance(service, str) else "unknown_service"


def _span_record(raw: Any, service: str) -> SpanRecord:
    span = _dict(raw)
    status = _dict(span.get("status"))
    parent = span.get("parentSpanId")
    return SpanRecord(
        trace_id=_id(span.get("traceId"), 16),
        span_id=_id(span.get("spanId"), 8),
        parent_span_id=_id(parent, 8) if parent else None,
        name=_str(span.get("name")),
        service=service,
        start_unix_nano=_int(span.get("startTimeUnixNano")),
        end_unix_nano=_int(span.get("endTimeUnixNano")),
        attributes=_attributes(span.get("attributes")),
        events=tuple(_event(e) for e in _list(span.get("events"))),
        status=_status_name(status.get("code")),
        status_message=_str(status.get("message")),
        kind=_int(span.get("kind")),
    )


def _event(raw: Any) -> SpanEvent:
    event = _dict(raw)
    return SpanEvent(
        name=_str(event.get("name")),
        time_unix_nano=_int(event.get("timeUnixNano")),
        attributes=_attributes(event.get("attributes")),
    )


def _attributes(raw: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for entry in _list(raw):
        pair = _dict(entry)
        key = pair.get("key")
        if isinstance(key, str):
            attributes[key] = _any_value(pair.get("value"))
    return attributes


def _any_value(raw: Any, depth: int = 0) -> Any:
    """Decode an OTLP ``AnyValue``; nesting is bounded so a hostile line cannot recurse deep."""
    if not isinstance(raw, dict) or depth > 8:
        return None
    if "stringValue" in raw:
        return _str(raw["stringValue"])
    if "boolValue" in raw:
        return bool(raw["boolValue"])
    if "intValue" in raw:
        return _int(raw["intValue"])
    if "doubleValue" in raw:
        return float(raw["doubleValue"])
    if "arrayValue" in raw:
        return [_any_value(v, depth + 1) for v in _list(_dict(raw["arrayValue"]).get("values"))]
    if "kvlistValue" in raw:
        values = _list(_dict(raw["kvlistValue"]).get("values"))
        return {k: _any_value(v, depth + 1) for k, v in _kv_pairs(values)}
    if "bytesValue" in raw:
        return _str(raw["bytesValue"])
    return None


def _kv_pairs(values: list[Any]) -> Iterator[tuple[str, Any]]:
    for entry in values:
        pair = _dict(entry)
        if isinstance(pair.get("key"), str):
            yield pair["key"], pair.get("value")


def _id(raw: Any, size: int) -> str:
    """A trace/span id as lowercase hex: OTLP/JSON writes hex; protobuf JSON would write base64."""
    text = _str(raw)
    if len(text) == 2 * size:
        try:
            bytes.fromhex(text)
            return text.lower()
        except ValueError:
            pass
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _BadSpan(f"bad id {text[:40]!r}") from exc
    if len(decoded) != size:
        raise _BadSpan(f"bad id length {text[:40]!r}")
    return decoded.hex()


def _status_name(code: Any) -> str:
    if isinstance(code, str) and code.startswith("STATUS_CODE_"):
        return code.removeprefix("STATUS_CODE_")
    if code is None:
        return "UNSET"
    return _STATUS_NAMES.get(_int(code), "UNSET")


def _dict(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _BadSpan(f"expected an object, got {type(value).__name__}")
    return value


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _BadSpan(f"expected an array, got {type(value).__name__}")
    return value


def _str(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _BadSpan(f"expected a string, got {type(value).__name__}")
    return value


def _int(value: Any) -> int:
    """OTLP/JSON writes 64-bit integers as decimal strings; plain numbers are accepted too."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _BadSpan(f"expected an integer, got {type(value).__name__}")
    if isinstance(value, str) and len(value) > 20:
        raise _BadSpan("integer too long")
    return int(value)
