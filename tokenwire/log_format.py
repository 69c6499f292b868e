"""Log output of every tokenwire process: text for people (the default) or one JSON object a line.

``TOKENWIRE_LOG_FORMAT=json`` gives, per record::

    {"timestamp": "2026-05-09T07:35:25.123Z", "level": "INFO", "logger": "api.ingress",
     "message": "chat request accepted request_id=r-1 session=s-1",
     "request_id": "r-1", "session": "s-1",
     "trace_id": "4bf9…", "span_id": "00f0…"}

The ``key=value`` fields are read from the record's *format string* (``"… request_id=%s"``), not
from the rendered message: the key is whatever the code wrote, the value is the argument alone,
so a caller-controlled value (``"x user=admin"``, a newline, a quote) can never forge a second
field or a second line. A record without arguments is code-controlled text; its ``key=value``
words are read from the message itself. Reserved keys (``timestamp``, ``level``, …) always win;
a field named like one is written as ``field_<key>``.

Frameworks are routed into the same root handler: uvicorn (edge, simulator, the worker's web
server) gets ``log_config=None`` so its loggers propagate, and Faust gets a ``logging_config``
because it replaces the root handlers when its worker starts.
"""

from __future__ import annotations

import ast
import functools
import json
import logging
import math
import re
import sys
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Literal

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
RESERVED = frozenset(
    {"timestamp", "level", "logger", "message", "trace_id", "span_id", "exc_info", "stack_info"}
)
# A printf conversion as logging's %-formatting knows it (``%%`` included, to step over it).
_CONVERSION = re.compile(
    r"%(?:\((?P<name>[^)]*)\))?[#0\- +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?"
    r"(?P<type>[diouxXeEfFgGcrsa%])"
)
_KEY = re.compile(r"[(\[]?(?P<key>[A-Za-z_][\w.\-]*)=")
# In a message without arguments: key=value where value is a quoted repr or a bare word.
_TEXT_FIELD = re.compile(
    r"""(?:^|(?<=[\s(\[]))(?P<key>[A-Za-z_][\w.\-]*)="""
    r"""(?P<value>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s]*)"""
)
_TRAILING_PUNCTUATION = ";,:)]."
# uvicorn.access formats ('%s - "%s %s HTTP/%s" %d', client, method, path, version, status).
_ACCESS_FIELDS = ("client_addr", "method", "path", "http_version", "status_code")


def configure_logging(level: str, log_format: LogFormat) -> None:
    """The root handler of a process (stderr), as ``logging.basicConfig`` would set it."""
    handler = logging.StreamHandler()
    json_lines = log_format == "json"
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    if json_lines:
        # Everything else that would write free text to stderr goes through logging instead.
        logging.captureWarnings(True)
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_uncaught_in_thread


def uvicorn_log_config(log_format: LogFormat) -> dict[str, Any] | None:
    """uvicorn's own handlers for text; none for JSON, so its records reach the root handler."""
    if log_format == "json":
        return None
    from uvicorn.config import LOGGING_CONFIG

    return LOGGING_CONFIG


def faust_logging_config(level: str, log_format: LogFormat) -> dict[str, Any] | None:
    """What Faust installs as the root handler when its worker starts (None: its own, text)."""
    if log_format != "json":
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {
            "json": {"class": "logging.StreamHandler", "formatter": "json",
                     "stream": "ext://sys.stderr"},
        },
        "root": {"level": level.upper(), "handlers": ["json"]},
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per record, ASCII only: no value can end the line or split it."""

    def __init__(self) -> None:
        super().__init__()
        from opentelemetry import trace  # only JSON logs pay for the import

        self._current_span = trace.get_current_span

    def format(self, record: logging.LogRecord) -> str:
        message = _message(record)
        entry: dict[str, Any] = {
            "timestamp": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        for key, value in _fields(record, message):
            entry.setdefault(f"field_{key}" if key in RESERVED else key, value)
        context = self._current_span().get_span_context()
        if context.is_valid:
            entry["trace_id"] = format(context.trace_id, "032x")
            entry["span_id"] = format(context.span_id, "016x")
        if record.exc_info:
            record.exc_text = record.exc_text or self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=True, default=str)


def _timestamp(created: float) -> str:
    millis = int(created * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{millis:03d}Z"


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # bad arguments: say so in the line rather than lose it
        return f"{record.msg!s} (unformattable arguments {record.args!r})"


def _fields(record: logging.LogRecord, message: str) -> list[tuple[str, Any]]:
    try:
        if record.name == "uvicorn.access" and _is_access_args(record.args):
            assert isinstance(record.args, tuple)
            return list(zip(_ACCESS_FIELDS, record.args, strict=True))
        if not isinstance(record.msg, str):
            return []
        if record.args:
            return list(_template_fields(record.msg, record.args))
        return list(_text_fields(message))
    except Exception:  # a field is a convenience; the line itself must never be lost
        return []


def _is_access_args(args: object) -> bool:
    return isinstance(args, tuple) and len(args) == len(_ACCESS_FIELDS)


def _template_fields(template: str, args: object) -> Iterator[tuple[str, Any]]:
    """``key=%s`` words of the format string, each valued by its own argument(s)."""
    pieces = _split(template)
    positional = args if isinstance(args, tuple) else (args,)
    mapping = args if isinstance(args, dict) else None
    index = 0
    word: list[str | tuple[str, Any]] = []
    for piece in [*pieces, " "]:
        if isinstance(piece, tuple):
            spec, name = piece
            if name is not None:
                if mapping is None:
                    return
                word.append((spec, mapping[name]))
            else:
                if "*" in spec or index >= len(positional):
                    return  # widths from arguments: the words no longer line up; no fields
                word.append((spec, positional[index]))
                index += 1
            continue
        for part in re.split(r"(\s+)", piece):
            if not part:
                continue
            if part.isspace():
                field = _word_field(word)
                if field is not None:
                    yield field
                word = []
            else:
                word.append(part)


@functools.lru_cache(maxsize=1024)  # format strings are the code's constants: a bounded set
def _split(template: str) -> tuple[str | tuple[str, str | None], ...]:
    """Literal text and conversions (``(spec, mapping key)``); ``%%`` becomes text."""
    pieces: list[str | tuple[str, str | None]] = []
    at = 0
    for match in _CONVERSION.finditer(template):
        pieces.append(template[at:match.start()])
        if match["type"] == "%":
            pieces.append("%")
        else:
            spec = match.group(0)
            name = match["name"]
            if name is not None:
                spec = spec.replace(f"({name})", "", 1)
            pieces.append((spec, name))
        at = match.end()
    pieces.append(template[at:])
    return tuple(pieces)


def _word_field(word: list[str | tuple[str, Any]]) -> tuple[str, Any] | None:
    """``key=`` literal, then the value's conversions and text up to the next space."""
    split = next((i for i, part in enumerate(word) if not isinstance(part, str)), len(word))
    head = "".join(str(part) for part in word[:split])
    match = _KEY.match(head)
    if match is None or split == len(word):
        return None  # not a field, or no argument in it: the text form handles literal fields
    rest = [head[match.end():], *word[split:]]
    while rest and isinstance(rest[-1], str) and rest[-1].strip(_TRAILING_PUNCTUATION) == "":
        rest.pop()
    rest = [part for part in rest if part != ""]
    if len(rest) == 1 and isinstance(rest[0], tuple):
        return match["key"], _typed(*rest[0])
    return match["key"], "".join(p if isinstance(p, str) else _render(*p) for p in rest)


def _render(spec: str, value: Any) -> str:
    return spec % (value,)


def _typed(spec: str, value: Any) -> Any:
    """A JSON number or boolean where the argument is one, the string itself for ``%r`` of str."""
    if isinstance(value, str) and spec.endswith(("r", "a")):
        return value
    if isinstance(value, bool) or value is None:
        return value if spec.endswith(("s", "r")) else _render(spec, value)
    rendered = _render(spec, value)
    if isinstance(value, int | float):
        return _number(rendered)
    return rendered


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def _text_fields(message: str) -> Iterator[tuple[str, Any]]:
    for match in _TEXT_FIELD.finditer(message):
        value = match["value"]
        quoted = value[:1] in ("'", '"')
        yield match["key"], _unquote(value) if quoted else _number(
            value.rstrip(_TRAILING_PUNCTUATION)
        )


def _unquote(quoted: str) -> str:
    try:
        value = ast.literal_eval(quoted)
    except (ValueError, SyntaxError):
        return quoted[1:-1]
    return value if isinstance(value, str) else quoted[1:-1]


def _log_uncaught(
    kind: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    logging.getLogger("tokenwire").critical("uncaught exception", exc_info=(kind, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    logging.getLogger("tokenwire").critical(
        "uncaught exception in thread=%s", getattr(args.thread, "name", None),
        exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
    )
