"""``tokenwire trace``: the waterfall of one chat's trace, from span files written by the SDK
through OtlpJsonFileExporter (two local providers stand for the edge and the worker; the
process-wide provider is left alone)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from tests.fixtures.cli import run_cli
from tokenwire.trace_file import OtlpJsonFileExporter

T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def _tracer(path: Path, service: str) -> tuple[TracerProvider, trace.Tracer]:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OtlpJsonFileExporter(path)))
    return provider, provider.get_tracer("tests")


def _write_chat(path: Path, request_id: str, *, retry: bool = True) -> str:
    """One chat across edge and worker at fixed times; returns its trace id."""
    edge_provider, edge = _tracer(path, "tokenwire-edge")
    worker_provider, worker = _tracer(path, "tokenwire-worker")
    tagged = {"tokenwire.request_id": request_id}
    ingress = edge.start_span("chat.ingress", start_time=T0, attributes=tagged)
    ingress_ctx = trace.set_span_in_context(ingress)
    edge.start_span("kafka.publish", context=ingress_ctx, start_time=T0 + 1 * MS).end(T0 + 3 * MS)
    ingress.end(T0 + 4 * MS)
    request = worker.start_span("chat.request", context=ingress_ctx, start_time=T0 + 10 * MS,
                                attributes=tagged)
    request_ctx = trace.set_span_in_context(request)
    first = worker.start_span("chat.attempt", context=request_ctx, start_time=T0 + 10 * MS,
                              attributes={"tokenwire.attempt": 1})
    first.set_status(Status(StatusCode.ERROR, "upstream 503"))
    first.end(T0 + 30 * MS)
    if retry:
        second = worker.start_span("chat.attempt", context=request_ctx, start_time=T0 + 40 * MS,
                                   attributes={"tokenwire.attempt": 2,
                                               "retry.reason": "upstream_5xx"})
        llm = worker.start_span("llm.call", context=trace.set_span_in_context(second),
                                start_time=T0 + 41 * MS,
                                attributes={"llm.time_to_first_chunk_ms": 12.25, "llm.chunks": 7,
                                            "unrelated": "hidden"})
        llm.end(T0 + 90 * MS)
        second.end(T0 + 95 * MS)
    request.end(T0 + 100 * MS)
    edge.start_span("edge.delivered", context=ingress_ctx, start_time=T0 + 100 * MS,
                    attributes=tagged).end(T0 + 100 * MS)
    edge_provider.shutdown()
    worker_provider.shutdown()
    return format(ingress.get_span_context().trace_id, "032x")


def test_waterfall_draws_one_line_per_span_indented_and_scaled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "spans.jsonl"
    trace_id = _write_chat(path, "req-1")
    _write_chat(path, "req-other")

    assert run_cli(["trace", "req-1", "--file", str(path), "--width", "20"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"trace {trace_id}  request req-1  100.0 ms  7 spans")
    assert "tokenwire-edge, tokenwire-worker" in lines[0]
    spans = lines[2:]
    names = [line.split("|")[2].split("[")[0].rstrip() for line in spans]
    assert names == [
        "  chat.ingress",
        "    kafka.publish",
        "    chat.request",
        "      chat.attempt",
        "      chat.attempt",
        "        llm.call",
        "    edge.delivered",
    ]
    # offset and duration columns, then a 20-cell bar on the trace's 100 ms axis
    assert spans[2].split()[:2] == ["10.0", "90.0"]
    assert spans[2].split("|")[1] == "  " + "█" * 18
    assert spans[0].split("|")[1] == "█" + " " * 19
    assert spans[6].split("|")[1] == " " * 19 + "█"  # a zero-length span at the end still shows
    assert "attempt=1 ERROR: upstream 503" in spans[3]
    assert "attempt=2 retry.reason=upstream_5xx" in spans[4]
    assert "ttft_ms=12.25 chunks=7" in spans[5] and "hidden" not in spans[5]
    assert "[tokenwire-worker]" in spans[5] and "[tokenwire-edge]" in spans[1]


def test_json_format_lists_spans_in_waterfall_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "spans.jsonl"
    trace_id = _write_chat(path, "req-2", retry=False)
    assert run_cli(["trace", "req-2", "--file", str(path), "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    (only,) = payload["traces"]
    assert only["trace_id"] == trace_id and only["duration_ms"] == 100.0
    assert [(s["name"], s["depth"]) for s in only["spans"]] == [
        ("chat.ingress", 0), ("kafka.publish", 1), ("chat.request", 1), ("chat.attempt", 2),
        ("edge.delivered", 1),
    ]
    attempt = only["spans"][3]
    assert attempt["offset_ms"] == 10.0 and attempt["duration_ms"] == 20.0
    assert attempt["status"] == "ERROR" and attempt["attributes"] == {"tokenwire.attempt": 1}
    assert attempt["parent_span_id"] == only["spans"][2]["span_id"]


def test_spans_split_over_files_and_a_missing_parent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A worker file alone: its root's parent (the edge span) is elsewhere, and says so."""
    both = tmp_path / "both.jsonl"
    _write_chat(both, "req-3", retry=False)
    worker_only = tmp_path / "worker.jsonl"
    worker_only.write_text("".join(
        line + "\n" for line in both.read_text().splitlines() if "tokenwire-worker" in line
    ) + "not json\n")
    assert run_cli(["trace", "req-3", "--file", str(worker_only)]) == 0
    captured = capsys.readouterr()
    assert "skipped 1 unreadable lines" in captured.err
    rows = captured.out.splitlines()[2:]
    assert len(rows) == 2 and "chat.request" in rows[0] and "not in the files" in rows[0]
    # the same spans given twice (our file and a collector's copy) are counted once
    assert run_cli(["trace", "req-3", "--file", str(both), "--file", str(both)]) == 0
    assert "5 spans" in capsys.readouterr().out.splitlines()[0]


def test_unknown_request_and_missing_file_fail_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "spans.jsonl"
    _write_chat(path, "req-4", retry=False)
    assert run_cli(["trace", "nope", "--file", str(path)]) == 1
    assert "no span with tokenwire.request_id=nope in 5 spans" in capsys.readouterr().err
    assert run_cli(["trace", "req-4", "--file", str(tmp_path / "absent.jsonl")]) == 2
    assert "no such span file" in capsys.readouterr().err
    # without --file: the file tokenwire.tracing's otlp_json_file exporter writes
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_JSON_FILE", raising=False)
    monkeypatch.setenv("TOKENWIRE_TRACE_FILE", str(tmp_path / "not-yet.jsonl"))
    assert run_cli(["trace", "req-4"]) == 2
    monkeypatch.setenv("TOKENWIRE_TRACE_FILE", str(path))
    assert run_cli(["trace", "req-4"]) == 0
