"""Development mode's credentials: short-lived JWTs signed with the public development secret.

Only an edge in development mode accepts them (``jwt_verifier``); they let ``make run`` hand the
chat page a token and print a ``curl`` line that works, with no key set up by hand.
"""

from __future__ import annotations

import json
import secrets
import time

import jwt

from tokenwire.auth_settings import DEV_JWT_ISSUER, DEV_JWT_SECRET
from tokenwire.settings import Settings

DEV_AUDIENCE = "tokenwire"
PAGE_PLACEHOLDER = "<!--TOKENWIRE_DEV_CREDENTIAL-->"


def mint_dev_jwt(user_id: str, *, ttl_s: int, tier: str | None = None) -> str:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": DEV_JWT_ISSUER, "aud": DEV_AUDIENCE, "sub": user_id, "iat": now, "exp": now + ttl_s,
    }
    if tier is not None:
        claims["tier"] = tier
    return jwt.encode(claims, DEV_JWT_SECRET, algorithm="HS256")


def page_for_this_visit(settings: Settings, page: str) -> str:
    """The chat page; in development mode with a fresh development JWT for a new user."""
    if not settings.development:
        return page.replace(PAGE_PLACEHOLDER, "")
    token = mint_dev_jwt(f"web-{secrets.token_hex(8)}", ttl_s=settings.auth.dev_jwt_ttl_s)
    # A JWT is base64url and dots; escaping '<' keeps the script element closed whatever it is.
    literal = json.dumps(token).replace("<", "\\u003c")
    script = f"<script>window.TOKENWIRE_DEV_CREDENTIAL = {literal};</script>"
    return page.replace(PAGE_PLACEHOLDER, script)
