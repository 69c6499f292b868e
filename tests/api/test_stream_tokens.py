"""Stream tokens: HMAC-signed, expiring, bound to one session."""

from __future__ import annotations

import base64
import json

import pytest

from api.stream_tokens import issue_token, verify_token
from tokenwire.errors import StreamTokenError
from tokenwire.settings import Settings

SETTINGS = Settings(stream_token_secret="unit-secret", stream_token_ttl_s=60)
NOW = 1_700_000_000.0


def reason_and_status(token: str | None, session_id: str = "s-1", now: float = NOW) -> tuple:
    with pytest.raises(StreamTokenError) as caught:
        verify_token(SETTINGS, token, session_id=session_id, now=now)
    return caught.value.reason, caught.value.status


def test_a_token_verifies_for_its_session_until_it_expires() -> None:
    token = issue_token(SETTINGS, session_id="s-1", user_id="user:with:colons", now=NOW)
    claims = verify_token(SETTINGS, token, session_id="s-1", now=NOW + 59)
    assert (claims.session_id, claims.user_id, claims.expires_at) == (
        "s-1", "user:with:colons", int(NOW) + 60,
    )
    assert reason_and_status(token, now=NOW + 60) == ("token expired", 401)


def test_a_token_for_another_session_is_forbidden() -> None:
    token = issue_token(SETTINGS, session_id="s-1", user_id="u", now=NOW)
    assert reason_and_status(token, session_id="s-2") == ("token is for another session", 403)


@pytest.mark.parametrize("token", [None, ""])
def test_a_missing_token_is_unauthorised(token: str | None) -> None:
    assert reason_and_status(token) == ("missing stream token", 401)


@pytest.mark.parametrize("token", ["garbage", "a.b.c", ".sig", "x" * 3000, "é.é"])
def test_a_malformed_token_is_unauthorised(token: str) -> None:
    assert reason_and_status(token)[1] == 401


def test_a_forged_or_foreign_token_is_unauthorised() -> None:
    token = issue_token(SETTINGS, session_id="s-1", user_id="u", now=NOW)
    payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sid"] = "s-2"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert reason_and_status(f"{forged}.{signature}", "s-2") == ("bad token signature", 401)
    other = Settings(stream_token_secret="another-secret")
    foreign = issue_token(other, session_id="s-1", user_id="u", now=NOW)
    assert reason_and_status(foreign) == ("bad token signature", 401)
