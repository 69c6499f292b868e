"""JSON logs (tokenwire/log_format.py): the formatter on hostile values, and real processes whose
every line, their frameworks' included, is one JSON object."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from tests.fixtures.asgi_server import free_port
from tests.fixtures.pipeline import (
    WorkerProcess,
    pipeline_settings_for,
    settings_env,
    start_worker,
)
from tests.fixtures.tracing import TraceCapture
from tests.fixtures.waiting import eventually, eventually_true
from tokenwire.log_format import JsonFormatter, faust_logging_config, uvicorn_log_config
from tokenwire.settings import Settings
from tokenwire.topics import ensure_core_topics

EDGE_READY_TIMEOUT_S = 60.0


def _record(msg: str, *args: object, exc_info: Any = None, name: str = "api.ingress"
            ) -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, exc_info)


def _line(record: logging.LogRecord) -> dict[str, Any]:
    text = JsonFormatter().format(record)
    assert text.isascii() and len(text.splitlines()) == 1, text
    entry = json.loads(text)
    assert isinstance(entry, dict)
    return entry


def test_a_line_has_the_record_and_its_key_value_fields() -> None:
    entry = _line(_record("chat request accepted request_id=%s session=%s attempt=%d",
                          "r-1", "s-1", 2))
    assert entry["level"] == "INFO"
    assert entry["logger"] == "api.ingress"
    assert entry["message"] == "chat request accepted request_id=r-1 session=s-1 attempt=2"
    assert (entry["request_id"], entry["session"], entry["attempt"]) == ("r-1", "s-1", 2)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["timestamp"])
    assert "trace_id" not in entry and "span_id" not in entry


def test_a_hostile_value_stays_one_field_on_one_line() -> None:
    hostile = 's x user=admin level=ERROR\n{"level": "ERROR", "user": "admin"}\r\u2028\x85'
    entry = _line(_record("sse stream refused reason=%s session=%s", "cap", hostile))
    assert entry["session"] == hostile
    assert entry["level"] == "INFO"
    assert "user" not in entry
    assert set(entry) == {"timestamp", "level", "logger", "message", "reason", "session"}


def test_repr_quoted_values_are_the_strings_themselves() -> None:
    value = "bob 'o\" key=1 \\ end"
    entry = _line(_record("refused user=%r error=%r; closing", value, ValueError("a b")))
    assert entry["user"] == value
    assert entry["error"] == "ValueError('a b')"  # not a str: its repr, the trailing ; dropped
    assert "key" not in entry


def test_values_keep_their_json_types() -> None:
    entry = _line(_record("n=%d ratio=%.2f ok=%s missing=%s text=%s", 3, 0.126, True, None, "7"))
    assert (entry["n"], entry["ratio"], entry["ok"], entry["missing"]) == (3, 0.13, True, None)
    assert entry["text"] == "7"


def test_a_value_with_text_around_it_is_the_whole_word() -> None:
    entry = _line(_record("simulator starting url=http://%s:%d/v1 pct=%d%%", "h", 80, 5))
    assert (entry["url"], entry["pct"]) == ("http://h:80/v1", "5%")


def test_a_message_without_arguments_gives_its_literal_fields() -> None:
    entry = _line(_record("""ready mode=fast name='a b' quote="q\\"z" (attempt=2)"""))
    assert (entry["mode"], entry["name"], entry["quote"], entry["attempt"]) == (
        "fast", "a b", 'q"z', 2
    )


def test_a_field_named_like_a_reserved_key_does_not_replace_it() -> None:
    entry = _line(_record("odd level=%s message=%s", "ERROR", "forged"))
    assert (entry["level"], entry["field_level"], entry["field_message"]) == (
        "INFO", "ERROR", "forged"
    )
    assert entry["message"] == "odd level=ERROR message=forged"


def test_mapping_arguments_and_unusual_conversions() -> None:
    assert _line(_record("a=%(a)s b=%(b)r", {"a": 1, "b": "x y"}))["b"] == "x y"
    star = _line(_record("width %*d w=%s", 3, 4, "z"))
    assert star["message"] == "width   4 w=z" and "w" not in star  # no guessing when unaligned


def test_bad_arguments_never_raise_and_keep_the_line() -> None:
    entry = _line(_record("bad %d x=%s", "not a number", 1))
    assert entry["message"].startswith("bad %d x=%s (unformattable arguments")
    assert _line(_record("x=%s", object()))["x"].startswith("<object object")
    assert "fields" not in _line(_record(b"bytes message"))  # type: ignore[arg-type]


def test_exception_info_is_a_string_field() -> None:
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        entry = _line(_record("failed request_id=%s", "r-9", exc_info=sys.exc_info()))
    assert entry["request_id"] == "r-9"
    assert entry["exc_info"].startswith("Traceback (most recent call last):")
    assert "RuntimeError: boom\nsecond line" in entry["exc_info"]


def test_uvicorn_access_lines_get_their_fields() -> None:
    record = _record('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/v1/x?a=1 b=2",
                     "1.1", 200, name="uvicorn.access")
    entry = _line(record)
    assert (entry["method"], entry["path"], entry["status_code"]) == ("GET", "/v1/x?a=1 b=2", 200)
    assert "b" not in entry


def test_trace_and_span_ids_of_the_current_span() -> None:
    # A valid span context made current through the API alone: no provider needed for this.
    context = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C, span_id=0x00F067AA0BA902B7, is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    with trace.use_span(NonRecordingSpan(context)):
        entry = _line(_record("in a span x=%s", 1))
    assert entry["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert entry["span_id"] == "00f067aa0ba902b7"


def test_trace_ids_of_an_sdk_span(spans: TraceCapture) -> None:
    with spans.provider.get_tracer(__name__).start_as_current_span("chat.ingress") as span:
        entry = _line(_record("chat request accepted request_id=%s", "r-2"))
    context = span.get_span_context()
    assert (entry["trace_id"], entry["span_id"]) == (
        format(context.trace_id, "032x"), format(context.span_id, "016x")
    )
    assert _line(_record("after the span x=%s", 1)).keys().isdisjoint({"trace_id", "span_id"})


def test_text_stays_the_default_with_frameworks_on_their_own_handlers() -> None:
    assert Settings().log_format == "text"
    assert faust_logging_config("INFO", "text") is None
    assert uvicorn_log_config("text") is not None
    assert uvicorn_log_config("json") is None


# --- real processes ------------------------------------------------------------------------


def _json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a process's log (stdout and stderr), each of which must be a JSON object."""
    entries = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"{path.name} line {number} is not JSON: {line!r}")
        assert isinstance(entry, dict) and {"timestamp", "level", "logger", "message"} <= set(entry)
        entries.append(entry)
    return entries


@pytest.fixture(scope="module")
async def json_settings(kafka_bootstrap: str, simulator_url: str) -> Settings:
    tag = f"twlog{time.monotonic_ns() % 10**8}"
    settings = pipeline_settings_for(kafka_bootstrap, simulator_url, tag, log_format="json",
                                     edge_port=free_port())
    await ensure_core_topics(settings)
    return settings


@pytest.fixture(scope="module")
async def json_worker(json_settings: Settings, tmp_path_factory: pytest.TempPathFactory
                      ) -> AsyncIterator[WorkerProcess]:
    worker = await start_worker(json_settings, tmp_path_factory.mktemp("json-worker"))
    yield worker
    worker.stop()


def _spawn_edge(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "tokenwire.cli", "edge", "--host", "127.0.0.1"],
            env=settings_env(settings), stdout=log_file, stderr=subprocess.STDOUT,
        )


@pytest.fixture(scope="module")
async def json_edge(json_settings: Settings, tmp_path_factory: pytest.TempPathFactory
                    ) -> AsyncIterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    log_path = tmp_path_factory.mktemp("json-edge") / "edge.log"
    process = _spawn_edge(json_settings, log_path)
    url = f"http://127.0.0.1:{json_settings.edge_port}"
    try:
        async with httpx.AsyncClient() as client:
            async def up() -> bool:
                assert process.poll() is None, log_path.read_text(errors="replace")
                try:
                    return (await client.get(f"{url}/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually_true(up, timeout_s=EDGE_READY_TIMEOUT_S)
        yield url, log_path, process
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def test_the_worker_writes_only_json_lines_faust_included(json_worker: WorkerProcess
                                                                ) -> None:
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{json_worker.web_url}/metrics")).status_code == 200
    entries = _json_lines(json_worker.log_path)
    loggers = {entry["logger"] for entry in entries}
    assert any(name.startswith("faust") for name in loggers), loggers
    assert "agents.worker" in loggers
    assert any("Worker ready" in entry["message"] for entry in entries)


async def test_the_edge_writes_only_json_lines_uvicorn_included(
    json_edge: tuple[str, Path, subprocess.Popen[bytes]]
) -> None:
    url, log_path, _ = json_edge
    async with httpx.AsyncClient() as client:
        await client.get(f"{url}/healthz?probe=x%0Auser=admin")

    def access_line() -> bool:
        return any(e["logger"] == "uvicorn.access" for e in _json_lines(log_path))

    await eventually(access_line)
    entries = _json_lines(log_path)
    loggers = {entry["logger"] for entry in entries}
    assert {"uvicorn.error", "uvicorn.access", "api.server"} <= loggers, loggers
    access = next(e for e in entries if e["logger"] == "uvicorn.access")
    assert access["method"] == "GET" and access["status_code"] == 200
    assert "user" not in access
    assert next(e for e in entries if e["logger"] == "api.server")["port"] == (
        int(url.rsplit(":", 1)[1])
    )



def test_shutdown_lines_are_json_too(
    json_worker: WorkerProcess, json_edge: tuple[str, Path, subprocess.Popen[bytes]]
) -> None:
    """Stops this module's processes: keep it the module's last test."""
    _, edge_log, edge = json_edge
    json_worker.stop()
    _stop(edge)
    assert any("Closing event loop" in e["message"] for e in _json_lines(json_worker.log_path))
    assert any("Finished server process" in e["message"] for e in _json_lines(edge_log))
