"""API keys: hashed in a file, each an identity and a tier, added and revoked without restart."""

from __future__ import annotations

from pathlib import Path

import httpx

from api.auth.api_keys import append_key_entry, key_digest
from tests.api.conftest import EdgeFactory
from tests.fixtures.credentials import auth_for_tests
from tests.fixtures.waiting import eventually_true
from tokenwire.auth_settings import Quota

BODY = {"messages": [{"role": "user", "content": "hi"}]}


async def post(url: str, headers: dict[str, str], body: dict | None = None) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(f"{url}/v1/chat", json=body or BODY, headers=headers)


async def test_a_key_proves_its_identity_and_is_stored_only_hashed(
    make_edge: EdgeFactory, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.toml"
    key = append_key_entry(keys, key_id="ingest", identity="svc-ingest", tier="default")
    assert key.startswith("tw_") and key not in keys.read_text()
    assert key_digest(key) in keys.read_text()
    async with make_edge(auth=auth_for_tests(api_keys_file=keys)) as edge:
        as_header = await post(edge.url, {"X-API-Key": key})
        as_bearer = await post(edge.url, {"Authorization": f"Bearer {key}"})
        framed = await post(edge.url, {"X-API-Key": key}, {**BODY, "user_id": "someone-else"})
        unknown = await post(edge.url, {"X-API-Key": "tw_" + "x" * 43})
    assert as_header.status_code == 202 and as_bearer.status_code == 202
    assert framed.status_code == 403
    assert unknown.status_code == 401 and unknown.json()["error"]["code"] == "unauthorized"


async def test_keys_are_added_and_revoked_without_a_restart(
    make_edge: EdgeFactory, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text("")
    async with make_edge(auth=auth_for_tests(api_keys_file=keys, api_keys_reload_s=0.1)) as edge:
        key = append_key_entry(keys, key_id="late", identity="svc-late", tier="default")

        async def accepted() -> bool:
            return (await post(edge.url, {"X-API-Key": key})).status_code == 202

        await eventually_true(accepted)
        revoked = keys.read_text().replace('tier = "default"', 'tier = "default"\ndisabled = true')
        keys.write_text(revoked)

        async def refused() -> bool:
            return (await post(edge.url, {"X-API-Key": key})).status_code == 401

        await eventually_true(refused)


async def test_a_broken_key_file_keeps_the_keys_already_loaded(
    make_edge: EdgeFactory, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.toml"
    key = append_key_entry(keys, key_id="kept", identity="svc-kept", tier="default")
    async with make_edge(auth=auth_for_tests(api_keys_file=keys, api_keys_reload_s=0.1)) as edge:
        keys.write_text("this is [not toml")
        await edge.runtime.auth.api_keys.reload_if_changed()
        assert (await post(edge.url, {"X-API-Key": key})).status_code == 202


async def test_a_key_can_override_its_tier(make_edge: EdgeFactory, tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    key = append_key_entry(keys, key_id="small", identity="svc-small", tier="default")
    keys.write_text(keys.read_text() + "[keys.quota]\nmax_tokens = 10\n")
    tiers = {"default": Quota(max_tokens=1000)}
    async with make_edge(auth=auth_for_tests(api_keys_file=keys, tiers=tiers)) as edge:
        within = await post(edge.url, {"X-API-Key": key}, {**BODY, "max_tokens": 10})
        over = await post(edge.url, {"X-API-Key": key}, {**BODY, "max_tokens": 11})
    assert within.status_code == 202
    assert over.status_code == 403 and over.json()["error"]["details"]["reason"] == (
        "max_tokens_over_quota"
    )


async def test_a_file_with_a_duplicate_or_invalid_key_is_refused_whole(
    make_edge: EdgeFactory, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.toml"
    key = append_key_entry(keys, key_id="first", identity="svc-first", tier="default")
    good = keys.read_text()
    async with make_edge(auth=auth_for_tests(api_keys_file=keys)) as edge:
        store = edge.runtime.auth.api_keys
        # The same key again, revoked: which entry would win is a guess, so neither file loads.
        keys.write_text(good + good.replace('id = "first"', 'id = "copy"') + "disabled = true\n")
        await store.reload_if_changed()
        assert (await post(edge.url, {"X-API-Key": key})).status_code == 202
        keys.write_text(good + "[keys.quota]\nrequests_per_minute = -1\n")
        await store.reload_if_changed()
        assert (await post(edge.url, {"X-API-Key": key})).status_code == 202
