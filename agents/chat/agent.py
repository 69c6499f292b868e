"""The chat agent: thin on purpose, the logic lives in ``runtime``."""

from __future__ import annotations

import faust

from agents.chat.runtime import ChatRuntime


def register_chat_agent(app: faust.App, runtime: ChatRuntime) -> None:
    settings = runtime.settings
    requests = app.topic(
        settings.requests_topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    # concurrency=1 on purpose: the runtime runs generations concurrently itself, with offsets
    # acked only when a request is finished (see runtime.py).
    @app.agent(requests, name="chat-requests", concurrency=1)
    async def chat_requests(stream: faust.StreamT) -> None:
        manual = stream.noack()
        async for event in manual.events():
            await runtime.take(event, manual)

    app.on_partitions_assigned.connect(runtime.on_assigned)
    app.on_partitions_revoked.connect(runtime.on_revoked)
