"""Placeholder: routes are added by the issue-#15 work."""

from __future__ import annotations

from starlette.routing import BaseRoute

ROUTES: list[BaseRoute] = []
