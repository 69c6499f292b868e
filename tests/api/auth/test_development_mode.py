"""Development mode: two commands to a working chat, and no built-in secret anywhere else."""

from __future__ import annotations

import re

import httpx
import pytest

from agents.worker import build_worker_app
from api.app import create_app
from api.auth.development import mint_dev_jwt
from tests.api.conftest import EdgeFactory
from tests.fixtures.credentials import auth_for_tests
from tokenwire.auth_settings import AuthSettings
from tokenwire.errors import UnsafeSettingsError
from tokenwire.settings import Settings

BODY = {"messages": [{"role": "user", "content": "hi"}]}


def test_the_edge_refuses_to_start_on_built_in_secrets_outside_development_mode() -> None:
    with pytest.raises(UnsafeSettingsError) as refused:
        create_app(Settings())
    message = str(refused.value)
    assert "TOKENWIRE_AUTH_STREAM_TOKEN_KEYS[dev]" in message
    assert "no caller credentials configured" in message
    weak = AuthSettings(jwt_hs256_secret="short", stream_token_keys={"k": "s" * 40},
                        stream_token_kid="k")
    with pytest.raises(UnsafeSettingsError, match="TOKENWIRE_AUTH_JWT_HS256_SECRET"):
        create_app(Settings(auth=weak))


def test_the_worker_refuses_to_start_on_the_development_influx_token() -> None:
    with pytest.raises(UnsafeSettingsError, match="TOKENWIRE_INFLUX_TOKEN"):
        build_worker_app(Settings())


async def test_development_mode_hands_the_page_a_token_and_still_refuses_anonymous_calls(
    make_edge: EdgeFactory,
) -> None:
    async with make_edge(mode="development", auth=AuthSettings()) as edge:
        async with httpx.AsyncClient(timeout=30) as client:
            page = (await client.get(f"{edge.url}/")).text
            token = re.search(r'TOKENWIRE_DEV_CREDENTIAL = "([^"]+)"', page)
            assert token is not None
            headers = {"Authorization": f"Bearer {token.group(1)}"}
            with_page_token = await client.post(f"{edge.url}/v1/chat", json=BODY, headers=headers)
            anonymous = await client.post(f"{edge.url}/v1/chat", json=BODY)
    assert with_page_token.status_code == 202
    assert anonymous.status_code == 401


async def test_a_production_edge_refuses_development_tokens(make_edge: EdgeFactory) -> None:
    async with make_edge(auth=auth_for_tests()) as edge:
        async with httpx.AsyncClient(timeout=30) as client:
            page = (await client.get(f"{edge.url}/")).text
            headers = {"Authorization": f"Bearer {mint_dev_jwt('alice', ttl_s=60)}"}
            response = await client.post(f"{edge.url}/v1/chat", json=BODY, headers=headers)
    assert "TOKENWIRE_DEV_CREDENTIAL = " not in page
    assert response.status_code == 401
