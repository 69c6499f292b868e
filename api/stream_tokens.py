"""Stream tokens: who may read (``read``) or post into (``write``) one session, until when.

A stream token is a compact JWS (HS256) signed by the edge with one of
``settings.auth.stream_token_keys``; its header names the key (``kid``), so a new key can sign
while the old one still verifies during a rotation. Claims::

    {"iss": "tokenwire-edge", "aud": "tokenwire:stream", "sid": session, "sub": user,
     "scope": "read" | "write", "exp": ..., "iat": ...}

``aud`` keeps stream tokens and caller credentials apart: neither is accepted as the other.
A token never outlives the credential it was minted for (``not_after``), and a new one is only
minted for a caller's credential, never for an old stream token, so a leaked ``?token=`` (always
``read``) cannot renew itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import jwt
from starlette.requests import Request

from tokenwire.errors import StreamTokenError
from tokenwire.settings import Settings

Scope = Literal["read", "write"]
ISSUER = "tokenwire-edge"
AUDIENCE = "tokenwire:stream"
MAX_TOKEN_CHARS = 2048
# Edges' clocks differ a little; a token is still good this long past its ``exp``.
LEEWAY_S = 5
REQUIRED_CLAIMS = ["exp", "sid", "sub", "scope"]


@dataclass(frozen=True)
class StreamClaims:
    session_id: str
    user_id: str
    scope: Scope
    expires_at: int


def issue_token(
    settings: Settings,
    *,
    session_id: str,
    user_id: str,
    scope: Scope = "read",
    not_after: float | None = None,
    now: float | None = None,
) -> str:
    """A token for ``session_id``; it expires at the TTL or at ``not_after``, whichever is first."""
    issued = int(time.time() if now is None else now)
    expires = issued + settings.auth.stream_token_ttl_s
    if not_after is not None:
        expires = min(expires, int(not_after))
    kid = settings.auth.stream_token_kid
    claims = {
        "iss": ISSUER, "aud": AUDIENCE, "sid": session_id, "sub": user_id,
        "scope": scope, "iat": issued, "exp": expires,
    }
    key = settings.auth.stream_token_keys[kid].get_secret_value()
    return jwt.encode(claims, key, algorithm="HS256", headers={"kid": kid})


def verify_token(
    settings: Settings,
    token: str | None,
    *,
    session_id: str,
    scope: Scope = "read",
    now: float | None = None,
) -> StreamClaims:
    """The token's claims, else ``StreamTokenError``.

    401: missing, malformed, unknown key, bad signature or expired; 403: valid but for another
    session or without ``scope`` (a ``write`` token may also read).
    """
    if not token:
        raise StreamTokenError("missing stream token", status=401)
    if len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise StreamTokenError("malformed token", status=401)
    claims = _decode(settings, token, now)
    if claims.session_id != session_id:
        raise StreamTokenError("token is for another session", status=403)
    if scope == "write" and claims.scope != "write":
        raise StreamTokenError("token does not allow posting into the session", status=403)
    return claims


def _decode(settings: Settings, token: str, now: float | None) -> StreamClaims:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.InvalidTokenError as exc:
        raise StreamTokenError("malformed token", status=401) from exc
    secret = settings.auth.stream_token_keys.get(kid) if isinstance(kid, str) else None
    if secret is None:
        raise StreamTokenError("token signed with an unknown key", status=401)
    try:
        # Expiry is checked below against ``now``, so that tests can move the clock.
        data = jwt.decode(
            token, secret.get_secret_value(), algorithms=["HS256"], audience=AUDIENCE,
            issuer=ISSUER, leeway=LEEWAY_S,
            options={"verify_exp": False, "require": REQUIRED_CLAIMS},
        )
    except jwt.InvalidSignatureError as exc:
        raise StreamTokenError("bad token signature", status=401) from exc
    except jwt.InvalidTokenError as exc:
        raise StreamTokenError("malformed token", status=401) from exc
    sid, sub, scope, exp = data["sid"], data["sub"], data["scope"], data["exp"]
    if not (
        isinstance(sid, str) and isinstance(sub, str) and scope in ("read", "write")
        and isinstance(exp, int)
    ):
        raise StreamTokenError("malformed token", status=401)
    if (time.time() if now is None else now) >= exp + LEEWAY_S:
        raise StreamTokenError("token expired", status=401)
    return StreamClaims(session_id=sid, user_id=sub, scope=scope, expires_at=int(data["exp"]))


def bearer_token(request: Request, *, allow_query: bool) -> str | None:
    """The token from ``Authorization: Bearer``; else ``?token=`` (EventSource sets no headers)."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise StreamTokenError("authorization must be 'Bearer <token>'", status=401)
        return value.strip()
    return request.query_params.get("token") if allow_query else None
