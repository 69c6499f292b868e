"""OtlpJsonFileExporter writes OTLP/JSON lines the Collector's file exporter would; read_spans
reads them back, and the Collector's own output, and survives hostile lines.

The SDK is used through a local TracerProvider: the process-wide provider belongs to the
tracing fixture and can be set only once."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import Link, Status, StatusCode

from tokenwire.trace_file import OtlpJsonFileExporter, load_spans, read_spans

# One line as the OpenTelemetry Collector's file exporter writes it (OTLP/JSON: hex ids,
# decimal-string 64-bit integers, integer enums), shaped after the OTLP spec's example.
COLLECTOR_LINE = json.dumps({
    "resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "tokenwire-worker"}},
        ]},
        "scopeSpans": [{
            "scope": {"name": "tokenwire"},
            "spans": [{
                "traceId": "5B8EFFF798038103D269B633813FC60C",
                "spanId": "EEE19B7EC3C1B174",
                "parentSpanId": "EEE19B7EC3C1B173",
                "name": "chat.attempt",
                "startTimeUnixNano": "1544712660000000000",
                "endTimeUnixNano": "1544712661000000000",
                "kind": 1,
                "attributes": [
                    {"key": "tokenwire.request_id", "value": {"stringValue": "r-1"}},
                    {"key": "attempt", "value": {"intValue": "2"}},
                    {"key": "ratio", "value": {"doubleValue": 0.5}},
                    {"key": "tags", "value": {"arrayValue": {"values": [
                        {"stringValue": "a"}, {"boolValue": True}]}}},
                ],
                "events": [{"timeUnixNano": "1544712660300000000", "name": "first_chunk",
                            "attributes": [{"key": "n", "value": {"intValue": "1"}}]}],
                "status": {"code": 2, "message": "upstream 503"},
            }],
        }],
    }],
})


def _provider(path: Path, service: str = "tokenwire-test") -> tuple[TracerProvider,
                                                                   OtlpJsonFileExporter]:
    exporter = OtlpJsonFileExporter(path)
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_spans_round_trip_through_one_otlp_json_line_per_export(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    provider, exporter = _provider(path)
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("chat.request", attributes={
        "tokenwire.request_id": "req-1", "attempt": 1, "ratio": 0.25, "ok": True,
        "tags": ["x", "y"],
    }) as parent:
        with tracer.start_as_current_span("llm.call", links=[Link(parent.get_span_context())]) \
                as child:
            child.add_event("first_chunk", {"ttft_ms": 12.5})
            child.set_status(Status(StatusCode.ERROR, "boom"))
    provider.shutdown()

    lines = path.read_text().splitlines()
    assert len(lines) == 2  # SimpleSpanProcessor: one export per ended span
    first = json.loads(lines[0])
    span = first["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    trace_id = format(child.get_span_context().trace_id, "032x")
    assert span["traceId"] == trace_id  # lowercase hex, not base64
    assert span["spanId"] == format(child.get_span_context().span_id, "016x")
    assert span["parentSpanId"] == format(parent.get_span_context().span_id, "016x")
    assert span["links"][0]["traceId"] == trace_id
    assert isinstance(span["startTimeUnixNano"], str) and isinstance(span["kind"], int)
    resource = first["resourceSpans"][0]["resource"]["attributes"]
    assert {"key": "service.name", "value": {"stringValue": "tokenwire-test"}} in resource

    spans = {s.name: s for s in read_spans([path])}
    llm, request = spans["llm.call"], spans["chat.request"]
    assert llm.trace_id == request.trace_id == trace_id
    assert llm.parent_span_id == request.span_id and request.parent_span_id is None
    assert llm.service == "tokenwire-test"
    assert llm.status == "ERROR" and llm.status_message == "boom"
    assert llm.events[0].name == "first_chunk" and llm.events[0].attributes == {"ttft_ms": 12.5}
    assert request.attributes == {
        "tokenwire.request_id": "req-1", "attempt": 1, "ratio": 0.25, "ok": True,
        "tags": ["x", "y"],
    }
    assert 0 <= request.start_unix_nano <= llm.start_unix_nano <= llm.end_unix_nano
    assert exporter.export([]) == SpanExportResult.SUCCESS


def test_reads_the_collector_file_exporter_shape(tmp_path: Path) -> None:
    path = tmp_path / "collector.json"
    path.write_text(COLLECTOR_LINE + "\n")
    (span,) = read_spans([path])
    assert span.trace_id == "5b8efff798038103d269b633813fc60c"
    assert span.span_id == "eee19b7ec3c1b174" and span.parent_span_id == "eee19b7ec3c1b173"
    assert span.service == "tokenwire-worker" and span.name == "chat.attempt"
    assert span.duration_ns == 1_000_000_000
    assert span.attributes == {"tokenwire.request_id": "r-1", "attempt": 2, "ratio": 0.5,
                               "tags": ["a", True]}
    assert span.events[0].attributes == {"n": 1}
    assert span.status == "ERROR" and span.status_message == "upstream 503"


def test_hostile_and_truncated_lines_are_counted_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    good = json.loads(COLLECTOR_LINE)
    bad_span = json.loads(COLLECTOR_LINE)
    bad_span["resourceSpans"][0]["scopeSpans"][0]["spans"].append({"traceId": 7, "spanId": []})
    path.write_bytes(b"\n".join([
        COLLECTOR_LINE[: len(COLLECTOR_LINE) // 2].encode(),  # truncated by a crash
        b"\xff\xfe not json",
        b"[1, 2, 3]",
        b'{"resourceSpans": "nope"}',
        b"[" * 100_000 + b"]" * 100_000,  # deep nesting
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "' + b"9" * 5000
        + b'"}]}]}]}',
        b"",
        json.dumps(good).encode(),
        json.dumps(bad_span).encode(),
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz", "spanId": "zz"}]}]}]}',
        COLLECTOR_LINE.encode()[:-3],  # a half-written last line
    ]))
    load = load_spans([path])
    assert [s.span_id for s in load.spans] == ["eee19b7ec3c1b174", "eee19b7ec3c1b174"]
    assert load.skipped_lines == 6
    assert load.skipped_spans == 3
    assert len(read_spans([path])) == 2


def test_concurrent_exports_write_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "threads.jsonl"
    provider, _ = _provider(path)
    tracer = provider.get_tracer("tests")

    def emit(thread: int) -> None:
        for n in range(50):
            with tracer.start_as_current_span(f"t{thread}", attributes={"n": n, "pad": "x" * 4000}):
                pass

    threads = [threading.Thread(target=emit, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    provider.shutdown()

    lines = path.read_text().splitlines()
    assert len(lines) == 200
    assert all(json.loads(line)["resourceSpans"] for line in lines)
    load = load_spans([path])
    assert len(load.spans) == 200 and load.skipped_lines == 0


def test_export_after_shutdown_fails_without_reopening(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "spans.jsonl"
    provider, exporter = _provider(path)
    with provider.get_tracer("tests").start_as_current_span("one") as span:
        pass
    provider.shutdown()
    assert exporter.force_flush()
    assert exporter.export([span]) == SpanExportResult.FAILURE  # type: ignore[list-item]
    assert len(path.read_text().splitlines()) == 1
