"""One request, from the first attempt to its terminal event.

Each attempt streams the LLM through a bounded queue so the loop below can flush coalesced text
on its latency deadline even while no chunk arrives, and notice a stalled stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import openai

from agents.chat.coalescing import Coalescer
from agents.chat.llm_stream import Chunk, stream_chunks
from agents.chat.retry_policy import RetryPolicy
from agents.chat.session_writer import SessionWriter
from agents.metrics import WorkerMetrics
from schemas.session_events import Timings, Usage
from tokenwire.errors import GenerationError
from tokenwire.settings import Settings

log = logging.getLogger(__name__)

CHUNK_QUEUE_SIZE = 256
_END = object()


@dataclass
class AttemptResult:
    answer: str
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


FirstTokenHook = Callable[[float], Awaitable[None]]


@dataclass
class Generation:
    settings: Settings
    client: openai.AsyncOpenAI
    policy: RetryPolicy
    metrics: WorkerMetrics
    writer: SessionWriter
    on_first_token: FirstTokenHook

    async def run(self, first_attempt: int, recovery_reason: str) -> Outcome:
        """Run attempts until one finishes or the policy gives up; always writes a terminal."""
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
                        if not self.policy.should_retry(error, attempt):
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
                        await asyncio.sleep(delay)
                        continue
                    first_token_at = result.first_token_at
                    break
        except TimeoutError:
            error = GenerationError("timeout", "request timed out", retryable=False)
            return await self._fail(error, attempt, retries, accepted_at)
        except GenerationError as error:
            return await self._fail(error, attempt, retries, accepted_at)
        timings = _timings(accepted_at, first_token_at)
        await self.writer.done(result.finish_reason, result.usage, timings)
        return Outcome(
            True, attempt, retries, timings, result.answer, result.finish_reason, result.usage
        )

    async def _fail(
        self, error: GenerationError, attempt: int, retries: int, accepted_at: float
    ) -> Outcome:
        timings = _timings(accepted_at, None)
        await self.writer.error(
            error.code, error.message, retryable=error.retryable, emitted_at=timings.finished_at
        )
        return Outcome(False, attempt, retries, timings, error=error)

    async def _attempt(self) -> AttemptResult:
        queue: asyncio.Queue[Chunk | GenerationError | object] = asyncio.Queue(CHUNK_QUEUE_SIZE)
        reader = asyncio.create_task(self._read(queue))
        try:
            return await self._relay(queue)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read(self, queue: asyncio.Queue[Chunk | GenerationError | object]) -> None:
        model = self.writer.model
        try:
            async for chunk in stream_chunks(self.client, self.writer.request, model):
                await queue.put(chunk)
        except GenerationError as error:
            await queue.put(error)
            return
        await queue.put(_END)

    async def _relay(self, queue: asyncio.Queue[Chunk | GenerationError | object]) -> AttemptResult:
        coalescer = Coalescer.from_settings(self.settings)
        parts: list[str] = []
        finish_reason, usage, first_token_at = "stop", Usage(), None
        stall_s = self.settings.chunk_timeout_s
        while True:
            timeout = stall_s
            if not coalescer.empty:
                timeout = max(0.0, min(stall_s, coalescer.deadline() - time.time()))
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for starts a task per chunk.
                async with asyncio.timeout(timeout):
                    item = await queue.get()
            except TimeoutError:
                if coalescer.empty:
                    raise GenerationError(
                        "stall", "no chunk within the chunk timeout", retryable=True
                    ) from None
                await self._flush(coalescer)
                continue
            if isinstance(item, GenerationError):
                raise item
            if item is _END:
                break
            assert isinstance(item, Chunk)
            if item.text:
                if first_token_at is None:
                    first_token_at = item.received_at
                    await self.on_first_token(item.received_at)
                parts.append(item.text)
                coalescer.add(item.text, item.received_at)
                self.metrics.tokens.inc()
            finish_reason = item.finish_reason or finish_reason
            usage = item.usage or usage
            if coalescer.due(time.time()):
                await self._flush(coalescer)
        if not coalescer.empty:
            await self._flush(coalescer)
        return AttemptResult("".join(parts), finish_reason, usage, first_token_at)

    async def _flush(self, coalescer: Coalescer) -> None:
        text, received_at = coalescer.drain()
        await self.writer.token(text, received_at)
        self.metrics.token_events.inc()
        self.metrics.token_latency.observe(max(0.0, time.time() - received_at))


def _timings(accepted_at: float, first_token_at: float | None) -> Timings:
    finished_at = time.time()
    return Timings(
        accepted_at=accepted_at,
        first_token_at=first_token_at,
        finished_at=finished_at,
        ttft_s=None if first_token_at is None else first_token_at - accepted_at,
        duration_s=finished_at - accepted_at,
    )
