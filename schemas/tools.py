"""What a request may ask of the model beyond messages: tools, tool choice, output format."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from schemas.common import Contract
from schemas.messages import ToolName

DESCRIPTION_MAX_CHARS = 8_000
SCHEMA_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class FunctionDefinition(Contract):
    name: ToolName
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX_CHARS)
    # A JSON Schema object; passed to the provider as written.
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Contract):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class NamedFunction(Contract):
    name: ToolName


class NamedToolChoice(Contract):
    type: Literal["function"] = "function"
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class TextFormat(Contract):
    type: Literal["text"] = "text"


class JsonObjectFormat(Contract):
    type: Literal["json_object"] = "json_object"


class JsonSchema(Contract):
    name: str = Field(pattern=SCHEMA_NAME_PATTERN)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX_CHARS)
    # ``schema`` shadows a BaseModel attribute: kept under an alias.
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None

    model_config = Contract.model_config | {"populate_by_name": True, "serialize_by_alias": True}


class JsonSchemaFormat(Contract):
    type: Literal["json_schema"] = "json_schema"
    json_schema: JsonSchema


ResponseFormat = Annotated[
    TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")
]
