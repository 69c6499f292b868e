"""The edge's half of the risk loop: users with a live alert on ``chat.alerts`` are throttled.

    worker aggregates --RiskAlert--> chat.alerts --follow_alerts--> AlertThrottle
    edge ingress: AlertThrottle.is_throttled(user_id) -> 429 {reason} until alert.expires_at

``AlertThrottle`` is plain state (no I/O): the latest-expiring alert per user. ``follow_alerts``
keeps it current: every edge instance reads all partitions of ``chat.alerts`` without a consumer
group (each needs every alert), starting ``lookback_s`` back in time so alerts still in force
when the edge starts are applied, and sets ``ready`` once it has caught up with what was there.
The caller owns the task and cancels it on shutdown; the consumer is closed on every path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka import TopicPartition
from pydantic import ValidationError

from schemas.alerts import RiskAlert, parse_alert
from tokenwire.kafka_clients import new_follower, stop_consumer
from tokenwire.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_LOOKBACK_S = 24 * 3600.0
TOPIC_WAIT_S = 1.0
# getmany() answers as soon as an alert is there: this only bounds an idle wait (and a prune).
POLL_MS = 2_000


class AlertThrottle:
    def __init__(self) -> None:
        self._alerts: dict[str, RiskAlert] = {}

    def apply(self, alert: RiskAlert) -> bool:
        """Keep the alert that throttles longest; True when it changed the user's state."""
        current = self._alerts.get(alert.user_id)
        if current is not None and current.expires_at >= alert.expires_at:
            return False
        self._alerts[alert.user_id] = alert
        return True

    def active(self, user_id: str, now: float | None = None) -> RiskAlert | None:
        alert = self._alerts.get(user_id)
        if alert is None:
            return None
        if alert.expires_at <= (time.time() if now is None else now):
            del self._alerts[user_id]
            return None
        return alert

    def is_throttled(self, user_id: str, now: float | None = None) -> str | None:
        """The reason to refuse this user's new request (for the 429 body), or None."""
        alert = self.active(user_id, now)
        return None if alert is None else alert.reason

    def retry_after_s(self, user_id: str, now: float | None = None) -> float | None:
        """Seconds until the user may send again (for a Retry-After header), or None."""
        now = time.time() if now is None else now
        alert = self.active(user_id, now)
        return None if alert is None else alert.expires_at - now

    def prune(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        expired = [user for user, alert in self._alerts.items() if alert.expires_at <= now]
        for user in expired:
            del self._alerts[user]
        return len(expired)

    def __len__(self) -> int:
        return len(self._alerts)


async def follow_alerts(
    settings: Settings,
    throttle: AlertThrottle,
    *,
    lookback_s: float = DEFAULT_LOOKBACK_S,
    ready: asyncio.Event | None = None,
    on_alert: Callable[[RiskAlert], None] | None = None,
    client_id: str = "tokenwire-edge-alerts",
) -> None:
    """Apply every alert on ``settings.alerts_topic`` to ``throttle`` until cancelled."""
    topic = settings.alerts_topic
    consumer = new_follower(settings.kafka_connection, client_id=client_id)
    await consumer.start()
    try:
        tps = await _partitions(consumer, topic)
        consumer.assign(tps)
        since_ms = int((time.time() - lookback_s) * 1000)
        starts = await consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            found = starts.get(tp)
            consumer.seek(tp, found.offset if found is not None else ends[tp])
        caught_up = False
        while True:
            batches = await consumer.getmany(timeout_ms=POLL_MS)
            for records in batches.values():
                for record in records:
                    alert = _decode(record.value, topic, record.partition, record.offset)
                    if alert is not None and throttle.apply(alert):
                        log.info(
                            "user throttled user_id=%s until=%.0f score=%.2f signals=%s",
                            alert.user_id, alert.expires_at, alert.score,
                            ",".join(alert.signals),
                        )  # fmt: skip
                    if alert is not None and on_alert is not None:
                        on_alert(alert)
            if not caught_up:
                positions = [await consumer.position(tp) for tp in tps]
                caught_up = all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True))
                if caught_up:
                    log.info("alerts caught up topic=%s throttled=%s", topic, len(throttle))
                    if ready is not None:
                        ready.set()
            throttle.prune()
    finally:
        await stop_consumer(consumer)


async def _partitions(consumer: object, topic: str) -> list[TopicPartition]:
    """The topic's partitions, waiting for the topic to exist (the worker may create it later)."""
    while True:
        await consumer._client.force_metadata_update()  # type: ignore[attr-defined]
        partitions = consumer.partitions_for_topic(topic)  # type: ignore[attr-defined]
        if partitions:
            return [TopicPartition(topic, p) for p in sorted(partitions)]
        log.warning("alerts topic not there yet, waiting topic=%s", topic)
        await asyncio.sleep(TOPIC_WAIT_S)


def _decode(value: bytes | None, topic: str, partition: int, offset: int) -> RiskAlert | None:
    if value is None:
        return None
    try:
        return parse_alert(value)
    except ValidationError as exc:
        log.warning(
            "invalid alert skipped topic=%s partition=%s offset=%s errors=%s",
            topic, partition, offset, exc.error_count(),
        )  # fmt: skip
        return None
