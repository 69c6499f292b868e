"""The auth and quota section of Settings (``Settings.auth``, env ``TOKENWIRE_AUTH_<FIELD>``).

Maps and lists are JSON in the environment::

    TOKENWIRE_AUTH_STREAM_TOKEN_KEYS='{"k2": "<32+ random bytes>", "k1": "<the previous one>"}'
    TOKENWIRE_AUTH_STREAM_TOKEN_KID=k2
    TOKENWIRE_AUTH_TIERS='{"default": {"requests_per_minute": 30}, "service": {...}}'

Development mode (``TOKENWIRE_MODE=development``) may run on the built-in development secrets
below; any other mode refuses to start with them (``Settings.unsafe_settings``).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Public on purpose: anyone who reads this repository knows them, so they are refused outside
# development mode.
DEV_STREAM_TOKEN_SECRET = "tokenwire-dev-stream-token-secret"
DEV_JWT_SECRET = "tokenwire-dev-jwt-secret-not-for-production"
DEV_JWT_ISSUER = "tokenwire-dev"
DEV_KID = "dev"
MIN_SECRET_BYTES = 32
SUPPORTED_ALGORITHMS = ("HS256", "RS256", "ES256")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _https_or_loopback(url: str) -> bool:
    parsed = urlsplit(url)
    return parsed.scheme == "https" or (
        parsed.scheme == "http" and parsed.hostname in LOOPBACK_HOSTS
    )


class Quota(BaseModel):
    """What one identity may use. ``None`` in an override means "as the tier says"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requests_per_minute: int = Field(default=30, ge=1)
    # Prompt + completion tokens (``usage.total_tokens``) per minute.
    tokens_per_minute: int = Field(default=60_000, ge=1)
    concurrent_generations: int = Field(default=4, ge=1)
    new_sessions_per_minute: int = Field(default=10, ge=1)
    # Sessions with a request in the last ``Settings.auth.live_session_window_s``.
    live_sessions: int = Field(default=100, ge=1)
    max_tokens: int = Field(default=4096, ge=1)
    # Empty means any model.
    allowed_models: tuple[str, ...] = ()

    def with_overrides(self, overrides: dict[str, object]) -> Quota:
        """This quota with some fields replaced, validated (a key file is input too)."""
        return Quota.model_validate({**self.model_dump(), **overrides})


def _default_tiers() -> dict[str, Quota]:
    return {
        "default": Quota(),
        "service": Quota(
            requests_per_minute=600,
            tokens_per_minute=1_000_000,
            concurrent_generations=64,
            new_sessions_per_minute=600,
            live_sessions=100_000,
        ),
    }


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TOKENWIRE_AUTH_", frozen=True, extra="ignore", populate_by_name=True
    )

    # --- JWT bearer tokens ------------------------------------------------------------------
    # HS256 with a shared secret, and/or RS256/ES256 with keys from a JWKS (file or URL).
    jwt_hs256_secret: SecretStr | None = None
    jwks_file: Path | None = None
    jwks_url: str | None = None
    # A JWKS is fetched again after this long, or at once (at most every refresh_min_s) for a
    # ``kid`` it does not hold: that is how rotated keys arrive.
    jwks_cache_s: float = Field(default=300.0, gt=0)
    jwks_refresh_min_s: float = Field(default=10.0, ge=1)
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_subject_claim: str = "sub"
    # A claim naming the caller's quota tier; absent or unknown means "default".
    jwt_tier_claim: str = "tier"
    jwt_leeway_s: float = Field(default=30.0, ge=0, le=300)
    jwt_algorithms: tuple[str, ...] = ("HS256", "RS256", "ES256")

    # --- API keys ---------------------------------------------------------------------------
    # A TOML file of hashed keys (``tokenwire keys new`` writes an entry); checked for changes
    # every ``api_keys_reload_s``, so keys are added and revoked without a restart.
    api_keys_file: Path | None = None
    api_keys_reload_s: float = Field(default=2.0, gt=0)

    # --- stream tokens (the edge's own, per session) ----------------------------------------
    stream_token_keys: dict[str, SecretStr] = Field(
        default_factory=lambda: {DEV_KID: SecretStr(DEV_STREAM_TOKEN_SECRET)}
    )
    # The key new tokens are signed with; the others still verify until removed.
    stream_token_kid: str = DEV_KID
    stream_token_ttl_s: int = Field(default=3600, gt=0)

    # --- development mode -------------------------------------------------------------------
    dev_jwt_ttl_s: int = Field(default=3600, gt=0)

    # --- quotas -----------------------------------------------------------------------------
    tiers: dict[str, Quota] = Field(default_factory=_default_tiers)
    # How far back the edge's usage ledger reads chat.requests/chat.events at start, and the
    # window in which a session counts as live.
    live_session_window_s: float = Field(default=3600.0, ge=60)
    # Identities the usage ledger tracks at most; the least recently active are forgotten.
    ledger_max_identities: int = Field(default=100_000, ge=1)

    @field_validator("jwt_algorithms")
    @classmethod
    def _algorithms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = set(value) - set(SUPPORTED_ALGORITHMS)
        if unknown or not value:
            raise ValueError(f"jwt_algorithms must be some of {list(SUPPORTED_ALGORITHMS)}")
        return value

    @field_validator("stream_token_keys")
    @classmethod
    def _keys(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        if not value:
            raise ValueError("stream_token_keys needs at least one key")
        return value

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, value: dict[str, Quota]) -> dict[str, Quota]:
        if "default" not in value:
            raise ValueError("tiers must define a 'default' tier")
        return value

    @model_validator(mode="after")
    def _active_kid(self) -> AuthSettings:
        if self.stream_token_kid not in self.stream_token_keys:
            raise ValueError(
                f"stream_token_kid {self.stream_token_kid!r} is not in stream_token_keys"
            )
        return self

    def unsafe_settings(self) -> list[str]:
        """The auth settings that are built-in, empty, too short or shared between the caller
        and stream-token roles, or a JWKS without issuer and audience: refused outside dev mode."""
        unsafe = []
        built_in = {DEV_STREAM_TOKEN_SECRET, DEV_JWT_SECRET}
        stream_keys = {secret.get_secret_value() for secret in self.stream_token_keys.values()}
        for kid, secret in self.stream_token_keys.items():
            raw = secret.get_secret_value()
            if raw in built_in or len(raw.encode()) < MIN_SECRET_BYTES:
                unsafe.append(f"TOKENWIRE_AUTH_STREAM_TOKEN_KEYS[{kid}]")
        if self.jwt_hs256_secret is not None:
            raw = self.jwt_hs256_secret.get_secret_value()
            if raw in built_in | stream_keys or len(raw.encode()) < MIN_SECRET_BYTES:
                unsafe.append("TOKENWIRE_AUTH_JWT_HS256_SECRET (built-in, short or a stream key)")
        if (self.jwks_file or self.jwks_url) and not (self.jwt_issuer and self.jwt_audience):
            # Without them, any token the provider signs for any of its clients would do.
            unsafe.append("TOKENWIRE_AUTH_JWT_ISSUER and TOKENWIRE_AUTH_JWT_AUDIENCE (with a JWKS)")
        if self.jwks_url and not _https_or_loopback(self.jwks_url):
            unsafe.append("TOKENWIRE_AUTH_JWKS_URL (must be https)")
        if not self.has_caller_credentials:
            unsafe.append(
                "no caller credentials configured (TOKENWIRE_AUTH_JWT_HS256_SECRET, "
                "TOKENWIRE_AUTH_JWKS_FILE, TOKENWIRE_AUTH_JWKS_URL or TOKENWIRE_AUTH_API_KEYS_FILE)"
            )
        return unsafe

    @property
    def has_caller_credentials(self) -> bool:
        return any(
            (self.jwt_hs256_secret, self.jwks_file, self.jwks_url, self.api_keys_file)
        )

    def quota(self, tier: str) -> Quota:
        return self.tiers.get(tier) or self.tiers["default"]
