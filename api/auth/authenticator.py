"""``Authenticator.authenticate(request) -> Identity``: the caller behind a request, or 401.

Credentials, in this order:

- ``X-API-Key: tw_…`` — an API key;
- ``Authorization: Bearer tw_…`` — an API key;
- ``Authorization: Bearer <JWT>`` — a JWT (``jwt_verifier``).

Anything else, or nothing, is a 401: even in development mode nobody is anonymous.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request

from api.auth.api_keys import ApiKeyStore, looks_like_api_key
from api.auth.jwt_verifier import JwtVerifier
from schemas.common import USER_ID_PATTERN
from tokenwire.auth_settings import Quota
from tokenwire.errors import AuthError
from tokenwire.settings import Settings

USER_ID = re.compile(USER_ID_PATTERN)


@dataclass(frozen=True)
class Identity:
    user_id: str
    tier: str
    quota: Quota
    credential: Literal["jwt", "api_key"]
    # When the credential stops being valid (a JWT's exp); None for an API key.
    expires_at: float | None


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self._auth = settings.auth
        self.jwt = JwtVerifier(settings.auth, development=settings.development)
        self.api_keys = ApiKeyStore(settings.auth)

    async def start(self) -> None:
        await self.jwt.start()
        await self.api_keys.start()

    async def close(self) -> None:
        await self.api_keys.close()
        await self.jwt.close()

    async def authenticate(self, request: Request) -> Identity:
        api_key = request.headers.get("x-api-key")
        if api_key is not None:
            return self._from_api_key(api_key.strip())
        bearer = _bearer(request)
        if looks_like_api_key(bearer):
            return self._from_api_key(bearer)
        if not self.jwt.enabled:
            raise AuthError("bearer JWTs are not accepted here; use an API key")
        verified = await self.jwt.verify(bearer)
        if not USER_ID.fullmatch(verified.subject):
            raise AuthError("token subject is not a valid user id (1-128, no control chars)")
        tier = verified.tier if verified.tier in self._auth.tiers else "default"
        return Identity(
            user_id=verified.subject, tier=tier, quota=self._auth.quota(tier),
            credential="jwt", expires_at=verified.expires_at,
        )

    def _from_api_key(self, key: str) -> Identity:
        if not self.api_keys.enabled:
            raise AuthError("API keys are not accepted here")
        entry = self.api_keys.lookup(key)
        if entry is None:
            raise AuthError("unknown or revoked API key")
        try:
            quota = self._auth.quota(entry.tier).with_overrides(entry.quota)
        except ValueError as exc:
            reason = f"API key {entry.id} has an invalid quota override"
            raise AuthError(reason, status=403) from exc
        return Identity(
            user_id=entry.identity, tier=entry.tier, quota=quota,
            credential="api_key", expires_at=None,
        )


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization")
    if header is None:
        raise AuthError("authentication required: send 'Authorization: Bearer <token>'")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthError("authorization must be 'Bearer <token>'")
    return value.strip()
