"""Quotas per identity, checked by the ingress before a request is published.

What an identity may use comes from its tier (``Settings.auth.tiers``) and, for an API key, the
key's own overrides (``Identity.quota``). What it is using comes from the ``UsageLedger``, which
every edge builds from the same topics, so N edges do not mean N times the quota.

Refusals (JSON error body; ``Retry-After`` where waiting helps), counted by reason:

=========================  ======  ==========================================================
reason                     status  when
=========================  ======  ==========================================================
model_not_allowed          403     ``model`` outside the identity's ``allowed_models``
max_tokens_over_quota      403     ``max_tokens`` above the identity's ceiling
risk_throttled             429     a live risk alert for the identity (api/throttle.py)
requests_per_minute        429     the identity's requests in the last 60 s
tokens_per_minute          429     ``usage.total_tokens`` finished in the last 60 s
concurrent_generations     429     admitted requests without a terminal event yet
new_sessions_per_minute    429     sessions opened in the last 60 s
live_sessions              429     sessions with a request in ``auth.live_session_window_s``
=========================  ======  ==========================================================
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from api.auth.authenticator import Identity
from api.errors import ApiError, retry_after_header
from api.throttle import AlertThrottle
from api.usage_ledger import UsageLedger

REASONS = (
    "model_not_allowed",
    "max_tokens_over_quota",
    "risk_throttled",
    "requests_per_minute",
    "tokens_per_minute",
    "concurrent_generations",
    "new_sessions_per_minute",
    "live_sessions",
)
# A generation or a live session frees up at no predictable time; ask again after this.
RETRY_SOON_S = 1.0
RETRY_SESSIONS_S = 60.0


class QuotaGate:
    def __init__(
        self, ledger: UsageLedger, throttle: AlertThrottle, registry: CollectorRegistry
    ) -> None:
        self._ledger = ledger
        self._throttle = throttle
        self.refusals = Counter(
            "tokenwire_edge_quota_refusals",
            "POST /v1/chat requests refused by a quota, by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in REASONS:
            self.refusals.labels(reason)

    def max_tokens(self, identity: Identity, requested: int | None) -> int:
        """The ``max_tokens`` to publish: the caller's, within its ceiling (403 above it)."""
        ceiling = identity.quota.max_tokens
        if requested is None:
            return ceiling
        if requested > ceiling:
            self._refuse(403, "max_tokens_over_quota", f"max_tokens above this caller's {ceiling}")
        return requested

    def check(self, identity: Identity, *, model: str, new_session: bool) -> None:
        quota = identity.quota
        if quota.allowed_models and model not in quota.allowed_models:
            allowed = ", ".join(quota.allowed_models)
            self._refuse(403, "model_not_allowed", f"model not allowed; allowed: {allowed}")
        self._risk(identity.user_id)
        usage = self._ledger.usage(identity.user_id)
        if usage.requests_last_minute >= quota.requests_per_minute:
            self._refuse(
                429, "requests_per_minute",
                f"over {quota.requests_per_minute} requests per minute",
                retry_after_s=usage.requests_free_in_s, code="rate_limited",
            )
        if usage.tokens_last_minute >= quota.tokens_per_minute:
            self._refuse(
                429, "tokens_per_minute", f"over {quota.tokens_per_minute} tokens per minute",
                retry_after_s=usage.tokens_free_in_s,
            )
        if usage.in_flight >= quota.concurrent_generations:
            self._refuse(
                429, "concurrent_generations",
                f"{quota.concurrent_generations} generations already running",
                retry_after_s=RETRY_SOON_S,
            )
        if new_session:
            self._session_quota(identity, usage.new_sessions_last_minute, usage.live_sessions)

    def _session_quota(self, identity: Identity, new_last_minute: int, live: int) -> None:
        quota = identity.quota
        if new_last_minute >= quota.new_sessions_per_minute:
            self._refuse(
                429, "new_sessions_per_minute",
                f"over {quota.new_sessions_per_minute} new sessions per minute",
                retry_after_s=RETRY_SESSIONS_S,
            )
        if live >= quota.live_sessions:
            self._refuse(
                429, "live_sessions", f"{quota.live_sessions} live sessions already",
                retry_after_s=RETRY_SESSIONS_S,
            )

    def _risk(self, user_id: str) -> None:
        reason = self._throttle.is_throttled(user_id)
        if reason is None:
            return
        wait_s = self._throttle.retry_after_s(user_id) or RETRY_SOON_S
        self._refuse(
            429, "risk_throttled", f"requests from this caller are paused: {reason}",
            retry_after_s=wait_s, code="risk_throttled",
        )

    def _refuse(
        self, status: int, reason: str, message: str, *,
        retry_after_s: float | None = None, code: str | None = None,
    ) -> None:
        self.refusals.labels(reason).inc()
        headers = {}
        if retry_after_s is not None:
            headers["Retry-After"] = retry_after_header(retry_after_s)
        default_code = "quota_exceeded" if status == 429 else "forbidden"
        raise ApiError(
            status, code or default_code, message, headers=headers, details={"reason": reason}
        )
