"""Chat messages as OpenAI's chat completions API takes them: roles, content parts, tool calls.

A message's ``content`` is a string or a list of parts. Which parts a role may carry follows
OpenAI: ``user`` may send ``text``, ``image_url``, ``input_audio`` and ``file`` parts; ``system``,
``developer`` and ``tool`` send text; ``assistant`` sends text or ``refusal`` parts, or no content
at all when it carries ``tool_calls`` (or a ``refusal``).

Bounds: a text is at most 100,000 characters; inline data (a ``data:`` image URL, base64 audio
or file data) at most ``INLINE_DATA_MAX_CHARS``. The whole request is also bounded by the
broker's record limit (the ingress answers 413 above it).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator

from schemas.common import Contract

TEXT_MAX_CHARS = 100_000
# Inline images, audio and files: ~600 KB of base64, under the broker's 1 MB record limit.
INLINE_DATA_MAX_CHARS = 800_000
# OpenAI's rule for tool (function) names.
TOOL_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
ToolName = Annotated[str, StringConstraints(pattern=TOOL_NAME_PATTERN)]
ToolCallId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Text = Annotated[str, StringConstraints(max_length=TEXT_MAX_CHARS)]
InlineData = Annotated[str, StringConstraints(max_length=INLINE_DATA_MAX_CHARS)]


# --- content parts ----------------------------------------------------------------------


class TextPart(Contract):
    type: Literal["text"] = "text"
    text: Text


class ImageUrl(Contract):
    # An https URL or a data: URL (bounded inline data).
    url: InlineData = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(Contract):
    type: Literal["image_url"] = "image_url"
    image_url: ImageUrl


class InputAudio(Contract):
    data: InlineData = Field(min_length=1)
    format: Literal["wav", "mp3"]


class AudioPart(Contract):
    type: Literal["input_audio"] = "input_audio"
    input_audio: InputAudio


class FileRef(Contract):
    file_data: InlineData | None = None
    file_id: str | None = Field(default=None, max_length=256)
    filename: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _names_a_file(self) -> FileRef:
        if self.file_data is None and self.file_id is None:
            raise ValueError("a file part needs file_data or file_id")
        return self


class FilePart(Contract):
    type: Literal["file"] = "file"
    file: FileRef


class RefusalPart(Contract):
    type: Literal["refusal"] = "refusal"
    refusal: Text


ContentPart = Annotated[
    TextPart | ImagePart | AudioPart | FilePart | RefusalPart, Field(discriminator="type")
]
Content = Text | Annotated[list[ContentPart], Field(min_length=1, max_length=100)]

_PARTS_BY_ROLE: dict[str, frozenset[str]] = {
    "system": frozenset({"text"}),
    "developer": frozenset({"text"}),
    "tool": frozenset({"text"}),
    "user": frozenset({"text", "image_url", "input_audio", "file"}),
    "assistant": frozenset({"text", "refusal"}),
}


# --- tool calls -------------------------------------------------------------------------


class FunctionCall(Contract):
    name: ToolName
    # A JSON text as the model wrote it; not parsed (a model may write invalid JSON).
    arguments: Text = ""


class ToolCall(Contract):
    """One tool call of an assistant message, assembled."""

    id: ToolCallId
    type: Literal["function"] = "function"
    function: FunctionCall


# --- messages ---------------------------------------------------------------------------

Role = Literal["system", "developer", "user", "assistant", "tool"]


class ChatMessage(Contract):
    role: Role
    content: Content | None = None
    name: str | None = Field(default=None, max_length=64)
    # assistant only
    tool_calls: list[ToolCall] | None = Field(default=None, max_length=128)
    refusal: Text | None = None
    # tool only: which call this message answers
    tool_call_id: ToolCallId | None = None

    @model_validator(mode="after")
    def _fits_its_role(self) -> ChatMessage:
        role = self.role
        if role == "tool" and self.tool_call_id is None:
            raise ValueError("a tool message needs tool_call_id")
        if role != "tool" and self.tool_call_id is not None:
            raise ValueError("only a tool message has tool_call_id")
        if role != "assistant" and (self.tool_calls is not None or self.refusal is not None):
            raise ValueError("only an assistant message has tool_calls or refusal")
        if self.content is None and not (self.tool_calls or self.refusal is not None):
            raise ValueError("content is required (an assistant may send tool_calls instead)")
        if isinstance(self.content, list):
            allowed = _PARTS_BY_ROLE[role]
            for part in self.content:
                if part.type not in allowed:
                    raise ValueError(f"a {role} message cannot carry a {part.type!r} part")
        return self

    @property
    def text(self) -> str:
        """The message's text: the string, or its text parts joined (other parts skipped)."""
        return content_text(self.content)

    def wire(self) -> dict[str, Any]:
        """As OpenAI takes it: unset (None) fields left out."""
        return self.model_dump(exclude_none=True)


def content_text(content: Content | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.text for part in content if isinstance(part, TextPart))
