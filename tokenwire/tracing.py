"""OpenTelemetry tracing: one trace per chat, across edge, Kafka and worker; off by default.

On with the standard environment, read once at process start (``configure_tracing``):

- ``OTEL_TRACES_EXPORTER``: ``otlp`` (OTLP/HTTP protobuf to ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, headers from ``OTEL_EXPORTER_OTLP_HEADERS``), ``console``,
  ``otlp_json_file`` (``tokenwire.trace_file``: OTLP JSON lines appended to
  ``OTEL_EXPORTER_OTLP_JSON_FILE``, else ``TOKENWIRE_TRACE_FILE``, else ``tokenwire-traces.jsonl``),
  several comma-separated; ``none`` (or unset) is off;
- or just ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``: ``otlp``;
- ``OTEL_SDK_DISABLED=true`` wins over both. ``OTEL_SERVICE_NAME`` overrides the process's name
  (``tokenwire-edge``, ``tokenwire-worker``); ``OTEL_TRACES_SAMPLER`` etc. as the SDK reads them.

Off, nothing is made: the call sites check ``is_enabled()`` once per request (or per stream
batch), never per token, and take the untraced path.

Spans (the names ``tokenwire trace``, the README and the exemplars rely on):

======================  ==========  ============================================================
span                    process     what / attributes
======================  ==========  ============================================================
``chat.ingress``        edge        SERVER span of ``POST /v1/chat``, ``/v1/ui/chat``,
                                    ``/v1/chat/completions`` (auth, validation, quotas), until
                                    the response starts; continues an incoming ``traceparent``.
                                    ``http.request.method``, ``url.path``,
                                    ``http.response.status_code``, ``tokenwire.request_id``,
                                    ``tokenwire.session_id``
``kafka.publish``       edge        PRODUCER, child of ``chat.ingress``: the ``chat.requests``
                                    send; its context is the record's ``traceparent`` header
``chat.queue_wait``     worker      from the record's timestamp until the worker takes it;
                                    ``messaging.kafka.offset``, ``…partition``
``chat.request``        worker      CONSUMER, from taken to acked-ready: waiting for the
                                    session's turn and a slot, every attempt, the lifecycle
                                    records; ``tokenwire.finish_reason`` / ``error.type``
``chat.attempt``        worker      one generation attempt: ``tokenwire.attempt``,
                                    ``retry.reason`` (the failure before it, or ``redelivered``),
                                    ``error.type`` when it failed
``llm.call``            worker      CLIENT, the upstream stream of one attempt:
                                    ``llm.time_to_first_chunk_ms``, ``llm.chunks``,
                                    ``llm.output_chunks``, ``gen_ai.usage.*_tokens``; event
                                    ``first_chunk``
``session.write``       worker      one write batch (events sent between two waits for the
                                    broker): ``tokenwire.session.events``,
                                    ``tokenwire.session.bytes``; child of ``chat.request``
``chat.cancel``         edge        PRODUCER: the cancel record's publish (``chat.control``)
``chat.cancel``         worker      from the user's cancel to the upstream stream closed (or the
                                    request ended without a generation); links the edge's span
``edge.first_token``    edge        a stream delivered an attempt's first output event: from
                                    the record's timestamp until written to the client
``edge.delivered``      edge        a stream delivered the request's terminal event (same)
======================  ==========  ============================================================

Propagation, W3C trace context (``traceparent``/``tracestate``): HTTP header into
``chat.ingress``; ``chat.requests`` record headers (a direct producer's own ``traceparent`` is
continued the same way); the worker puts the ``chat.request`` span's context on the session
records that open an attempt (``start``/``retry``), carry its first output, or end the request
(``done``/``error``), never on every token; the edge's cancel on the ``chat.control`` record.
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Tracer

log = logging.getLogger(__name__)

TRACER_NAME = "tokenwire"
EDGE_SERVICE = "tokenwire-edge"
WORKER_SERVICE = "tokenwire-worker"
DEFAULT_TRACE_FILE = "tokenwire-traces.jsonl"
EXPORTERS = frozenset({"otlp", "console", "otlp_json_file"})
TRACEPARENT = "traceparent"

# Span names, one place (see the table above).
INGRESS = "chat.ingress"
PUBLISH = "kafka.publish"
QUEUE_WAIT = "chat.queue_wait"
REQUEST = "chat.request"
ATTEMPT = "chat.attempt"
LLM_CALL = "llm.call"
SESSION_WRITE = "session.write"
CANCEL = "chat.cancel"
FIRST_TOKEN = "edge.first_token"
DELIVERED = "edge.delivered"

_enabled = False
_tracer: Tracer = trace.NoOpTracer()
_provider: Any = None  # the SDK provider this module installed, shut down at exit


def is_enabled() -> bool:
    return _enabled


def tracer() -> Tracer:
    """tokenwire's tracer (a no-op one while tracing is off)."""
    return _tracer


def exporter_names(env: Mapping[str, str] = os.environ) -> list[str]:
    """The exporters the environment asks for; empty: tracing stays off."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    raw = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if raw:
        names = [name.strip() for name in raw.split(",") if name.strip()]
        return [] if "none" in names else names
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return ["otlp"] if any(env.get(name, "").strip() for name in endpoints) else []


def trace_file_path(env: Mapping[str, str] = os.environ) -> str:
    return (
        env.get("OTEL_EXPORTER_OTLP_JSON_FILE")
        or env.get("TOKENWIRE_TRACE_FILE")
        or DEFAULT_TRACE_FILE
    )


def configure_tracing(service_name: str, env: Mapping[str, str] = os.environ) -> bool:
    """Install an SDK tracer provider if the environment turns tracing on; True if it did.

    Called once at process start. Spans are batched (``BatchSpanProcessor``) and flushed when
    the process exits."""
    global _provider
    names = exporter_names(env)
    if not names:
        return False
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporters = [exporter for name in names if (exporter := _exporter(name, env)) is not None]
    if not exporters:
        return False
    name = env.get("OTEL_SERVICE_NAME") or service_name
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    use_provider(provider)
    _provider = provider
    atexit.register(shutdown)
    log.info("tracing on service=%s exporters=%s", name, ",".join(names))
    return True


def use_provider(provider: Any, *, set_global: bool = True) -> None:
    """Trace through ``provider`` (an SDK ``TracerProvider``) and switch tokenwire's spans on;
    ``set_global``: also make it the process's global provider (the API takes one per process,
    so tests set it once and switch spans on and off with ``set_global=False``)."""
    global _enabled, _tracer
    if set_global:
        trace.set_tracer_provider(provider)
    _tracer = provider.get_tracer(TRACER_NAME)
    _enabled = True


def disable() -> None:
    """Switch tokenwire's spans off again (the global provider stays); for tests."""
    global _enabled, _tracer
    _enabled = False
    _tracer = trace.NoOpTracer()


def shutdown() -> None:
    """Flush and stop the provider this module installed (idempotent)."""
    global _provider
    provider, _provider = _provider, None
    if provider is not None:
        provider.shutdown()


def _exporter(name: str, env: Mapping[str, str]) -> Any:
    if name == "otlp":
        protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
        )
        if protocol != "http/protobuf":
            log.warning("OTLP protocol %s is not installed; using http/protobuf", protocol)
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name == "otlp_json_file":
        from tokenwire.trace_file import OtlpJsonFileExporter

        return OtlpJsonFileExporter(trace_file_path(env))
    log.warning("unknown trace exporter %r ignored (known: %s)", name, ", ".join(sorted(EXPORTERS)))
    return None


# --- W3C trace context in Kafka headers (aiokafka/Faust: a sequence of (str, bytes)) ---------


class _HeaderSetter(Setter[list[tuple[str, bytes]]]):
    def set(self, carrier: list[tuple[str, bytes]], key: str, value: str) -> None:
        carrier.append((key, value.encode()))


class _HeaderGetter(Getter[Iterable[tuple[str, bytes]]]):
    def get(self, carrier: Iterable[tuple[str, bytes]], key: str) -> list[str] | None:
        values = [_text(value) for name, value in carrier if name.lower() == key]
        return values or None

    def keys(self, carrier: Iterable[tuple[str, bytes]]) -> list[str]:
        return [name for name, _ in carrier]


_SETTER = _HeaderSetter()
_GETTER = _HeaderGetter()


def _text(value: bytes | str | None) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value or ""


def inject(headers: list[tuple[str, bytes]], context: Context | None = None) -> None:
    """Add ``traceparent`` (and ``tracestate``) of ``context`` (default: the current one)."""
    propagate.inject(headers, context=context, setter=_SETTER)


def extract(headers: Sequence[tuple[str, bytes]] | Mapping[str, bytes] | None) -> Context:
    """The trace context a record's headers carry (an empty context when none)."""
    if isinstance(headers, Mapping):  # Faust lets a producer give a dict
        headers = list(headers.items())
    return propagate.extract(headers or (), getter=_GETTER)


def span_headers(span: Span) -> list[tuple[str, bytes]]:
    """The headers that make ``span`` the parent of what reads the record: built once per
    request, put on the few records that carry it."""
    headers: list[tuple[str, bytes]] = []
    inject(headers, trace.set_span_in_context(span))
    return headers


def has_traceparent(headers: Sequence[tuple[str, bytes]] | None) -> bool:
    return bool(headers) and any(name == TRACEPARENT for name, _ in headers)  # type: ignore[union-attr]


def link_to(context: Context) -> list[Link]:
    """A link to the span ``context`` names, if it names one."""
    span_context: SpanContext = trace.get_current_span(context).get_span_context()
    return [Link(span_context)] if span_context.is_valid else []


def attach(context: Context) -> object:
    return otel_context.attach(context)


def detach(token: object) -> None:
    otel_context.detach(token)  # type: ignore[arg-type]


__all__ = [
    "SpanKind",
    "configure_tracing",
    "extract",
    "inject",
    "is_enabled",
    "tracer",
]
