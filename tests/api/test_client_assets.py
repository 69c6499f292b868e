"""The edge serves exactly its allowlist of browser JavaScript, with types and caching right."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from api import client_assets
from api.errors import EXCEPTION_HANDLERS

SERVED = [
    "/static/tokenwire.js",
    "/static/tokenwire.d.ts",
    "/static/vendor/marked.esm.js",
    "/static/vendor/purify.es.mjs",
]


def app_with(routes: list) -> Starlette:  # type: ignore[type-arg]
    return Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)  # type: ignore[arg-type]


@pytest.fixture
async def edge() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app_with(client_assets.ROUTES))
    async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
        yield client


@pytest.mark.parametrize("url", SERVED)
async def test_each_allowed_file_is_served_as_it_is_on_disk(
    edge: httpx.AsyncClient, url: str
) -> None:
    [asset] = [a for a in client_assets.client_assets() if a.url == url]

    response = await edge.get(url)

    assert response.status_code == 200
    assert response.content == asset.path.read_bytes()
    expected_type = "application/typescript" if url.endswith(".d.ts") else "text/javascript"
    assert response.headers["content-type"].split(";")[0] == expected_type
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["etag"].startswith('"')


async def test_a_known_version_is_a_304_and_a_new_version_a_new_etag(tmp_path: Path) -> None:
    (tmp_path / "tokenwire.js").write_text("export const v = 1;\n")
    transport = httpx.ASGITransport(app=app_with(client_assets.asset_routes(tmp_path, tmp_path)))
    async with httpx.AsyncClient(transport=transport, base_url="http://edge") as edge:
        first = await edge.get("/static/tokenwire.js")
        etag = first.headers["etag"]
        again = await edge.get("/static/tokenwire.js", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""

        (tmp_path / "tokenwire.js").write_text("export const v = 22;\n")
        changed = await edge.get("/static/tokenwire.js", headers={"If-None-Match": etag})

    assert changed.status_code == 200
    assert changed.text == "export const v = 22;\n"
    assert changed.headers["etag"] != etag


async def test_vendor_files_not_installed_say_how_to_install_them(tmp_path: Path) -> None:
    transport = httpx.ASGITransport(
        app=app_with(client_assets.asset_routes(tmp_path, tmp_path / "no-node-modules"))
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://edge") as edge:
        vendor = await edge.get("/static/vendor/marked.esm.js")
        optional = await edge.get("/static/ai-sdk.js")

    assert vendor.status_code == 503
    error = vendor.json()["error"]
    assert error["code"] == "asset_not_installed"
    assert "make node-deps" in error["message"]
    # A client file this build does not have is simply not found.
    assert optional.status_code == 404
    assert optional.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "url",
    [
        "/static/package.json",
        "/static/index.html",
        "/static/node_modules/marked/package.json",
        "/static/vendor/marked.umd.js",
        "/static/vendor/../../app.py",
        "/static/%2e%2e/client_assets.py",
        "/static/vendor/..%2f..%2fapp.py",
        "/static/tokenwire.js%00.html",
        "/static/",
    ],
)
async def test_nothing_outside_the_allowlist_is_served(edge: httpx.AsyncClient, url: str) -> None:
    response = await edge.get(url)

    assert response.status_code == 404
    assert b"import" not in response.content and b"def " not in response.content


def test_the_allowlist_is_exactly_the_client_and_vendor_modules() -> None:
    urls = {route.path for route in client_assets.ROUTES}  # type: ignore[attr-defined]

    assert urls == {
        "/static/tokenwire.js", "/static/tokenwire.d.ts", "/static/ai-sdk.js",
        "/static/ai-sdk.d.ts", "/static/vendor/marked.esm.js", "/static/vendor/purify.es.mjs",
    }
