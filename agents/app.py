"""The Faust App, configured from Settings (nothing else lives here)."""

from __future__ import annotations

import faust

from agents.chat import faust_transport
from tokenwire.settings import Settings
from tokenwire.topics import Replication


def create_app(settings: Settings, replication: Replication) -> faust.App:
    """``replication`` is the cluster's (``tokenwire.topics.cluster_replication``): Faust makes
    its changelog topics itself, with this many replicas."""
    # Per worker process (its web port tells workers of one group on one machine apart); a
    # restarted worker finds its own directory again.
    datadir = settings.state_dir / "faust" / f"{settings.worker_id}-{settings.worker_web_port}"
    datadir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        settings.worker_id,
        # Faust's Kafka transport whose pauses reach aiokafka (agents/chat/faust_transport.py).
        broker=f"{faust_transport.SCHEME}://{settings.kafka_bootstrap}",
        # The same TLS/SASL as every other client (Settings.kafka).
        broker_credentials=settings.kafka_connection.faust_credentials(),
        topic_replication_factor=replication.factor,
        store="memory://",
        # Faust keeps per-app files; outside the working tree, next to the local services' state.
        datadir=str(datadir),
        # A dead worker's partitions move after 6 s (Faust's default is 60 s; 6 s is the
        # broker's group.min.session.timeout.ms). Heartbeats come from Faust's consumer thread,
        # so a busy event loop does not miss them.
        broker_session_timeout=6.0,
        broker_heartbeat_interval=2.0,
        autodiscover=False,
        # Requests are keyed by session; no leader topic is needed (auto-creation is off).
        topic_disable_leader=True,
        producer_acks=-1,
        producer_linger_ms=1,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        stream_buffer_maxsize=256,
        web_enabled=True,
        web_bind=settings.worker_web_host,
        web_port=settings.worker_web_port,
        web_host="127.0.0.1",
    )
