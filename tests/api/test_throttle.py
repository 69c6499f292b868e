"""Alerts on chat.alerts throttle a user until they expire (the edge's half of the risk loop)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from api.throttle import AlertThrottle, follow_alerts
from schemas.alerts import RiskAlert
from tokenwire.kafka_clients import new_admin, new_producer
from tokenwire.settings import Settings
from tokenwire.topics import UNREPLICATED, TopicSpec, create_topics


def alert(user_id: str, expires_at: float, reason: str = "risk 0.80 >= 0.60") -> RiskAlert:
    return RiskAlert(
        alert_id=f"{user_id}:10s:{int(expires_at)}",
        user_id=user_id,
        score=0.8,
        threshold=0.6,
        signals=["injection"],
        window="10s",
        window_start=expires_at - 400,
        window_end=expires_at - 390,
        at=expires_at - 300,
        expires_at=expires_at,
        reason=reason,
    )


def test_a_user_is_throttled_until_the_alert_expires() -> None:
    throttle = AlertThrottle()
    assert throttle.is_throttled("u1", now=1000) is None
    throttle.apply(alert("u1", expires_at=1300, reason="too risky"))
    assert throttle.is_throttled("u1", now=1000) == "too risky"
    assert throttle.retry_after_s("u1", now=1000) == 300
    assert throttle.is_throttled("u2", now=1000) is None
    assert throttle.is_throttled("u1", now=1300) is None
    assert len(throttle) == 0, "an expired alert is forgotten"


def test_the_longest_lasting_alert_wins() -> None:
    throttle = AlertThrottle()
    assert throttle.apply(alert("u1", expires_at=2000, reason="long"))
    assert not throttle.apply(alert("u1", expires_at=1500, reason="short"))
    assert throttle.is_throttled("u1", now=1800) == "long"
    assert throttle.apply(alert("u1", expires_at=2500, reason="longer"))
    assert throttle.is_throttled("u1", now=2200) == "longer"


def test_prune_drops_expired_alerts() -> None:
    throttle = AlertThrottle()
    throttle.apply(alert("u1", expires_at=100))
    throttle.apply(alert("u2", expires_at=300))
    assert throttle.prune(now=200) == 1
    assert len(throttle) == 1


@dataclass
class AlertsTopic:
    settings: Settings

    async def send(self, *values: bytes, timestamp_ms: int | None = None) -> None:
        producer = new_producer(self.settings.kafka_connection, client_id="throttle-test")
        await producer.start()
        try:
            for value in values:
                await producer.send_and_wait(
                    self.settings.alerts_topic, value, key=b"k", timestamp_ms=timestamp_ms
                )
        finally:
            await producer.stop()


@pytest.fixture
async def alerts_topic(kafka_bootstrap: str, unique_name) -> AlertsTopic:  # type: ignore[no-untyped-def]
    settings = Settings(kafka_bootstrap=kafka_bootstrap, alerts_topic=unique_name("alerts"))
    admin = new_admin(settings.kafka_connection, client_id="throttle-test")
    await admin.start()
    try:
        await create_topics(
            admin, [TopicSpec(settings.alerts_topic, 2, 3_600_000)], UNREPLICATED
        )
    finally:
        await admin.close()
    return AlertsTopic(settings)


@contextlib.asynccontextmanager
async def following(
    topic: AlertsTopic,
    throttle: AlertThrottle,
    seen: asyncio.Queue[RiskAlert],
    lookback_s: float = 3600.0,
) -> AsyncIterator[None]:
    ready = asyncio.Event()
    task = asyncio.create_task(
        follow_alerts(
            topic.settings, throttle, lookback_s=lookback_s, ready=ready, on_alert=seen.put_nowait
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), 30)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_follow_alerts_applies_what_is_in_force_then_what_arrives(
    alerts_topic: AlertsTopic,
) -> None:
    now = time.time()
    await alerts_topic.send(
        alert("early", now + 600, reason="injection").model_dump_json().encode(),
        alert("expired", now - 1).model_dump_json().encode(),
        b"{not an alert",
    )
    throttle, seen = AlertThrottle(), asyncio.Queue[RiskAlert]()
    async with following(alerts_topic, throttle, seen):
        assert throttle.is_throttled("early") == "injection", "applied before ready"
        assert throttle.is_throttled("expired") is None
        await alerts_topic.send(alert("late", time.time() + 600).model_dump_json().encode())
        while (await asyncio.wait_for(seen.get(), 30)).user_id != "late":
            pass
        assert throttle.is_throttled("late") is not None


async def test_alerts_older_than_the_lookback_are_not_read(alerts_topic: AlertsTopic) -> None:
    now = time.time()
    old = alert("old", now + 600).model_dump_json().encode()
    await alerts_topic.send(old, timestamp_ms=int((now - 7200) * 1000))
    throttle, seen = AlertThrottle(), asyncio.Queue[RiskAlert]()
    async with following(alerts_topic, throttle, seen, lookback_s=3600):
        assert seen.empty()
        assert throttle.is_throttled("old") is None
