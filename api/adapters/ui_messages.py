"""The AI SDK's ``UIMessage`` history as tokenwire's (OpenAI's) chat messages, pure.

What is carried over, per role:

- ``system``: its text parts, joined;
- ``user``: text parts, and ``file`` parts of an ``image/*`` media type as ``image_url`` parts
  (a data: or https URL); another file type is refused (422), not dropped behind the caller's
  back;
- ``assistant``: text parts, and tool parts (``tool-<name>`` and ``dynamic-tool``) that have an
  outcome (``output-available``: the output, ``output-error``: the error text), each as an
  assistant ``tool_calls`` entry plus the ``tool`` message answering it. A multi-step message
  (text, a call, more text) becomes one assistant message per step. Tool parts without an
  outcome are left out (a provider refuses a call without its answer), so are reasoning,
  step-start, source, and data parts: they are the UI's, not the model's.

Only shapes are checked here; the limits of a chat request (message count, text sizes) are
``ChatRequest``'s, checked by ``api.ingress.validate_chat``.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from api.errors import ApiError

ROLES = frozenset({"system", "user", "assistant"})
MAX_PARTS = 1_000
DONE_STATES = frozenset({"output-available", "output-error"})
# What a provider can fetch or decode; a javascript:, file: or relative URL is no image of ours.
IMAGE_URL_SCHEMES = ("data:", "https://", "http://")

Message = dict[str, Any]


def chat_messages(ui_messages: Any) -> list[Message]:
    """The conversation to send, or a 422 ``ApiError`` naming the first bad message/part."""
    if not isinstance(ui_messages, list) or not ui_messages:
        _invalid(["messages"], "must be a non-empty list of UI messages")
    converted: list[Message] = []
    for index, message in enumerate(ui_messages):
        converted.extend(_message(index, message))
    if not converted:
        _invalid(["messages"], "no message carries text or a tool result")
    return converted


def _message(index: int, message: Any) -> list[Message]:
    where: list[str | int] = ["messages", index]
    if not isinstance(message, dict):
        _invalid(where, "must be an object")
    role, parts = message.get("role"), message.get("parts")
    if not isinstance(role, str) or role not in ROLES:  # (a list or object is not hashable)
        _invalid([*where, "role"], "must be system, user or assistant")
    if not isinstance(parts, list) or len(parts) > MAX_PARTS:
        _invalid([*where, "parts"], f"must be a list of at most {MAX_PARTS} parts")
    for number, part in enumerate(parts):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            _invalid([*where, "parts", number], "must be an object with a type")
    if role == "assistant":
        return _assistant(where, parts)
    if role == "system":
        text = "".join(_text(where, i, p) for i, p in enumerate(parts) if p["type"] == "text")
        return [{"role": "system", "content": text}] if text else []
    return _user(where, parts)


def _user(where: list[str | int], parts: list[dict[str, Any]]) -> list[Message]:
    content: list[dict[str, Any]] = []
    for number, part in enumerate(parts):
        if part["type"] == "text":
            content.append({"type": "text", "text": _text(where, number, part)})
        elif part["type"] == "file":
            content.append(_image(where, number, part))
    if not content:
        return []
    if len(content) == 1 and content[0]["type"] == "text":
        return [{"role": "user", "content": content[0]["text"]}]
    return [{"role": "user", "content": content}]


def _image(where: list[str | int], number: int, part: dict[str, Any]) -> dict[str, Any]:
    media_type, url = part.get("mediaType"), part.get("url")
    if not isinstance(media_type, str) or not media_type.startswith("image/"):
        _invalid([*where, "parts", number, "mediaType"], "only image files are supported")
    if not isinstance(url, str) or not url.startswith(IMAGE_URL_SCHEMES):
        _invalid([*where, "parts", number, "url"], "must be a data:, https: or http: URL")
    return {"type": "image_url", "image_url": {"url": url}}


def _assistant(where: list[str | int], parts: list[dict[str, Any]]) -> list[Message]:
    """One assistant message (and its tool answers) per step: text after a tool call starts
    the next step, as it did when the model wrote it."""
    out: list[Message] = []
    text, calls, answers = "", [], []
    for number, part in enumerate(parts):
        kind = part["type"]
        if kind == "text":
            if calls:
                out.extend(_step(text, calls, answers))
                text, calls, answers = "", [], []
            text += _text(where, number, part)
        elif kind == "dynamic-tool" or kind.startswith("tool-"):
            found = _tool(where, number, part)
            if found is not None:
                calls.append(found[0])
                answers.append(found[1])
    out.extend(_step(text, calls, answers))
    return out


def _step(text: str, calls: list[Message], answers: list[Message]) -> list[Message]:
    if not text and not calls:
        return []
    message: Message = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return [message, *answers]


def _tool(
    where: list[str | int], number: int, part: dict[str, Any]
) -> tuple[Message, Message] | None:
    at = [*where, "parts", number]
    state = part.get("state")
    if state is not None and not isinstance(state, str):  # (an object is not even hashable)
        _invalid([*at, "state"], "must be a tool part's state")
    if state not in DONE_STATES:
        return None
    kind = part["type"]
    name = part.get("toolName") if kind == "dynamic-tool" else kind.removeprefix("tool-")
    call_id = part.get("toolCallId")
    if not isinstance(name, str) or not isinstance(call_id, str):
        _invalid(at, "a tool part needs toolCallId and a tool name")
    arguments = _json_text(at, part.get("input", {}))
    if state == "output-available":
        output = part.get("output")
        answer = output if isinstance(output, str) else _json_text(at, output)
    else:
        answer = str(part.get("errorText") or "the tool failed")
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    return call, {"role": "tool", "tool_call_id": call_id, "content": answer}


def _json_text(at: list[str | int], value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        _invalid(at, "tool input and output must be JSON")


def _text(where: list[str | int], number: int, part: dict[str, Any]) -> str:
    text = part.get("text")
    if not isinstance(text, str):
        _invalid([*where, "parts", number, "text"], "must be a string")
    return text


def _invalid(loc: list[str | int], msg: str) -> NoReturn:
    raise ApiError(
        422, "invalid_request", f"{'.'.join(map(str, loc))}: {msg}",
        details=[{"loc": loc, "msg": msg, "type": "value_error"}],
    )
