"""One request, from the first attempt to its terminal event.

Each attempt streams the LLM through a bounded queue so the loop below can flush coalesced output
on its latency deadline even while no chunk arrives, and notice a stalled stream.

A cancel (cancellation.py) stops the attempt where it is: the reader task is cancelled, which
closes the upstream HTTP stream (so the provider stops generating and billing); the chunks
already received are still written, then ``done`` with ``finish_reason: "cancelled"`` and the
usage counted so far (``estimated``: the provider's usage chunk never came).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import openai

from agents.chat import request_trace
from agents.chat.cancellation import CancelSignal
from agents.chat.coalescing import Coalescer
from agents.chat.llm_stream import Chunk, stream_chunks
from agents.chat.retry_policy import RetryPolicy
from agents.chat.session_writer import SessionWriter
from agents.chat.stream_output import MessageAssembly, PendingOutput, lanes_of
from agents.metrics import WorkerMetrics
from schemas.lifecycle import FinalMessage
from schemas.session_events import CANCELLED, Timings, Usage
from tokenwire import tracing
from tokenwire.errors import GenerationError
from tokenwire.exemplars import observe
from tokenwire.settings import Settings

log = logging.getLogger(__name__)

CHUNK_QUEUE_SIZE = 256
_END = object()
_WAKE = object()  # put by a cancel so that a relay waiting for a chunk looks up
Item = Chunk | GenerationError | object


@dataclass
class AttemptResult:
    message: FinalMessage
    finish_reason: str
    usage: Usage
    first_token_at: float | None


@dataclass
class Outcome:
    ok: bool
    attempt: int
    retries: int
    timings: Timings
    answer: str = ""
    finish_reason: str = ""
    usage: Usage = field(default_factory=Usage)
    error: GenerationError | None = None
    message: FinalMessage | None = None


FirstTokenHook = Callable[[float], Awaitable[None]]


@dataclass
class Generation:
    settings: Settings
    client: openai.AsyncOpenAI
    policy: RetryPolicy
    metrics: WorkerMetrics
    writer: SessionWriter
    on_first_token: FirstTokenHook
    cancel: CancelSignal = field(default_factory=CancelSignal)
    # What attempts that failed after streaming output cost, as counted here (their provider
    # usage chunk never came): reported on the ``error`` if the request fails.
    _spent: Usage | None = None
    _assembly: MessageAssembly | None = None

    async def run(self, first_attempt: int, recovery_reason: str) -> Outcome:
        """Run attempts until one finishes, is cancelled or the policy gives up; always writes a
        terminal event."""
        attempt, retries = first_attempt, 0
        accepted_at = self.writer.accepted_at
        first_token_at: float | None = None
        await self.writer.begin(attempt, reason=recovery_reason)
        try:
            async with asyncio.timeout(self.settings.request_timeout_s):
                while True:
                    try:
                        result = await self._attempt()
                    except GenerationError as error:
                        self._count_failed_attempt()
                        if self.cancel.requested or not self.policy.should_retry(error, attempt):
                            raise
                        delay = self.policy.delay_s(attempt, error.retry_after_s)
                        attempt, retries = attempt + 1, retries + 1
                        self.metrics.retries.labels(error.code).inc()
                        log.info(
                            "retrying request_id=%s attempt=%s code=%s delay_s=%.3f",
                            self.writer.request_id,
                            attempt,
                            error.code,
                            delay,
                        )
                        await self.writer.begin(attempt, reason=error.code, delay_s=delay)
                        if await self.cancel.wait(delay):
                            result = self._cancelled_before_output()
                            break
                        continue
                    first_token_at = result.first_token_at
                    break
        except TimeoutError:
            self._count_failed_attempt()  # the request's deadline cut the attempt in flight
            error = GenerationError("timeout", "request timed out", retryable=False)
            return await self._fail(error, attempt, retries, accepted_at)
        except GenerationError as error:
            return await self._fail(error, attempt, retries, accepted_at)
        timings = _timings(accepted_at, first_token_at)
        message = result.message
        await self.writer.done(result.finish_reason, result.usage, timings, message.tool_calls)
        return Outcome(
            True, attempt, retries, timings, message.content, result.finish_reason,
            result.usage, message=message,
        )  # fmt: skip

    def _count_failed_attempt(self) -> None:
        assembly, self._assembly = self._assembly, None
        if assembly is None or not assembly.output_chunks:
            return
        cost = assembly.estimated_usage(len(self.writer.request.prompt_text))
        spent = self._spent or Usage(estimated=True)
        self._spent = Usage(
            prompt_tokens=spent.prompt_tokens + cost.prompt_tokens,
            completion_tokens=spent.completion_tokens + cost.completion_tokens,
            total_tokens=spent.total_tokens + cost.total_tokens,
            estimated=True,
        )

    def _cancelled_before_output(self) -> AttemptResult:
        # Nothing of this attempt was sent to the provider; earlier failed attempts may have been.
        usage = self._spent or Usage(estimated=True)
        return AttemptResult(FinalMessage(), CANCELLED, usage, None)

    async def _fail(
        self, error: GenerationError, attempt: int, retries: int, accepted_at: float
    ) -> Outcome:
        timings = _timings(accepted_at, None)
        await self.writer.error(
            error.code, error.message, retryable=error.retryable, emitted_at=timings.finished_at,
            usage=self._spent,
        )  # fmt: skip
        return Outcome(False, attempt, retries, timings, error=error, usage=self._spent or Usage())

    async def _attempt(self) -> AttemptResult:
        if tracing.is_enabled():
            with request_trace.attempt_span(self.writer):
                return await self._run_attempt()
        return await self._run_attempt()

    async def _run_attempt(self) -> AttemptResult:
        if self.cancel.requested:  # came while the attempt was being opened: nothing is sent
            return self._cancelled_before_output()
        queue: asyncio.Queue[Item] = asyncio.Queue(CHUNK_QUEUE_SIZE)
        reader = asyncio.create_task(self._read(queue))
        forget = self.cancel.on_request(lambda: _stop_reading(reader, queue))
        try:
            return await self._relay(queue)
        finally:
            forget()
            reader.cancel()
            try:
                await reader
            except asyncio.CancelledError:
                # The reader's own cancellation is expected; this task's (a revoke, the request
                # deadline) must go on up, not be swallowed here.
                if _this_task_is_cancelled():
                    raise
            if self.cancel.requested and self.cancel.requested_at is not None:
                # The upstream stream is closed once the reader is done.
                closed_after = time.time() - self.cancel.requested_at
                self.metrics.cancel_latency.observe(max(0.0, closed_after))
                if tracing.is_enabled():
                    request_trace.cancel_applied(self.cancel, "generating")

    async def _read(self, queue: asyncio.Queue[Item]) -> None:
        model = self.writer.model
        try:
            # aclosing: a cancel that finds the reader at ``queue.put`` still closes the upstream
            # stream here, in this task, not later from the garbage collector.
            chunks = stream_chunks(self.client, self.writer.request, model)
            if tracing.is_enabled():
                chunks = request_trace.llm_call(chunks, model)
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    await queue.put(chunk)
        except GenerationError as error:
            await queue.put(error)
            return
        await queue.put(_END)

    async def _relay(self, queue: asyncio.Queue[Item]) -> AttemptResult:
        pending = PendingOutput(Coalescer.from_settings(self.settings))
        message = self._assembly = MessageAssembly()
        finish_reason, usage, first_token_at = "stop", None, None
        stall_s = self.settings.chunk_timeout_s
        while True:
            if self.cancel.requested:
                # What was received before the cancel is the user's: write it, then stop.
                chunks, ended = _received(queue)
                for chunk in chunks:
                    first_token_at = await self._take(chunk, pending, message, first_token_at)
                    finish_reason = chunk.finish_reason or finish_reason
                    usage = chunk.usage or usage
                if not ended:  # else the whole answer had come: it is not cut short
                    finish_reason = CANCELLED
                break
            timeout = stall_s
            if not pending.empty:
                timeout = max(0.0, min(stall_s, pending.deadline() - time.time()))
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for starts a task per chunk.
                async with asyncio.timeout(timeout):
                    item = await queue.get()
            except TimeoutError:
                if pending.empty:
                    raise GenerationError(
                        "stall", "no chunk within the chunk timeout", retryable=True
                    ) from None
                await self._flush(pending)
                continue
            if item is _WAKE:
                continue
            if isinstance(item, GenerationError):
                if self.cancel.requested:
                    continue  # the stream failed as it was being stopped: the cancel wins
                raise item
            if item is _END:
                break
            assert isinstance(item, Chunk)
            first_token_at = await self._take(item, pending, message, first_token_at)
            finish_reason = item.finish_reason or finish_reason
            usage = item.usage or usage
            behind = not queue.empty() or self.writer.unacked > 0
            if pending.due(time.time(), behind=behind):
                await self._flush(pending)
        if not pending.empty:
            await self._flush(pending)
        if usage is None or finish_reason == CANCELLED:
            # No usage chunk (cut off, cancelled, or a provider that ignores include_usage):
            # count what can be counted rather than report zero.
            usage = message.estimated_usage(len(self.writer.request.prompt_text))
        # A call cut short by a cancel before the provider named it is dropped, not an error.
        final = message.message(lenient=finish_reason == CANCELLED)
        return AttemptResult(final, finish_reason, usage, first_token_at)

    async def _take(
        self,
        chunk: Chunk,
        pending: PendingOutput,
        message: MessageAssembly,
        first_token_at: float | None,
    ) -> float | None:
        """Add a chunk's output; returns the time of the first token."""
        if not chunk.has_output:
            return first_token_at
        if first_token_at is None:
            first_token_at = chunk.received_at
            await self.on_first_token(chunk.received_at)
        message.add(chunk)
        self.metrics.tokens.inc()
        if chunk.tool_calls or chunk.refusal or chunk.reasoning:
            for lane, text, tool_id, tool_name in lanes_of(chunk):
                if pending.must_flush_for(lane):
                    await self._flush(pending)
                logprobs = chunk.logprobs if lane[0] == "token" else None
                pending.add(
                    lane, text, chunk.received_at, tool_id=tool_id, tool_name=tool_name,
                    logprobs=logprobs,
                )  # fmt: skip
            return first_token_at
        # The common case, text only: no lane list built.
        if pending.must_flush_for(_TEXT_LANE):
            await self._flush(pending)
        pending.add(_TEXT_LANE, chunk.text, chunk.received_at, logprobs=chunk.logprobs)
        return first_token_at

    async def _flush(self, pending: PendingOutput) -> None:
        out = pending.drain()
        await self.writer.output(out)
        self.metrics.token_events.inc()
        observe(self.metrics.token_latency, max(0.0, time.time() - out.received_at))


_TEXT_LANE = ("token", 0)


def _this_task_is_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _stop_reading(reader: asyncio.Task[None], queue: asyncio.Queue[Item]) -> None:
    reader.cancel()
    with contextlib.suppress(asyncio.QueueFull):
        # A full queue means the relay is not waiting: it sees the cancel at its next chunk.
        queue.put_nowait(_WAKE)


def _received(queue: asyncio.Queue[Item]) -> tuple[list[Chunk], bool]:
    """The chunks still queued (received before the cancel), and whether the stream's end was."""
    chunks, ended = [], False
    while not queue.empty():
        item = queue.get_nowait()
        if isinstance(item, Chunk):
            chunks.append(item)
        ended = ended or item is _END
    return chunks, ended


def _timings(accepted_at: float, first_token_at: float | None) -> Timings:
    finished_at = time.time()
    return Timings(
        accepted_at=accepted_at,
        first_token_at=first_token_at,
        finished_at=finished_at,
        ttft_s=None if first_token_at is None else first_token_at - accepted_at,
        duration_s=finished_at - accepted_at,
    )
