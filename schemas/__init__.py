"""tokenwire's event contracts: typed models, exported as JSON Schema for other languages."""

from schemas.common import SCHEMA_VERSION, SESSION_ID_PATTERN
from schemas.lifecycle import Accepted, Completed, Failed, FirstToken, LifecycleEvent
from schemas.requests import ChatMessage, ChatRequest
from schemas.session_events import (
    DoneEvent,
    ErrorEvent,
    RetryEvent,
    SessionEvent,
    StartEvent,
    Timings,
    TokenEvent,
    Usage,
)

__all__ = [
    "SCHEMA_VERSION",
    "SESSION_ID_PATTERN",
    "Accepted",
    "ChatMessage",
    "ChatRequest",
    "Completed",
    "DoneEvent",
    "ErrorEvent",
    "Failed",
    "FirstToken",
    "LifecycleEvent",
    "RetryEvent",
    "SessionEvent",
    "StartEvent",
    "Timings",
    "TokenEvent",
    "Usage",
]
