"""tokenwire's event contracts: typed models, exported as JSON Schema for other languages."""

from schemas.common import SCHEMA_VERSION, SESSION_ID_PATTERN
from schemas.control import CancelRequest, ControlRecord
from schemas.lifecycle import Accepted, Completed, Failed, FinalMessage, FirstToken, LifecycleEvent
from schemas.messages import ChatMessage, ToolCall
from schemas.requests import ChatRequest
from schemas.session_events import (
    DoneEvent,
    ErrorEvent,
    ReasoningEvent,
    RefusalEvent,
    RetryEvent,
    SessionEvent,
    StartEvent,
    Timings,
    TokenEvent,
    ToolCallEvent,
    Usage,
)

__all__ = [
    "SCHEMA_VERSION",
    "SESSION_ID_PATTERN",
    "Accepted",
    "CancelRequest",
    "ChatMessage",
    "ChatRequest",
    "Completed",
    "ControlRecord",
    "DoneEvent",
    "ErrorEvent",
    "Failed",
    "FinalMessage",
    "FirstToken",
    "LifecycleEvent",
    "ReasoningEvent",
    "RefusalEvent",
    "RetryEvent",
    "SessionEvent",
    "StartEvent",
    "Timings",
    "TokenEvent",
    "ToolCall",
    "ToolCallEvent",
    "Usage",
]
