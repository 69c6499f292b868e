"""Bearer JWTs: the signature and claims checked by PyJWT, the subject claim is the caller.

- HS256 tokens verify with ``auth.jwt_hs256_secret`` only; RS256/ES256 tokens with the JWKS key
  their ``kid`` names. A JWKS key is never used as an HMAC secret (no algorithm confusion), and
  ``alg: none`` or any algorithm outside ``auth.jwt_algorithms`` is refused before any key is
  looked at.
- ``exp`` is required, ``nbf`` honoured, both with ``auth.jwt_leeway_s`` of clock skew; ``iss``
  and ``aud`` are required to match when configured.
- In development mode, tokens minted by ``api.auth.development`` (issuer ``tokenwire-dev``)
  verify with the built-in development secret as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt

from api.auth.development import DEV_AUDIENCE
from api.auth.jwks import JwksSource
from api.stream_tokens import AUDIENCE as STREAM_AUDIENCE
from api.stream_tokens import ISSUER as STREAM_ISSUER
from tokenwire.auth_settings import DEV_JWT_ISSUER, DEV_JWT_SECRET, AuthSettings
from tokenwire.errors import AuthError

MAX_JWT_CHARS = 8192


@dataclass(frozen=True)
class VerifiedJwt:
    subject: str
    tier: str | None
    expires_at: float
    issuer: str | None


class JwtVerifier:
    def __init__(self, auth: AuthSettings, *, development: bool) -> None:
        self._auth = auth
        self._development = development
        self._jwks = JwksSource(auth) if auth.jwks_file or auth.jwks_url else None

    @property
    def enabled(self) -> bool:
        return self._development or self._auth.jwt_hs256_secret is not None or bool(self._jwks)

    async def start(self) -> None:
        if self._jwks is not None:
            await self._jwks.start()

    async def close(self) -> None:
        if self._jwks is not None:
            await self._jwks.close()

    async def verify(self, token: str) -> VerifiedJwt:
        if len(token) > MAX_JWT_CHARS or not token.isascii():
            raise AuthError("malformed bearer token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise AuthError("malformed bearer token") from exc
        alg = header.get("alg")
        if alg not in self._auth.jwt_algorithms:
            raise AuthError(f"token algorithm {alg!r} is not accepted")
        unverified = _unverified_claims(token)
        if _is_stream_token(unverified):
            # Even where an operator reused one secret for both, a stream token is no caller.
            raise AuthError("a stream token is not a caller credential")
        if alg == "HS256":
            return self._verify_hs256(token, unverified.get("iss"))
        return await self._verify_with_jwks(token, alg, header.get("kid"))

    def _verify_hs256(self, token: str, issuer: object) -> VerifiedJwt:
        if self._development and issuer == DEV_JWT_ISSUER:
            return self._decode(token, DEV_JWT_SECRET, "HS256", DEV_JWT_ISSUER, DEV_AUDIENCE)
        secret = self._auth.jwt_hs256_secret
        if secret is None:
            raise AuthError("HS256 tokens are not accepted here")
        auth = self._auth
        return self._decode(
            token, secret.get_secret_value(), "HS256", auth.jwt_issuer, auth.jwt_audience
        )

    async def _verify_with_jwks(self, token: str, alg: str, kid: object) -> VerifiedJwt:
        if self._jwks is None:
            raise AuthError(f"{alg} tokens are not accepted here (no JWKS configured)")
        if kid is not None and not isinstance(kid, str):
            raise AuthError("malformed token kid")
        key = await self._jwks.key(kid)
        if key is None:
            raise AuthError("token signed with an unknown key")
        if key.algorithm_name != alg:
            raise AuthError("token algorithm does not match its key")
        return self._decode(token, key.key, alg, self._auth.jwt_issuer, self._auth.jwt_audience)

    def _decode(
        self, token: str, key: Any, alg: str, issuer: str | None, audience: str | None
    ) -> VerifiedJwt:
        subject_claim = self._auth.jwt_subject_claim
        required = ["exp", subject_claim]
        required += (["iss"] if issuer else []) + (["aud"] if audience else [])
        try:
            claims = jwt.decode(
                token, key, algorithms=[alg], issuer=issuer, audience=audience,
                leeway=self._auth.jwt_leeway_s,
                options={"require": required, "verify_aud": audience is not None},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("bearer token expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise AuthError("bearer token not valid yet") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError("bad bearer token signature") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"bearer token refused: {exc}") from exc
        subject = claims.get(subject_claim)
        if not isinstance(subject, str) or not subject:
            raise AuthError(f"token claim {subject_claim!r} must be a non-empty string")
        tier = claims.get(self._auth.jwt_tier_claim)
        try:
            expires_at = float(claims["exp"])
        except (TypeError, ValueError, OverflowError) as exc:
            raise AuthError("token claim 'exp' is not a time") from exc
        return VerifiedJwt(
            subject=subject,
            tier=tier if isinstance(tier, str) else None,
            # Accepted up to the leeway past exp, so the stream tokens it buys may live as long.
            expires_at=expires_at + self._auth.jwt_leeway_s,
            issuer=claims.get("iss"),
        )


def _unverified_claims(token: str) -> dict[str, Any]:
    """The claims before any check: only to route the token, never to trust it."""
    try:
        return jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError as exc:
        raise AuthError("malformed bearer token") from exc


def _is_stream_token(claims: dict[str, Any]) -> bool:
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    return claims.get("iss") == STREAM_ISSUER or STREAM_AUDIENCE in audiences
