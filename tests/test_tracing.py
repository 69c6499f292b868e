"""``tokenwire.tracing``: when the environment turns tracing on, W3C context in Kafka headers,
and what stays plain while it is off."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry import trace

from api.session_entries import TracedEntry, decode_entry
from api.session_feed import Entry
from tests.fixtures.tracing import TraceCapture
from tokenwire import tracing
from tokenwire.trace_file import read_spans

TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TOKEN = b'{"type":"token","request_id":"r1","session_id":"s1","attempt":1,"seq":1,"text":"a"}'


@pytest.mark.parametrize(
    ("env", "exporters"),
    [
        ({}, []),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "otlp_json_file, console"}, ["otlp_json_file", "console"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, []),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "console"}, ["console"]),
    ],
)
def test_the_standard_environment_turns_tracing_on(
    env: dict[str, str], exporters: list[str]
) -> None:
    assert tracing.exporter_names(env) == exporters


def test_off_by_default_nothing_is_installed() -> None:
    assert tracing.configure_tracing("tokenwire-edge", env={}) is False
    assert not tracing.is_enabled()
    assert isinstance(tracing.tracer(), trace.NoOpTracer)


def test_a_process_exports_its_spans_to_the_file_when_it_exits(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    script = (
        "from tokenwire import tracing\n"
        "assert tracing.configure_tracing('tokenwire-edge')\n"
        "with tracing.tracer().start_as_current_span('chat.ingress'):\n"
        "    pass\n"
    )
    env = {"PATH": "/usr/bin:/bin", "OTEL_TRACES_EXPORTER": "otlp_json_file",
           "OTEL_EXPORTER_OTLP_JSON_FILE": str(path), "OTEL_SERVICE_NAME": "edge-7"}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)

    [span] = read_spans([path])
    assert (span.name, span.service) == ("chat.ingress", "edge-7")


def test_inject_then_extract_is_the_same_span(spans: TraceCapture) -> None:
    with spans.tracing_on(), tracing.tracer().start_as_current_span("kafka.publish") as span:
        headers: list[tuple[str, bytes]] = [("tw-user", b"u1")]
        tracing.inject(headers)

    names = [name for name, _ in headers]
    assert names == ["tw-user", "traceparent"]
    extracted = trace.get_current_span(tracing.extract(headers)).get_span_context()
    assert (extracted.trace_id, extracted.span_id) == (
        span.get_span_context().trace_id, span.get_span_context().span_id,
    )
    assert extracted.is_remote


def test_extract_reads_dict_headers_and_nothing_from_none() -> None:
    context = tracing.extract({"traceparent": TRACEPARENT})
    assert f"{trace.get_current_span(context).get_span_context().span_id:016x}" == (
        "00f067aa0ba902b7"
    )
    assert not trace.get_current_span(tracing.extract(None)).get_span_context().is_valid
    assert not trace.get_current_span(tracing.extract([("x", b"y")])).get_span_context().is_valid


def test_session_entries_stay_plain_unless_tracing_is_on(spans: TraceCapture) -> None:
    headers = [("traceparent", TRACEPARENT)]
    plain = decode_entry("e", 5, TOKEN, where="t", headers=headers, timestamp_ms=1)
    assert type(plain) is Entry
    with spans.tracing_on():
        traced = decode_entry("e", 5, TOKEN, where="t", headers=headers, timestamp_ms=1)
        untraced = decode_entry("e", 6, TOKEN, where="t", headers=(), timestamp_ms=1)
    assert type(traced) is TracedEntry and traced.headers == tuple(headers)
    assert type(untraced) is Entry


def test_an_edge_made_while_tracing_is_off_has_no_tracing_middleware() -> None:
    from api.app import _middleware
    from api.edge_tracing import IngressTracing
    from tokenwire.settings import Settings

    settings = Settings(mode="development", cors_origins=["http://x"])
    assert all(m.cls is not IngressTracing for m in _middleware(settings))
