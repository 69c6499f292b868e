"""Parse and validate a ``POST /v1/chat/completions`` body the way OpenAI does.

Only the fields the simulator acts on are checked; anything else (temperature, tools, ...)
is accepted and ignored. Each problem raises :class:`WireError` with OpenAI's message,
``param`` and ``code`` so clients see a familiar 400.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tokenwire.simulator.wire import WireError

ROLES = ("system", "assistant", "user", "function", "tool", "developer")


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    max_tokens: int | None


def parse_body(raw: bytes) -> ChatRequest:
    """The validated request in ``raw`` (the HTTP body), or :class:`WireError` (400)."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise WireError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
            "but what was sent was not valid JSON.)",
        ) from None
    if not isinstance(body, dict):
        raise _invalid_type("body", body, "an object")
    return parse_request(body)


def parse_request(body: dict[str, Any]) -> ChatRequest:
    stream = _optional_bool(body, "stream") or False
    _check_n(body)
    return ChatRequest(
        model=_model(body),
        messages=_messages(body),
        stream=stream,
        include_usage=_include_usage(body, stream=stream),
        max_tokens=_max_tokens(body),
    )


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None or model == "":
        raise WireError(400, "you must provide a model parameter")
    if not isinstance(model, str):
        raise _invalid_type("model", model, "a string")
    return model


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    if "messages" not in body or body["messages"] is None:
        raise WireError(
            400,
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    messages = body["messages"]
    if not isinstance(messages, list):
        raise _invalid_type("messages", messages, "an array")
    if not messages:
        raise WireError(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    for i, message in enumerate(messages):
        _check_message(i, message)
    return messages


def _check_message(i: int, message: Any) -> None:
    if not isinstance(message, dict):
        raise _invalid_type(f"messages[{i}]", message, "an object")
    role = message.get("role")
    if role is None:
        raise WireError(
            400,
            f"Missing required parameter: 'messages[{i}].role'.",
            param=f"messages[{i}].role",
            code="missing_required_parameter",
        )
    if role not in ROLES:
        supported = ", ".join(f"'{r}'" for r in ROLES[:-1]) + f", and '{ROLES[-1]}'"
        raise WireError(
            400,
            f"Invalid value: {_show(role)}. Supported values are: {supported}.",
            param=f"messages[{i}].role",
            code="invalid_value",
        )
    content = message.get("content")
    if content is not None and not isinstance(content, str | list):
        raise _invalid_type(f"messages[{i}].content", content, "one of a string or an array")


def _include_usage(body: dict[str, Any], *, stream: bool) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not stream:
        raise WireError(
            400,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )
    if not isinstance(options, dict):
        raise _invalid_type("stream_options", options, "an object")
    return _optional_bool(options, "include_usage", prefix="stream_options.") or False


def _max_tokens(body: dict[str, Any]) -> int | None:
    cap = None
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise _invalid_type(name, value, "an integer")
        if value < 1:
            raise WireError(
                400,
                f"Invalid '{name}': integer below minimum value. Expected a value >= 1, "
                f"but got {value} instead.",
                param=name,
                code="integer_below_min_value",
            )
        cap = value if cap is None else min(cap, value)
    return cap


def _check_n(body: dict[str, Any]) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise WireError(400, "The simulator only supports n=1.", param="n", code="invalid_value")


def _optional_bool(body: dict[str, Any], name: str, *, prefix: str = "") -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise _invalid_type(prefix + name, value, "a boolean")
    return value


def _invalid_type(param: str, value: Any, expected: str) -> WireError:
    return WireError(
        400,
        f"Invalid type for '{param}': expected {expected}, but got {_type_name(value)} instead.",
        param=param,
        code="invalid_type",
    )


def _type_name(value: Any) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a decimal",
        str: "a string",
        list: "an array",
        dict: "an object",
        type(None): "null",
    }
    return names.get(type(value), "an unknown type")


def _show(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else json.dumps(value)
