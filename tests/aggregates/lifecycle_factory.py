"""Lifecycle events as the worker writes them, built by hand for the aggregates specifications."""

from __future__ import annotations

import uuid
from typing import Any

from schemas.lifecycle import Accepted, Completed, Failed, FirstToken, LifecycleEvent
from schemas.session_events import Timings, Usage

# A fixed event time far from the wall clock: windows follow the events, not the reader.
T0 = 1_700_000_000.0


def request_events(
    user_id: str,
    at: float,
    *,
    model: str = "gpt-test",
    request_id: str | None = None,
    prompt: str = "What is Kafka?",
    answer: str = "A distributed log.",
    ttft_s: float = 0.2,
    duration_s: float = 1.0,
    prompt_tokens: int = 10,
    completion_tokens: int = 20,
    retries: int = 0,
    fail_code: str | None = None,
    finish_reason: str = "stop",
) -> list[LifecycleEvent]:
    """accepted -> first_token -> completed (or failed) of one request starting at ``at``."""
    common: dict[str, Any] = {
        "request_id": request_id or f"r-{uuid.uuid4().hex[:12]}",
        "session_id": f"s-{user_id}",
        "user_id": user_id,
        "model": model,
    }
    finished_at = at + duration_s
    timings = Timings(
        accepted_at=at,
        first_token_at=at + ttft_s,
        finished_at=finished_at,
        ttft_s=ttft_s,
        duration_s=duration_s,
    )
    events: list[LifecycleEvent] = [
        Accepted(**common, attempt=1, at=at, prompt_text=prompt, prompt_chars=len(prompt)),
        FirstToken(**common, attempt=1, at=at + ttft_s, ttft_s=ttft_s),
    ]
    if fail_code is None:
        events.append(
            Completed(
                **common,
                attempt=1 + retries,
                at=finished_at,
                finish_reason=finish_reason,
                usage=Usage(
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    total_tokens=prompt_tokens + completion_tokens,
                ),
                timings=timings,
                retries=retries,
                answer=answer,
            )
        )
    else:
        events.append(
            Failed(
                **common,
                attempt=1 + retries,
                at=finished_at,
                code=fail_code,
                message=f"{fail_code} for the test",
                retries=retries,
                timings=timings,
            )
        )
    return events


def by_time(events: list[LifecycleEvent]) -> list[LifecycleEvent]:
    return sorted(events, key=lambda e: e.at)
