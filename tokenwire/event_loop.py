"""The event loop every tokenwire process runs on: uvloop where installed, else asyncio's own.

uvloop makes socket I/O and callbacks cheaper, and those are much of what the worker and the
edge do per token. uvicorn picks it by itself (``loop="auto"``); the worker, the
CLI's ``asyncio.run`` commands and the benchmark clients get it from the policy set here.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


def use_fast_event_loop() -> str:
    """Make new event loops uvloop loops when uvloop is available; returns which one is used."""
    try:
        import uvloop
    except ImportError:  # e.g. Windows, where uvloop does not exist
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"
