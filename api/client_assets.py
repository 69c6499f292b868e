"""The browser's JavaScript, served by the edge from an allowlist (nothing else under /static).

``/static/tokenwire.js`` and ``/static/ai-sdk.js`` (with their ``.d.ts``) come from
``clients/js``; ``/static/vendor/marked.esm.js`` and ``/static/vendor/purify.es.mjs`` are the
pinned npm packages the chat page renders Markdown with (``api/static/package.json``, installed by
``make node-deps``). Each answer carries an ETag and ``Cache-Control: no-cache``: a browser keeps
its copy but asks every time (a 304 costs one round trip), so a new version is seen at once.
A vendor file that is not installed is a 503 that says how to install it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from api.errors import ApiError

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
CLIENT_DIR = ROOT / "clients" / "js"
VENDOR_DIR = Path(__file__).resolve().parent / "static" / "node_modules"
JAVASCRIPT = "text/javascript; charset=utf-8"
TYPESCRIPT = "application/typescript; charset=utf-8"


@dataclass(frozen=True)
class Asset:
    url: str
    path: Path
    media_type: str
    # Missing means "not installed" (503, run make node-deps), else "not part of this build" (404).
    installed_by_npm: bool = False


def client_assets(client_dir: Path = CLIENT_DIR, vendor_dir: Path = VENDOR_DIR) -> list[Asset]:
    return [
        Asset("/static/tokenwire.js", client_dir / "tokenwire.js", JAVASCRIPT),
        Asset("/static/tokenwire.d.ts", client_dir / "tokenwire.d.ts", TYPESCRIPT),
        Asset("/static/ai-sdk.js", client_dir / "ai-sdk.js", JAVASCRIPT),
        Asset("/static/ai-sdk.d.ts", client_dir / "ai-sdk.d.ts", TYPESCRIPT),
        Asset("/static/vendor/marked.esm.js", vendor_dir / "marked" / "lib" / "marked.esm.js",
              JAVASCRIPT, installed_by_npm=True),
        Asset("/static/vendor/purify.es.mjs", vendor_dir / "dompurify" / "dist" / "purify.es.mjs",
              JAVASCRIPT, installed_by_npm=True),
    ]


class _Cached:
    """One file's bytes and ETag, read again only when its size or mtime changes."""

    def __init__(self) -> None:
        self.key: tuple[int, int] | None = None
        self.body = b""
        self.etag = ""


def asset_route(asset: Asset) -> Route:
    cached = _Cached()

    async def serve(request: Request) -> Response:
        try:
            stat = await anyio.to_thread.run_sync(os.stat, asset.path)
            key = (stat.st_mtime_ns, stat.st_size)
            if key != cached.key:
                body = await anyio.Path(asset.path).read_bytes()
                cached.body, cached.key = body, key
                cached.etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        except FileNotFoundError as exc:
            raise _missing(asset) from exc
        headers = {
            "ETag": cached.etag,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        }
        if cached.etag in _etags(request.headers.get("if-none-match", "")):
            return Response(status_code=304, headers=headers)
        # (A HEAD gets the same headers; the server leaves the body out.)
        return Response(cached.body, media_type=asset.media_type, headers=headers)

    return Route(asset.url, serve, methods=["GET"])


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def _missing(asset: Asset) -> ApiError:
    if asset.installed_by_npm:
        log.warning("client asset not installed url=%s path=%s", asset.url, asset.path)
        return ApiError(
            503, "asset_not_installed",
            f"{asset.url} is not installed on this edge: run `make node-deps` "
            "(npm ci in api/static)",
        )
    return ApiError(404, "not_found", f"{asset.url} is not part of this build")


def asset_routes(client_dir: Path = CLIENT_DIR, vendor_dir: Path = VENDOR_DIR) -> list[BaseRoute]:
    return [asset_route(asset) for asset in client_assets(client_dir, vendor_dir)]


ROUTES: list[BaseRoute] = asset_routes()
