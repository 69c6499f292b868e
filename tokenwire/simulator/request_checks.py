"""OpenAI-style 400s for the request fields beyond model/messages/stream (see ``request``).

Messages are worded as OpenAI words them, with the same ``param`` path and ``code``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from tokenwire.simulator.wire import WireError

PART_TYPES = ("text", "image_url", "input_audio", "file", "refusal")
IMAGE_DETAILS = ("auto", "low", "high")
AUDIO_FORMATS = ("wav", "mp3")
TOOL_CHOICES = ("none", "auto", "required")
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
MAX_STOP = 4
MAX_METADATA_PAIRS, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512
_NAME_PATTERN = "^[a-zA-Z0-9_-]+$"
_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
# (name, low, high): the numeric ranges OpenAI enforces.
_RANGES = (("temperature", 0, 2), ("top_p", 0, 1), ("frequency_penalty", -2, 2),
           ("presence_penalty", -2, 2))  # fmt: skip


def check_options(body: dict[str, Any]) -> None:
    """Every optional field OpenAI types; the ones absent or None are fine."""
    for name, low, high in _RANGES:
        _number_in_range(body, name, low, high)
    for name in ("parallel_tool_calls", "store", "logprobs"):
        optional_bool(body, name)
    for name in ("user", "safety_identifier", "prompt_cache_key"):
        _optional_string(body, name)
    if body.get("seed") is not None:
        _integer(body, "seed")
    _choice(body, "reasoning_effort", REASONING_EFFORTS)
    _check_stop(body.get("stop"))
    _check_metadata(body.get("metadata"))
    tools = body.get("tools")
    if tools is not None:
        _check_tools(tools)
    _check_tool_choice(body.get("tool_choice"), has_tools=bool(tools))


# --- messages ---------------------------------------------------------------------------


def check_part(param: str, part: Any) -> None:
    """One content part: its ``type`` and the object that type requires."""
    if not isinstance(part, dict):
        raise invalid_type(param, part, "an object")
    kind = part.get("type")
    if kind is None:
        raise _missing(f"{param}.type")
    if kind not in PART_TYPES:
        raise _invalid_value(f"{param}.type", kind, PART_TYPES)
    if kind in ("text", "refusal"):
        required_string(part, kind, f"{param}.")
        return
    inner = _required_object(part, kind, f"{param}.")
    if kind == "image_url":
        required_string(inner, "url", f"{param}.image_url.")
        if inner.get("detail") is not None and inner["detail"] not in IMAGE_DETAILS:
            raise _invalid_value(f"{param}.image_url.detail", inner["detail"], IMAGE_DETAILS)
    elif kind == "input_audio":
        required_string(inner, "data", f"{param}.input_audio.")
        if inner.get("format") not in AUDIO_FORMATS:
            raise _invalid_value(f"{param}.input_audio.format", inner.get("format"), AUDIO_FORMATS)
    else:
        for name in ("file_data", "file_id", "filename"):
            _optional_string(inner, name, f"{param}.file.")


def check_tool_calls(param: str, calls: Any) -> None:
    """``assistant.tool_calls``: ids, ``type: function`` and string arguments."""
    if not isinstance(calls, list):
        raise invalid_type(param, calls, "an array")
    for i, call in enumerate(calls):
        where = f"{param}[{i}]"
        if not isinstance(call, dict):
            raise invalid_type(where, call, "an object")
        required_string(call, "id", f"{where}.")
        if call.get("type", "function") != "function":
            raise _invalid_value(f"{where}.type", call.get("type"), ("function",))
        function = _required_object(call, "function", f"{where}.")
        required_string(function, "name", f"{where}.function.")
        required_string(function, "arguments", f"{where}.function.")


def check_tool_order(messages: Sequence[dict[str, Any]]) -> None:
    """A ``tool`` message answers an earlier tool call; every tool call gets an answer."""
    pending: dict[str, int] = {}  # tool_call_id -> index of the assistant message
    for i, message in enumerate(messages):
        role = message.get("role")
        if role == "tool":
            if pending.pop(str(message.get("tool_call_id")), None) is None:
                raise WireError(
                    400,
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    param=f"messages.[{i}].role",
                )
            continue
        _unanswered(pending)
        if role == "assistant":
            for call in message.get("tool_calls") or ():
                pending[str(call.get("id"))] = i
    _unanswered(pending)


def _unanswered(pending: dict[str, int]) -> None:
    if pending:
        index = min(pending.values())
        ids = ", ".join(pending)
        raise WireError(
            400,
            "An assistant message with 'tool_calls' must be followed by tool messages "
            f"responding to each 'tool_call_id'. The following tool_call_ids did not have "
            f"response messages: {ids}",
            param=f"messages.[{index}].role",
        )


# --- tools and formats ------------------------------------------------------------------


def _check_tools(tools: Any) -> None:
    if not isinstance(tools, list):
        raise invalid_type("tools", tools, "an array")
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise invalid_type(where, tool, "an object")
        if tool.get("type") != "function":
            raise _invalid_value(f"{where}.type", tool.get("type"), ("function",))
        function = _required_object(tool, "function", f"{where}.")
        _check_name(function, f"{where}.function")
        _optional_string(function, "description", f"{where}.function.")
        if function.get("parameters") is not None and not isinstance(function["parameters"], dict):
            raise invalid_type(f"{where}.function.parameters", function["parameters"], "an object")
        optional_bool(function, "strict", prefix=f"{where}.function.")


def _check_tool_choice(choice: Any, *, has_tools: bool) -> None:
    if choice is None:
        return
    if not has_tools:
        raise WireError(
            400,
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
            "specified.",
            param="tool_choice",
        )
    if isinstance(choice, str):
        if choice not in TOOL_CHOICES:
            raise _invalid_value("tool_choice", choice, TOOL_CHOICES)
        return
    if not isinstance(choice, dict):
        raise invalid_type("tool_choice", choice, "one of a string or an object")
    if choice.get("type") != "function":
        raise _invalid_value("tool_choice.type", choice.get("type"), ("function",))
    function = _required_object(choice, "function", "tool_choice.")
    required_string(function, "name", "tool_choice.function.")


def check_response_format(value: Any) -> None:
    if not isinstance(value, dict):
        raise invalid_type("response_format", value, "an object")
    kind = value.get("type")
    if kind is None:
        raise _missing("response_format.type")
    if kind not in RESPONSE_FORMATS:
        raise _invalid_value("response_format.type", kind, RESPONSE_FORMATS)
    if kind != "json_schema":
        return
    spec = _required_object(value, "json_schema", "response_format.")
    _check_name(spec, "response_format.json_schema")
    if spec.get("schema") is not None and not isinstance(spec["schema"], dict):
        raise invalid_type("response_format.json_schema.schema", spec["schema"], "an object")
    optional_bool(spec, "strict", prefix="response_format.json_schema.")


def _check_stop(stop: Any) -> None:
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list):
        raise invalid_type("stop", stop, "one of a string or an array")
    if len(stop) > MAX_STOP:
        raise WireError(
            400,
            f"Invalid 'stop': array too long. Expected an array with maximum length {MAX_STOP}, "
            f"but got an array with length {len(stop)} instead.",
            param="stop",
            code="array_above_max_length",
        )
    for i, item in enumerate(stop):
        if not isinstance(item, str):
            raise invalid_type(f"stop[{i}]", item, "a string")


def _check_metadata(metadata: Any) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise invalid_type("metadata", metadata, "an object")
    if len(metadata) > MAX_METADATA_PAIRS:
        raise WireError(
            400,
            f"Invalid 'metadata': too many properties. Expected an object with at most "
            f"{MAX_METADATA_PAIRS} properties, but got an object with {len(metadata)} "
            "properties instead.",
            param="metadata",
            code="object_above_max_properties",
        )
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY:
            raise WireError(
                400,
                f"Invalid 'metadata': string too long. Expected a key of at most "
                f"{MAX_METADATA_KEY} characters, but got {len(key)} characters instead.",
                param="metadata",
                code="string_above_max_length",
            )
        if not isinstance(value, str):
            raise invalid_type(f"metadata.{key}", value, "a string")
        if len(value) > MAX_METADATA_VALUE:
            raise WireError(
                400,
                f"Invalid 'metadata.{key}': string too long. Expected a string with maximum "
                f"length {MAX_METADATA_VALUE}, but got a string with length {len(value)} "
                "instead.",
                param=f"metadata.{key}",
                code="string_above_max_length",
            )


def _check_name(obj: dict[str, Any], where: str) -> None:
    name = required_string(obj, "name", f"{where}.")
    if not _NAME_RE.match(name):
        raise WireError(
            400,
            f"Invalid '{where}.name': string does not match pattern. Expected a string that "
            f"matches the pattern '{_NAME_PATTERN}'.",
            param=f"{where}.name",
            code="invalid_value",
        )


# --- primitives -------------------------------------------------------------------------


def optional_bool(body: dict[str, Any], name: str, *, prefix: str = "") -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise invalid_type(prefix + name, value, "a boolean")
    return value


def required_string(body: dict[str, Any], name: str, prefix: str = "") -> str:
    if body.get(name) is None:
        raise _missing(prefix + name)
    value = body[name]
    if not isinstance(value, str):
        raise invalid_type(prefix + name, value, "a string")
    return value


def _optional_string(body: dict[str, Any], name: str, prefix: str = "") -> None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise invalid_type(prefix + name, value, "a string")


def _required_object(body: dict[str, Any], name: str, prefix: str = "") -> dict[str, Any]:
    if body.get(name) is None:
        raise _missing(prefix + name)
    value = body[name]
    if not isinstance(value, dict):
        raise invalid_type(prefix + name, value, "an object")
    return value


def _integer(body: dict[str, Any], name: str) -> int:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_type(name, value, "an integer")
    return value


def int_in_range(body: dict[str, Any], name: str, low: int, high: int) -> int:
    value = _integer(body, name)
    _in_range(name, value, low, high, "integer")
    return value


def _number_in_range(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid_type(name, value, "a number")
    _in_range(name, value, low, high, "decimal")


def _in_range(name: str, value: float, low: float, high: float, kind: str) -> None:
    if value < low:
        side, bound, word = "below minimum", f">= {low}", "min"
    elif value > high:
        side, bound, word = "above maximum", f"<= {high}", "max"
    else:
        return
    raise WireError(
        400,
        f"Invalid '{name}': {kind} {side} value. Expected a value {bound}, but got {value} "
        "instead.",
        param=name,
        code=f"{kind}_{side.split()[0]}_{word}_value",
    )


def _choice(body: dict[str, Any], name: str, allowed: Sequence[str]) -> None:
    value = body.get(name)
    if value is not None and value not in allowed:
        raise _invalid_value(name, value, allowed)


def _missing(param: str) -> WireError:
    return WireError(
        400,
        f"Missing required parameter: '{param}'.",
        param=param,
        code="missing_required_parameter",
    )


def _invalid_value(param: str, value: Any, allowed: Sequence[str]) -> WireError:
    supported = ", ".join(f"'{a}'" for a in allowed[:-1])
    supported = f"{supported}, and '{allowed[-1]}'" if supported else f"'{allowed[-1]}'"
    return WireError(
        400,
        f"Invalid value: {show(value)}. Supported values are: {supported}.",
        param=param,
        code="invalid_value",
    )


def invalid_type(param: str, value: Any, expected: str) -> WireError:
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


def show(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else json.dumps(value)
