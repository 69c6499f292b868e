"""The risk loop's last step: a live alert on chat.alerts makes the edge refuse that user."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaProducer

from schemas.alerts import RiskAlert
from tests.pipeline.conftest import user_message
from tokenwire.settings import Settings


async def test_a_user_with_a_live_alert_gets_429_with_the_reason_and_others_do_not(
    edge_url: str, pipeline_settings: Settings, post_chat
) -> None:
    risky, other = f"risky-{uuid.uuid4().hex[:8]}", f"calm-{uuid.uuid4().hex[:8]}"
    now = time.time()
    alert = RiskAlert(alert_id=uuid.uuid4().hex, user_id=risky, score=0.9, threshold=0.6,
                      signals=["injection"], window="1m", window_start=now - 60,
                      window_end=now, expires_at=now + 300, reason="injection markers")
    producer = AIOKafkaProducer(bootstrap_servers=pipeline_settings.kafka_bootstrap,
                                acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(pipeline_settings.alerts_topic,
                                     alert.model_dump_json().encode(), key=risky.encode())
    finally:
        await producer.stop()

    async def refused() -> dict:  # type: ignore[type-arg]
        while True:
            response = await post_chat({"user_id": risky, "messages": user_message("hi")})
            if response.status_code == 429:
                assert int(response.headers["Retry-After"]) > 200
                return response.json()  # type: ignore[no-any-return]
            await asyncio.sleep(0.1)

    body = await asyncio.wait_for(refused(), 30)

    assert body["error"]["code"] == "risk_throttled"
    assert "injection markers" in body["error"]["message"]
    calm = await post_chat({"user_id": other, "messages": user_message("hi")})
    assert calm.status_code == 202
