"""Who may write into a session: the caller's credential plus the session's write token.

Shared by every endpoint that acts on an existing session (``POST /v1/chat`` into a session,
``POST …/requests/{id}/cancel``): the credential says who the caller is (401 without), the
``X-Stream-Token`` write token says the session is theirs (401 missing or invalid, 403 for
another session, a read-only token or another identity).
"""

from __future__ import annotations

from starlette.requests import Request

from api.auth.authenticator import Identity
from api.errors import ApiError, auth_error, token_error
from api.runtime import EdgeRuntime
from api.stream_tokens import verify_token
from tokenwire.errors import AuthError, StreamTokenError

WRITE_TOKEN_HEADER = "x-stream-token"


async def authenticate(runtime: EdgeRuntime, request: Request) -> Identity:
    try:
        return await runtime.auth.authenticate(request)
    except AuthError as exc:
        raise auth_error(exc) from exc


def authorise_session(
    runtime: EdgeRuntime, request: Request, session_id: str, identity: Identity
) -> None:
    try:
        claims = verify_token(
            runtime.settings, request.headers.get(WRITE_TOKEN_HEADER),
            session_id=session_id, scope="write",
        )
    except StreamTokenError as exc:
        raise token_error(exc) from exc
    if claims.user_id != identity.user_id:
        raise ApiError(403, "forbidden", "the session belongs to another caller")
