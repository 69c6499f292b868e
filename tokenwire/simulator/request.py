"""Parse and validate a ``POST /v1/chat/completions`` body the way OpenAI does.

Every field of OpenAI's chat request is accepted. The ones the simulator acts on, and
the shapes a client most easily gets wrong (messages and their content parts, tools,
tool_choice, response_format, stop, sampling ranges, logprobs, metadata), are checked;
each problem raises :class:`WireError` with OpenAI's message, ``param`` and ``code`` so
clients see a familiar 400. Unknown fields are ignored, as a gateway forwards them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tokenwire.simulator.request_checks import (
    check_options,
    check_part,
    check_response_format,
    check_tool_calls,
    check_tool_order,
    int_in_range,
    invalid_type,
    optional_bool,
    required_string,
    show,
)
from tokenwire.simulator.wire import WireError

ROLES = ("system", "assistant", "user", "function", "tool", "developer")


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    max_tokens: int | None
    top_logprobs: int | None = None  # None: no logprobs; else alternatives per token
    response_format: dict[str, Any] | None = None
    # Every field of the body but ``messages``, as received (for GET /v1/_sim/requests).
    options: dict[str, Any] = field(default_factory=dict)


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
        raise invalid_type("body", body, "an object")
    return parse_request(body)


def parse_request(body: dict[str, Any]) -> ChatRequest:
    stream = optional_bool(body, "stream") or False
    _check_n(body)
    model, messages = _model(body), _messages(body)
    check_options(body)
    return ChatRequest(
        model=model,
        messages=messages,
        stream=stream,
        include_usage=_include_usage(body, stream=stream),
        max_tokens=_max_tokens(body),
        top_logprobs=_top_logprobs(body),
        response_format=_response_format(body),
        options={key: value for key, value in body.items() if key != "messages"},
    )


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None or model == "":
        raise WireError(400, "you must provide a model parameter")
    if not isinstance(model, str):
        raise invalid_type("model", model, "a string")
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
        raise invalid_type("messages", messages, "an array")
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
    check_tool_order(messages)
    return messages


def _check_message(i: int, message: Any) -> None:
    if not isinstance(message, dict):
        raise invalid_type(f"messages[{i}]", message, "an object")
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
            f"Invalid value: {show(role)}. Supported values are: {supported}.",
            param=f"messages[{i}].role",
            code="invalid_value",
        )
    content = message.get("content")
    if content is not None and not isinstance(content, str | list):
        raise invalid_type(f"messages[{i}].content", content, "one of a string or an array")
    if isinstance(content, list):
        for j, part in enumerate(content):
            check_part(f"messages[{i}].content[{j}]", part)
    if role == "assistant" and message.get("tool_calls") is not None:
        check_tool_calls(f"messages[{i}].tool_calls", message["tool_calls"])
    if role == "tool":
        required_string(message, "tool_call_id", f"messages[{i}].")


def _top_logprobs(body: dict[str, Any]) -> int | None:
    logprobs = optional_bool(body, "logprobs")
    top = body.get("top_logprobs")
    if top is not None:
        int_in_range(body, "top_logprobs", 0, 20)
        if not logprobs:
            raise WireError(
                400,
                "Invalid value for 'top_logprobs': 'logprobs' must be set to true when "
                "'top_logprobs' is used.",
                param="top_logprobs",
                code="invalid_value",
            )
    return (top or 0) if logprobs else None


def _response_format(body: dict[str, Any]) -> dict[str, Any] | None:
    value = body.get("response_format")
    if value is None:
        return None
    check_response_format(value)
    return value


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
        raise invalid_type("stream_options", options, "an object")
    return optional_bool(options, "include_usage", prefix="stream_options.") or False


def _max_tokens(body: dict[str, Any]) -> int | None:
    cap = None
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid_type(name, value, "an integer")
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
