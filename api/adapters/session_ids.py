"""Session ids for callers who name their own conversation (the AI SDK's chat id) or none.

A client-chosen id is namespaced by the authenticated caller: the session is
``<kind>-<sha256(kind, user, id)[:32]>``, so two users' chats called ``"abc"`` are two sessions,
and nobody reaches another user's session by guessing its chat id; no stream token is needed,
the caller's own credential is the proof of ownership.
"""

from __future__ import annotations

import hashlib

# A chat id is the caller's text: bounded before it is hashed, like every other identifier.
MAX_CLIENT_ID_CHARS = 128


def owned_session_id(kind: str, user_id: str, client_id: str) -> str:
    """The session behind ``client_id`` of ``user_id``: stable, and another user's is another."""
    digest = hashlib.sha256(f"{kind}\0{user_id}\0{client_id}".encode()).hexdigest()
    return f"{kind}-{digest[:32]}"
