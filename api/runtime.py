"""Everything the edge holds for its lifetime: Kafka clients, the hub, auth, quotas, metrics.

Started and stopped by the app's lifespan; on a failed start whatever did start is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from api.auth.authenticator import Authenticator
from api.connection_limits import ConnectionLimits
from api.finished_requests import FinishedRequests, PublishedCancels
from api.metrics import EdgeMetrics
from api.quotas import QuotaGate
from api.session_hub import SessionHub
from api.shared_session_hub import SharedSessionHub
from api.throttle import AlertThrottle, follow_alerts
from api.usage_ledger import UsageLedger
from tokenwire.kafka_clients import new_admin, new_producer
from tokenwire.settings import Settings
from tokenwire.topics import SessionTopics

log = logging.getLogger(__name__)

CLIENT_ID = "tokenwire-edge"
MAX_FINISHED_REMEMBERED = 20_000


class EdgeRuntime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = EdgeMetrics()
        self.connections = ConnectionLimits.from_settings(settings)
        self.auth = Authenticator(settings)
        # Users with a live risk alert on chat.alerts (see api/throttle.py).
        self.throttle = AlertThrottle()
        # Requests known to have ended, fed by the ledger's reading of chat.events (api/cancel.py).
        self.finished = FinishedRequests(MAX_FINISHED_REMEMBERED)
        self.cancels = PublishedCancels()
        # Every identity's usage, read back from the topics (see api/usage_ledger.py).
        self.ledger = UsageLedger(
            settings, client_id=f"{CLIENT_ID}-ledger", finished=self.finished
        )
        self.quotas = QuotaGate(self.ledger, self.throttle, self.metrics.registry)
        # The session layout's hub (tokenwire/session_log.py); both serve streams alike.
        self.hub: SessionHub | SharedSessionHub
        if settings.session_layout == "shared":
            self.hub = SharedSessionHub(settings, self.metrics, client_id=f"{CLIENT_ID}-hub")
        else:
            self.hub = SessionHub(
                settings, self.metrics, client_id=f"{CLIENT_ID}-hub",
                on_topic_deleted=self._forget_topic,
            )
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._session_topics: SessionTopics | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("edge runtime is not started")
        return self._producer

    @property
    def session_topics(self) -> SessionTopics:
        if self._session_topics is None:
            raise RuntimeError("edge runtime is not started")
        return self._session_topics

    async def start(self) -> None:
        stack = contextlib.AsyncExitStack()
        try:
            kafka = self.settings.kafka_connection
            producer = new_producer(kafka, client_id=f"{CLIENT_ID}-ingress")
            stack.push_async_callback(producer.stop)
            await producer.start()
            admin = new_admin(kafka, client_id=f"{CLIENT_ID}-admin")
            stack.push_async_callback(admin.close)
            await admin.start()
            stack.push_async_callback(self.auth.close)
            await self.auth.start()
            stack.push_async_callback(self.ledger.stop)
            await self.ledger.start()
            stack.push_async_callback(self.hub.stop)
            await self.hub.start()
            alerts = asyncio.create_task(
                follow_alerts(self.settings, self.throttle, client_id=f"{CLIENT_ID}-alerts"),
                name="edge-follow-alerts",
            )
            stack.push_async_callback(_cancel, alerts)
        except BaseException:
            await stack.aclose()
            raise
        self._producer, self._admin = producer, admin
        self._session_topics = SessionTopics(self.settings, admin)
        self._stack = stack
        log.info("edge runtime started bootstrap=%s", self.settings.kafka_bootstrap)

    async def stop(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
        self._producer = self._admin = self._session_topics = None
        log.info("edge runtime stopped")

    async def open_session(self, session_id: str) -> None:
        """Topic layout: the session's topic exists once this returns. Shared: nothing to do,
        the session's partition is always there."""
        if self.settings.session_layout == "topic":
            await self.session_topics.ensure(session_id)

    def _forget_topic(self, topic: str) -> None:
        # A deleted session topic must be created again by the next POST into that session.
        if self._session_topics is not None:
            self._session_topics.forget(topic)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
