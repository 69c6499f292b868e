"""Stream tokens: signed by the edge, expiring, bound to one session and one scope, rotatable."""

from __future__ import annotations

import jwt
import pytest

from api.stream_tokens import issue_token, verify_token
from tests.fixtures.credentials import CALLER_SECRET, auth_for_tests, caller_jwt
from tokenwire.errors import StreamTokenError
from tokenwire.settings import Settings

KEY_1, KEY_2 = "k" * 40, "m" * 40
SETTINGS = Settings(auth=auth_for_tests(stream_token_keys={"k1": KEY_1}, stream_token_kid="k1",
                                        stream_token_ttl_s=60))
NOW = 1_700_000_000.0


def reason_and_status(
    token: str | None, session_id: str = "s-1", now: float = NOW,
    settings: Settings = SETTINGS, scope: str = "read",
) -> tuple[str, int]:
    with pytest.raises(StreamTokenError) as caught:
        verify_token(settings, token, session_id=session_id, now=now, scope=scope)  # type: ignore[arg-type]
    return caught.value.reason, caught.value.status


def test_a_token_verifies_for_its_session_until_it_expires() -> None:
    token = issue_token(SETTINGS, session_id="s-1", user_id="user:with:colons", now=NOW)
    claims = verify_token(SETTINGS, token, session_id="s-1", now=NOW + 59)
    assert (claims.session_id, claims.user_id, claims.scope, claims.expires_at) == (
        "s-1", "user:with:colons", "read", int(NOW) + 60,
    )
    assert reason_and_status(token, now=NOW + 66) == ("token expired", 401)


def test_a_token_never_outlives_the_credential_it_was_minted_for() -> None:
    token = issue_token(SETTINGS, session_id="s-1", user_id="u", now=NOW, not_after=NOW + 10)
    assert verify_token(SETTINGS, token, session_id="s-1", now=NOW).expires_at == int(NOW) + 10


def test_a_read_token_does_not_allow_posting_and_a_write_token_reads_too() -> None:
    read = issue_token(SETTINGS, session_id="s-1", user_id="u", now=NOW)
    write = issue_token(SETTINGS, session_id="s-1", user_id="u", scope="write", now=NOW)
    assert reason_and_status(read, scope="write")[1] == 403
    assert verify_token(SETTINGS, write, session_id="s-1", scope="write", now=NOW).scope == "write"
    assert verify_token(SETTINGS, write, session_id="s-1", now=NOW).user_id == "u"


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
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = jwt.encode({**claims, "sid": "s-2"}, "not-the-key-" * 4, headers={"kid": "k1"})
    assert reason_and_status(forged, "s-2") == ("bad token signature", 401)
    unsigned = jwt.encode({**claims}, None, algorithm="none", headers={"kid": "k1"})
    assert reason_and_status(unsigned)[1] == 401


def test_a_caller_credential_is_not_a_stream_token() -> None:
    # Same kid, even the same secret: the audience keeps the two kinds apart.
    shared = Settings(auth=auth_for_tests(stream_token_keys={"k1": CALLER_SECRET},
                                          stream_token_kid="k1"))
    credential = caller_jwt("u", sid="s-1", scope="write")
    with_kid = jwt.encode(jwt.decode(credential, options={"verify_signature": False}),
                          CALLER_SECRET, headers={"kid": "k1"})
    assert reason_and_status(with_kid, settings=shared, now=NOW)[1] == 401


def test_keys_rotate_by_kid() -> None:
    old = issue_token(SETTINGS, session_id="s-1", user_id="u", now=NOW)
    rotating = Settings(auth=auth_for_tests(
        stream_token_keys={"k2": KEY_2, "k1": KEY_1}, stream_token_kid="k2"))
    new = issue_token(rotating, session_id="s-1", user_id="u", now=NOW)
    assert jwt.get_unverified_header(new)["kid"] == "k2"
    # During the rotation both verify; once k1 is removed, its tokens no longer do.
    assert verify_token(rotating, old, session_id="s-1", now=NOW).user_id == "u"
    assert verify_token(rotating, new, session_id="s-1", now=NOW).user_id == "u"
    retired = Settings(auth=auth_for_tests(stream_token_keys={"k2": KEY_2}, stream_token_kid="k2"))
    assert reason_and_status(old, settings=retired) == ("token signed with an unknown key", 401)


def test_a_token_from_an_edge_whose_clock_is_a_little_ahead_verifies() -> None:
    """Found in review: PyJWT refused ``iat`` in the future with no leeway (401 'malformed')."""
    import time

    token = issue_token(SETTINGS, session_id="s-1", user_id="u", now=time.time() + 3)
    assert verify_token(SETTINGS, token, session_id="s-1").user_id == "u"
