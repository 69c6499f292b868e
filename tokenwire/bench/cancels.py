"""Cancel streams as a client process runs them: start long answers, stop them mid-stream.

Each stream posts one slow, long answer to ``POST /v1/chat`` and follows its session over SSE.
Once every stream of the run has its first token (the orchestrator gathers this from every
client process and then releases them), each stream waits its own 3..20 tokens' time at the
answer's rate (so the cancels are spread over time while the other streams still generate),
posts ``/v1/sessions/{sid}/requests/{rid}/cancel`` with the session's write token and reads on
to the terminal event. Waiting for all first tokens keeps the cancels out of the burst of new
sessions (topic creation, first fetches): what is measured is a worker busy generating. The
spread is by time rather than by tokens seen: tokens reach a loaded client in bursts, and a
count would fire many cancels in the same instant.

It reports the wall-clock moments the orchestrator compares with the simulator's record of the
upstream close (same machine clock): just before the cancel POST, its answer, the ``done`` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from tokenwire.bench.records import RequestRecord
from tokenwire.bench.sessions import SessionStream
from tokenwire.bench.wire import HttpError, post_json
from tokenwire.simulator import expected_tokens

MIN_TOKENS_BEFORE_CANCEL = 3
MAX_TOKENS_BEFORE_CANCEL = 20


def tokens_before_cancel(index: int) -> int:
    """Deterministic and spread: consecutive streams cancel at different points of 3..20
    (tokens' time after the release)."""
    span = MAX_TOKENS_BEFORE_CANCEL - MIN_TOKENS_BEFORE_CANCEL + 1
    return MIN_TOKENS_BEFORE_CANCEL + (index * 7) % span  # 7 and 18 are coprime


def marker(tag: str, label: str, index: int) -> str:
    """Unique in the prompt's first characters (what the simulator records); '#' ends it, so
    s1 is never found inside s10."""
    return f"#{tag}-{label}-s{index}#"


@dataclass(frozen=True)
class CancelJob:
    """What one client process runs; built by the orchestrator, sent as JSON."""

    host: str
    port: int
    tag: str
    label: str
    sessions: list[dict[str, Any]]  # {"index", "delay_s", "user_id", "credential"}
    tokens: int
    tps: float
    ttft_ms: float
    request_timeout_s: float


def cancel_prompt(job: CancelJob, index: int) -> list[dict[str, str]]:
    directive = f"[[sim: tokens={job.tokens} tps={job.tps:g} ttft_ms={job.ttft_ms:g}]]"
    text = f"{marker(job.tag, job.label, index)} cancel me {directive}"
    return [{"role": "user", "content": text}]


@dataclass
class CancelRecord(RequestRecord):
    """A request's events, whether its first token came, and how it ended."""

    finish_reason: str | None = None
    done_at: float | None = None
    generating: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, kind: str, data: dict[str, Any], at: float) -> None:
        super().add(kind, data, at)
        if kind == "done":
            self.finish_reason, self.done_at = data.get("finish_reason"), at
        if self.arrivals:
            self.generating.set()

    async def started(self) -> None:
        """Until the first token, or the end (a stream that gave up ends it without an event)."""
        waits = [asyncio.ensure_future(self.generating.wait()),
                 asyncio.ensure_future(self.finished.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    def prefix_ok(self) -> bool:
        """The tokens delivered are the start of the answer, each once, in order."""
        texts = [text for _, text in sorted(self.arrivals)]
        seqs = [seq for seq, _ in self.arrivals]
        return seqs == sorted(set(seqs)) and texts == self.expected[: len(texts)]


class CancelStream(SessionStream):
    """The session's SSE stream; its one request's record is a ``CancelRecord``."""

    def record(self, request_id: str) -> CancelRecord:
        record = self.records.get(request_id)
        if not isinstance(record, CancelRecord):
            record = self.records[request_id] = CancelRecord()
        return record


@dataclass
class CancelOutcome:
    """Everything a client process reports back."""

    streams: list[dict[str, Any]] = field(default_factory=list)
    session_ids: list[str] = field(default_factory=list)
    reconnects: int = 0
    id_violations: int = 0
    errors: list[str] = field(default_factory=list)
    phase_cpu_s: float = 0.0  # this process's CPU from the release to the end


class CancelRun:
    """One client process's streams: ``all_generating`` once each has its first token (or
    failed), then ``release`` lets them cancel."""

    def __init__(self, job: CancelJob) -> None:
        self.job = job
        self.out = CancelOutcome()
        self.release = asyncio.Event()
        self._generating = [asyncio.Event() for _ in job.sessions]

    async def all_generating(self) -> None:
        await asyncio.gather(*(event.wait() for event in self._generating))

    async def run(self) -> CancelOutcome:
        await asyncio.gather(*(self._session(session, generating) for session, generating
                               in zip(self.job.sessions, self._generating, strict=True)))
        return self.out

    async def _session(self, session: dict[str, Any], generating: asyncio.Event) -> None:
        index = int(session["index"])
        row: dict[str, Any] = {
            "index": index, "marker": marker(self.job.tag, self.job.label, index),
            "cancel_after_s": round(tokens_before_cancel(index) / self.job.tps, 3), "error": None,
        }
        stream: CancelStream | None = None
        try:
            await asyncio.sleep(float(session["delay_s"]))
            stream, record, write_token = await self._start(session, row)
            await asyncio.wait_for(record.started(), self.job.request_timeout_s)
            generating.set()
            await self.release.wait()
            await asyncio.sleep(row["cancel_after_s"])
            await self._cancel(session, row, record, write_token)
        except (OSError, HttpError, TimeoutError, KeyError) as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            generating.set()  # a failed stream must not hold the others back
            if stream is not None:
                await stream.stop()
                self.out.reconnects += stream.reconnects
                self.out.id_violations += stream.id_violations
                self.out.errors.extend(stream.errors[: max(0, 20 - len(self.out.errors))])
            self.out.streams.append(row)

    async def _start(self, session: dict[str, Any], row: dict[str, Any]
                     ) -> tuple[CancelStream, CancelRecord, str]:
        """Post the long answer and follow its session; (stream, record, write token)."""
        job = self.job
        messages = cancel_prompt(job, row["index"])
        status, answer = await asyncio.wait_for(post_json(
            job.host, job.port, "/v1/chat", {"user_id": session["user_id"], "messages": messages},
            headers={"authorization": f"Bearer {session['credential']}"},
        ), job.request_timeout_s)
        if status != 202:
            raise HttpError(status, json.dumps(answer).encode())
        row |= {"session_id": answer["session_id"], "request_id": answer["request_id"]}
        self.out.session_ids.append(answer["session_id"])
        stream = CancelStream(job.host, job.port, answer["session_id"], answer["stream_token"])
        record = stream.record(answer["request_id"])
        record.expected = expected_tokens(messages)
        stream.start()
        return stream, record, answer["write_token"]

    async def _cancel(self, session: dict[str, Any], row: dict[str, Any], record: CancelRecord,
                      write_token: str) -> None:
        """Post the cancel, timed from just before it is sent; then read on to the end."""
        job = self.job
        path = f"/v1/sessions/{row['session_id']}/requests/{row['request_id']}/cancel"
        headers = {"authorization": f"Bearer {session['credential']}",
                   "x-stream-token": write_token}
        row["tokens_before_cancel"] = len(record.arrivals)
        row["posted_at"] = time.time()
        status, _ = await asyncio.wait_for(
            post_json(job.host, job.port, path, {}, headers=headers), job.request_timeout_s
        )
        row |= {"answered_at": time.time(), "status": status}
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(record.finished.wait(), job.request_timeout_s)
        ended = record.finished.is_set()
        row |= {
            "finish_reason": record.finish_reason, "done_at": record.done_at,
            "tokens_total": len(record.arrivals), "prefix_ok": record.prefix_ok(),
            "error": record.error or (None if ended else "no terminal event"),
        }
