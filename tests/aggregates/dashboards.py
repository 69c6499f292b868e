"""Panel queries out of the Grafana dashboards, made runnable outside Grafana."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "grafana" / "dashboards"


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    query: str

    @property
    def name(self) -> str:
        return f"{self.dashboard}: {self.panel} [{self.ref_id}]"


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # rows hold their panels when collapsed


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def panel_queries() -> list[PanelQuery]:
    found = []
    for path in dashboard_files():
        dashboard = json.loads(path.read_text())
        for panel in _panels(dashboard.get("panels", [])):
            for target in panel.get("targets", []):
                found.append(
                    PanelQuery(dashboard["title"], panel["title"], target["refId"], target["query"])
                )
    return found


def runnable(
    query: str, *, bucket: str, start: float, stop: float, variables: dict[str, str]
) -> str:
    """What Grafana sends: dashboard variables and its ``v.*`` time macros substituted."""

    def rfc3339(seconds: float) -> str:
        return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    text = query.replace("${bucket}", bucket)
    for name, value in variables.items():
        text = text.replace(f"${{{name}}}", value)
    text = text.replace("v.timeRangeStart", rfc3339(start))
    text = text.replace("v.timeRangeStop", rfc3339(stop))
    text = text.replace("v.windowPeriod", "1m")
    if "${" in text or "v." in text.replace("(v:", ""):
        raise ValueError(f"unsubstituted variable left in:\n{text}")
    return text
