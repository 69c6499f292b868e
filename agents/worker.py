"""``tokenwire worker``: the Faust worker running the chat agent and the aggregates."""

from __future__ import annotations

import asyncio
import logging
import sys

import faust
from faust.contrib.asgi import serve_asgi

from agents.aggregates.agent import register_aggregates
from agents.app import create_app
from agents.chat.agent import register_chat_agent
from agents.chat.runtime import ChatRuntime
from agents.metrics import WorkerMetrics, update_consumer_lag
from agents.web import create_worker_web
from tokenwire import tracing
from tokenwire.kafka_clients import new_admin
from tokenwire.log_format import faust_logging_config
from tokenwire.settings import Settings
from tokenwire.topics import UNREPLICATED, Replication, cluster_replication

log = logging.getLogger(__name__)

GIL_SWITCH_INTERVAL_S = 0.0005


def build_worker_app(
    settings: Settings, replication: Replication = UNREPLICATED
) -> tuple[faust.App, ChatRuntime]:
    settings.require_safe("worker")
    app = create_app(settings, replication)
    runtime = ChatRuntime(settings, WorkerMetrics())
    app.add_dependency(runtime)
    register_chat_agent(app, runtime)
    register_aggregates(app, settings, settings.aggregates, runtime.metrics)

    @app.timer(5.0, name="consumer-lag")
    async def consumer_lag() -> None:
        update_consumer_lag(app, runtime.metrics, [settings.requests_topic, settings.events_topic])

    serve_asgi(
        app,
        create_worker_web(runtime),
        host=settings.worker_web_host,
        port=settings.worker_web_port,
        log_level="warning",
    )
    return app, runtime


def run_worker(settings: Settings) -> int:
    # Faust runs its Kafka consumer in a thread of its own, so every request record crosses
    # threads on its way to the agent; with the default 5 ms GIL switch interval a busy event
    # loop can hold each crossing for up to 5 ms. One noisy A/B at 100 streams on 2 cores:
    # publish -> agent p50 626 -> 249 ms.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    settings.require_safe("worker")
    tracing.configure_tracing(tracing.WORKER_SERVICE)
    app, _ = build_worker_app(settings, asyncio.run(_replication(settings)))
    worker = faust.Worker(
        app, loglevel=settings.log_level, redirect_stdouts=False,
        # JSON: Faust's root handler writes JSON too, and no spinner/banner text is printed.
        logging_config=faust_logging_config(settings.log_level, settings.log_format),
        quiet=settings.log_format == "json",
    )
    log.info("worker event loop=%s", type(worker.loop).__module__)
    worker.execute_from_commandline()
    return 0


async def _replication(settings: Settings) -> Replication:
    """Asked once, before Faust starts: its changelog topics need a replication factor."""
    admin = new_admin(settings.kafka_connection, client_id=f"{settings.worker_id}-replication")
    await admin.start()
    try:
        return await cluster_replication(admin, settings)
    finally:
        await admin.close()
