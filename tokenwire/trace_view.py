"""``tokenwire trace <request_id>``: one chat's trace as a text waterfall, from OTLP JSON files.

The spans come from files of OTLP/JSON lines (``tokenwire.trace_file``'s exporter, or the
OpenTelemetry Collector's ``file`` exporter). The chat's trace is every trace that holds a span
with ``tokenwire.request_id`` equal to the id; each is drawn as one line per span, children
indented under their parent, with a bar placed on the trace's own time axis (README,
"A chat's trace", shows one).

Only ``run`` loads the span files (and with them the OpenTelemetry SDK): ``add_arguments`` is
imported by the CLI at start.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from tokenwire.trace_file import SpanRecord

REQUEST_ID_ATTRIBUTE = "tokenwire.request_id"
# Attributes worth a glance on a waterfall line (tokenwire/tracing.py's table names them),
# with the short label they get there.
KEY_ATTRIBUTES = {
    "tokenwire.attempt": "attempt",
    "retry.reason": "retry.reason",
    "llm.time_to_first_chunk_ms": "ttft_ms",
    "llm.chunks": "chunks",
    "gen_ai.usage.output_tokens": "tokens",
    "tokenwire.session.events": "events",
    "tokenwire.finish_reason": "finish",
    "error.type": "error",
    "tokenwire.stage": "stage",
    "http.response.status_code": "http",
}
DEFAULT_BAR_WIDTH = 40


@dataclass(frozen=True)
class Trace:
    trace_id: str
    spans: tuple[SpanRecord, ...]

    @property
    def start_ns(self) -> int:
        return min(s.start_unix_nano for s in self.spans)

    @property
    def end_ns(self) -> int:
        return max(s.end_unix_nano for s in self.spans)

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)


@dataclass(frozen=True)
class Row:
    span: SpanRecord
    depth: int
    orphan: bool  # its parent is not in the files (e.g. a producer's span exported elsewhere)


def traces_for_request(spans: Iterable[SpanRecord], request_id: str) -> list[Trace]:
    """Every trace holding a span tagged with ``request_id``, earliest first, spans deduplicated."""
    by_trace: dict[str, dict[str, SpanRecord]] = defaultdict(dict)
    wanted: set[str] = set()
    for span in spans:
        by_trace[span.trace_id].setdefault(span.span_id, span)
        if span.attributes.get(REQUEST_ID_ATTRIBUTE) == request_id:
            wanted.add(span.trace_id)
    traces = [Trace(tid, tuple(by_trace[tid].values())) for tid in wanted]
    return sorted(traces, key=lambda t: t.start_ns)


def waterfall_rows(trace: Trace) -> list[Row]:
    """Spans depth first, children after their parent in start order."""
    ids = {s.span_id for s in trace.spans}
    children: dict[str | None, list[SpanRecord]] = defaultdict(list)
    for span in trace.spans:
        parent = span.parent_span_id if span.parent_span_id in ids else None
        children[parent].append(span)
    for siblings in children.values():
        siblings.sort(key=lambda s: (s.start_unix_nano, s.end_unix_nano))
    rows: list[Row] = []
    stack = [(root, 0) for root in reversed(children[None])]
    seen: set[str] = set()
    while stack:  # iterative: a hostile file cannot make the recursion limit the depth limit
        span, depth = stack.pop()
        if span.span_id in seen:
            continue
        seen.add(span.span_id)
        rows.append(Row(span, depth, orphan=span.parent_span_id is not None and depth == 0))
        stack.extend((child, depth + 1) for child in reversed(children[span.span_id]))
    # A parent cycle (only a broken file has one) leaves spans unreached: show them flat.
    rows.extend(Row(s, 0, orphan=True) for s in trace.spans if s.span_id not in seen)
    return rows


def key_attributes(span: SpanRecord) -> dict[str, Any]:
    return {
        label: span.attributes[key] for key, label in KEY_ATTRIBUTES.items()
        if key in span.attributes
    }


def bar(start_ns: int, end_ns: int, trace: Trace, width: int) -> str:
    """The span's place on the trace's time axis, ``width`` cells; at least one cell is marked."""
    total = trace.duration_ns
    if total <= 0:
        return "█" * width
    first = min(width - 1, math.floor((start_ns - trace.start_ns) / total * width))
    last = max(first + 1, math.ceil((end_ns - trace.start_ns) / total * width))
    last = min(width, last)
    return " " * first + "█" * (last - first) + " " * (width - last)


def render_text(trace: Trace, request_id: str, width: int = DEFAULT_BAR_WIDTH) -> Iterator[str]:
    services = sorted({s.service for s in trace.spans})
    yield (
        f"trace {trace.trace_id}  request {request_id}  {_ms(trace.duration_ns)} ms  "
        f"{len(trace.spans)} spans  ({', '.join(services)})"
    )
    yield f"{'offset ms':>10} {'dur ms':>9}  |{'timeline':<{width}}|  span [service] attributes"
    for row in waterfall_rows(trace):
        span = row.span
        offset = span.start_unix_nano - trace.start_ns
        details = " ".join(f"{k}={_value(v)}" for k, v in key_attributes(span).items())
        if span.status == "ERROR":
            details += f" ERROR: {_value(span.status_message)}" if span.status_message else " ERROR"
        if row.orphan:
            details += f" (parent {span.parent_span_id} not in the files)"
        label = f"{'  ' * row.depth}{span.name} [{span.service}]"
        yield (
            f"{_ms(offset):>10} {_ms(span.duration_ns):>9}  "
            f"|{bar(span.start_unix_nano, span.end_unix_nano, trace, width)}|  "
            f"{label} {details}".rstrip()
        )


def trace_json(trace: Trace) -> dict[str, Any]:
    return {
        "trace_id": trace.trace_id,
        "duration_ms": round(trace.duration_ns / 1e6, 3),
        "spans": [
            {
                "span_id": row.span.span_id,
                "parent_span_id": row.span.parent_span_id,
                "depth": row.depth,
                "name": row.span.name,
                "service": row.span.service,
                "offset_ms": _offset_ms(row.span.start_unix_nano, trace),
                "duration_ms": round(row.span.duration_ns / 1e6, 3),
                "status": row.span.status,
                "attributes": row.span.attributes,
                "events": [
                    {"name": e.name, "offset_ms": _offset_ms(e.time_unix_nano, trace),
                     "attributes": e.attributes}
                    for e in row.span.events
                ],
            }
            for row in waterfall_rows(trace)
        ],
    }


def _offset_ms(unix_nano: int, trace: Trace) -> float:
    return round((unix_nano - trace.start_ns) / 1e6, 3)


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.1f}"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 40 else text[:39] + "…"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("request_id", help="the chat's request id (tokenwire.request_id)")
    parser.add_argument(
        "--file", action="append", default=None, metavar="PATH",
        help="an OTLP JSON lines file (repeatable); default: the file the otlp_json_file "
        "exporter writes ($OTEL_EXPORTER_OTLP_JSON_FILE, else $TOKENWIRE_TRACE_FILE, else "
        "tokenwire-traces.jsonl)",
    )
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.add_argument("--width", type=int, default=DEFAULT_BAR_WIDTH, help="bar width (cells)")


def default_files() -> list[str]:
    from tokenwire.tracing import trace_file_path

    return [trace_file_path(os.environ)]


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    files: Sequence[str] = args.file or default_files()
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        print(f"no such span file: {', '.join(missing)} (pass --file PATH)", file=err)
        return 2
    from tokenwire.trace_file import load_spans

    load = load_spans(files)
    if load.skipped_lines or load.skipped_spans:
        print(f"skipped {load.skipped_lines} unreadable lines and {load.skipped_spans} "
              "unreadable spans", file=err)
    traces = traces_for_request(load.spans, args.request_id)
    if not traces:
        print(f"no span with {REQUEST_ID_ATTRIBUTE}={args.request_id} in {len(load.spans)} spans "
              f"from {', '.join(files)} (spans are exported in batches: a running process may "
              "not have written them yet)", file=err)
        return 1
    if args.format == "json":
        payload = {"request_id": args.request_id, "traces": [trace_json(t) for t in traces]}
        print(json.dumps(payload, indent=2), file=out)
        return 0
    width = max(10, min(args.width, 200))
    for number, trace in enumerate(traces):
        if number:
            print(file=out)
        for line in render_text(trace, args.request_id, width):
            print(line, file=out)
    return 0
