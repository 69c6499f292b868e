"""A real OTLP receiver: the OpenTelemetry Collector that tokenwire builds
(tokenwire/services/otelcol.py) takes spans that other processes export over OTLP/HTTP with the
SDK's OTLPSpanExporter, and its file exporter's output reads back with read_spans and
``tokenwire trace``.

The first run builds the collector from its Go modules into the cache (about 2 minutes on two
cores); later runs reuse the binary. Each module run has its own collector, state dir and port.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.cli import run_cli
from tests.fixtures.waiting import eventually
from tokenwire.services import otelcol
from tokenwire.settings import Settings, get_settings
from tokenwire.trace_file import SpanRecord, read_spans

# A process of its own that exports through the SDK's OTLP/HTTP exporter (protobuf), then exits:
# shutdown flushes the batch processor.
SDK_EXPORTER = """
import sys
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

endpoint, request_id = sys.argv[1], sys.argv[2]
provider = TracerProvider(resource=Resource.create({"service.name": "tokenwire-edge"}))
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
tracer = provider.get_tracer("tokenwire")
with tracer.start_as_current_span("chat.ingress", attributes={"tokenwire.request_id": request_id}):
    with tracer.start_as_current_span("kafka.publish", attributes={"tokenwire.attempt": 1}):
        pass
provider.shutdown()
"""

# tokenwire's own switch: one environment variable (OTEL_EXPORTER_OTLP_ENDPOINT) turns it on.
TOKENWIRE_TRACING = """
import sys
from tokenwire import tracing

assert tracing.configure_tracing(tracing.WORKER_SERVICE)
with tracing.tracer().start_as_current_span(
    tracing.REQUEST, attributes={"tokenwire.request_id": sys.argv[1]}
):
    with tracing.tracer().start_as_current_span(tracing.ATTEMPT):
        pass
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A running collector with its own state dir and port, on the cached (or built) binary."""
    binary = otelcol.install(get_settings())
    settings = get_settings().model_copy(update={
        "cache_dir": tmp_path_factory.mktemp("otelcol"),
        "otelcol": binary,
        "otelcol_port": _free_port(),
    })
    otelcol.start(settings)
    try:
        yield settings
    finally:
        otelcol.stop(settings)


def _run(script: str, *args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        check=True, timeout=60, env=env, cwd=Path(__file__).parents[2],
    )


def _spans_of(settings: Settings, request_id: str) -> list[SpanRecord]:
    path = otelcol.spans_path(settings)
    if not path.exists():
        return []
    spans = read_spans([path])
    traces = {s.trace_id for s in spans if s.attributes.get("tokenwire.request_id") == request_id}
    return [s for s in spans if s.trace_id in traces]


async def test_sdk_otlp_http_export_reaches_the_collectors_file(collector: Settings) -> None:
    request_id = f"req-{uuid.uuid4().hex[:8]}"
    _run(SDK_EXPORTER, f"{otelcol.address(collector)}/v1/traces", request_id)

    await eventually(lambda: len(_spans_of(collector, request_id)) == 2, timeout_s=30)
    spans = {s.name: s for s in _spans_of(collector, request_id)}
    ingress, publish = spans["chat.ingress"], spans["kafka.publish"]
    assert publish.trace_id == ingress.trace_id and len(ingress.trace_id) == 32
    assert publish.parent_span_id == ingress.span_id
    assert ingress.service == publish.service == "tokenwire-edge"
    assert publish.attributes == {"tokenwire.attempt": 1}


async def test_one_env_var_sends_tokenwire_spans_to_the_collector(
    collector: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    request_id = f"req-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otelcol.address(collector)
    _run(TOKENWIRE_TRACING, request_id, env=env)

    await eventually(lambda: len(_spans_of(collector, request_id)) == 2, timeout_s=30)
    assert {s.service for s in _spans_of(collector, request_id)} == {"tokenwire-worker"}
    path = str(otelcol.spans_path(collector))
    assert run_cli(["trace", request_id, "--file", path]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [row.split("|")[2].split("[")[0].strip() for row in rows] == [
        "chat.request", "chat.attempt",
    ]
