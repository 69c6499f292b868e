"""Write ``schemas/json/*.schema.json`` from the models: ``python -m schemas.export``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from schemas.alerts import RiskAlert
from schemas.control import ControlRecord
from schemas.lifecycle import LifecycleEvent
from schemas.requests import ChatRequest
from schemas.session_events import SessionEvent
from schemas.session_index import IndexRecord

JSON_DIR = Path(__file__).parent / "json"

EXPORTS: dict[str, TypeAdapter[Any]] = {
    "chat-request": TypeAdapter(ChatRequest),
    "session-event": TypeAdapter(SessionEvent),
    "lifecycle-event": TypeAdapter(LifecycleEvent),
    "risk-alert": TypeAdapter(RiskAlert),
    "control-record": TypeAdapter(ControlRecord),
    "session-index-record": TypeAdapter(IndexRecord),
}


def render(name: str) -> str:
    schema = EXPORTS[name].json_schema(mode="validation")
    schema["$id"] = f"https://tokenwire.dev/schemas/{name}.schema.json"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def export(directory: Path = JSON_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in EXPORTS:
        path = directory / f"{name}.schema.json"
        path.write_text(render(name))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in export():
        print(path)
