"""Stream tokens: who may read (and post into) one session, until when.

A token is ``<payload>.<signature>``, both base64url without padding: the payload is compact
JSON ``{"sid": session_id, "uid": user_id, "exp": epoch_seconds}`` and the signature is
HMAC-SHA256 of the encoded payload under ``settings.stream_token_secret``. The signature is
checked (in constant time) before anything in the payload is trusted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from starlette.requests import Request

from tokenwire.errors import StreamTokenError
from tokenwire.settings import Settings

MAX_TOKEN_CHARS = 2048


@dataclass(frozen=True)
class StreamClaims:
    session_id: str
    user_id: str
    expires_at: int


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(settings: Settings, payload: str) -> str:
    key = settings.stream_token_secret.get_secret_value().encode()
    return _b64encode(hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest())


def issue_token(
    settings: Settings, *, session_id: str, user_id: str, now: float | None = None
) -> str:
    issued = time.time() if now is None else now
    claims = {"sid": session_id, "uid": user_id, "exp": int(issued) + settings.stream_token_ttl_s}
    payload = _b64encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    return f"{payload}.{_sign(settings, payload)}"


def _claims(payload: str) -> StreamClaims:
    try:
        data = json.loads(_b64decode(payload))
    except (binascii.Error, ValueError) as exc:
        raise StreamTokenError("malformed token", status=401) from exc
    if not isinstance(data, dict):
        raise StreamTokenError("malformed token", status=401)
    sid, uid, exp = data.get("sid"), data.get("uid"), data.get("exp")
    if not (isinstance(sid, str) and isinstance(uid, str) and isinstance(exp, int)):
        raise StreamTokenError("malformed token", status=401)
    return StreamClaims(session_id=sid, user_id=uid, expires_at=exp)


def verify_token(
    settings: Settings, token: str | None, *, session_id: str, now: float | None = None
) -> StreamClaims:
    """The token's claims, else ``StreamTokenError``.

    401: missing, malformed, bad signature or expired; 403: valid but for another session.
    """
    if not token:
        raise StreamTokenError("missing stream token", status=401)
    parts = token.split(".")
    if len(token) > MAX_TOKEN_CHARS or len(parts) != 2 or not all(parts):
        raise StreamTokenError("malformed token", status=401)
    payload, signature = parts
    if not payload.isascii() or not hmac.compare_digest(
        _sign(settings, payload).encode(), signature.encode("utf-8", "replace")
    ):
        raise StreamTokenError("bad token signature", status=401)
    claims = _claims(payload)
    if (time.time() if now is None else now) >= claims.expires_at:
        raise StreamTokenError("token expired", status=401)
    if not hmac.compare_digest(claims.session_id.encode(), session_id.encode()):
        raise StreamTokenError("token is for another session", status=403)
    return claims


def bearer_token(request: Request, *, allow_query: bool) -> str | None:
    """The token from ``Authorization: Bearer``; else ``?token=`` (EventSource sets no headers)."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise StreamTokenError("authorization must be 'Bearer <token>'", status=401)
        return value.strip()
    return request.query_params.get("token") if allow_query else None
