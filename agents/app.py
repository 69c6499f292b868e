"""The Faust App, configured from Settings (nothing else lives here)."""

from __future__ import annotations

import faust

from tokenwire.settings import Settings


def create_app(settings: Settings) -> faust.App:
    return faust.App(
        settings.worker_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        autodiscover=False,
        # Requests are keyed by session; no leader topic is needed (auto-creation is off).
        topic_disable_leader=True,
        producer_acks=-1,
        producer_linger_ms=1,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        stream_buffer_maxsize=256,
        web_enabled=True,
        web_bind="127.0.0.1",
        web_port=settings.worker_web_port,
        web_host="127.0.0.1",
    )
