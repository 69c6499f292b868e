"""API keys for server-side producers: a TOML file of hashed keys, reloaded when it changes.

A key is ``tw_`` + 32 random bytes (base64url). The file holds only its SHA-256 (a key is
random and long, so a fast hash is the right one: nothing to brute-force, as with GitHub's
tokens), never the key::

    [[keys]]
    id = "ingest"                 # a name for logs; never the key
    sha256 = "9f86d0…"            # hex digest of the whole key
    identity = "svc-ingest"       # the user_id the key proves
    tier = "service"              # quota tier (Settings.auth.tiers); default "default"
    disabled = false              # revoke without deleting
    [keys.quota]                  # optional per-key overrides of the tier
    requests_per_minute = 1200

``tokenwire keys new --identity svc-ingest --tier service`` appends an entry and prints the key
once. The store looks at the file's size and mtime every ``api_keys_reload_s`` and reloads on a
change; a file that does not parse keeps the keys already loaded (and is logged as an error).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.common import USER_ID_PATTERN
from tokenwire.auth_settings import AuthSettings

log = logging.getLogger(__name__)

KEY_PREFIX = "tw_"
MAX_KEY_CHARS = 128


class KeyEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    identity: str = Field(pattern=USER_ID_PATTERN)
    tier: str = Field(default="default", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    disabled: bool = False
    quota: dict[str, Any] = Field(default_factory=dict)


class KeyFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    keys: list[KeyEntry] = Field(default_factory=list)


@dataclass(frozen=True)
class _Stamp:
    size: int
    mtime_ns: int


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_api_key(value: str) -> bool:
    return value.startswith(KEY_PREFIX)


class ApiKeyStore:
    def __init__(self, auth: AuthSettings) -> None:
        self._auth = auth
        self._path = auth.api_keys_file
        self._reload_s = auth.api_keys_reload_s
        self._by_digest: dict[str, KeyEntry] = {}
        self._stamp: _Stamp | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self._path is not None

    async def start(self) -> None:
        if self._path is None:
            return
        await self.reload_if_changed()
        self._task = asyncio.create_task(self._watch(), name="tokenwire-api-keys")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _parse(self, text: str) -> dict[str, KeyEntry]:
        """The file's live keys by digest; ``ValueError`` naming the problem (never a value:
        a key pasted into the wrong field must not reach the log)."""
        try:
            parsed = KeyFile.model_validate(tomllib.loads(text))
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"not TOML: {exc}") from exc
        except ValidationError as exc:
            problems = [
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                for e in exc.errors(include_input=False, include_url=False)
            ]
            raise ValueError("; ".join(problems[:5])) from exc
        entries: dict[str, KeyEntry] = {}
        for entry in parsed.keys:
            if entry.sha256 in entries:
                # Which one would win is a guess (one may be the revoked copy): refuse the file.
                raise ValueError(f"key {entry.id} has the same sha256 as key "
                                 f"{entries[entry.sha256].id}")
            try:
                self._auth.quota(entry.tier).with_overrides(entry.quota)
            except ValidationError as exc:
                raise ValueError(f"key {entry.id}: invalid quota override") from exc
            entries[entry.sha256] = entry
        return entries

    def lookup(self, key: str) -> KeyEntry | None:
        """The live entry for ``key``, else None (unknown, disabled or not a key at all)."""
        if not looks_like_api_key(key) or len(key) > MAX_KEY_CHARS:
            return None
        entry = self._by_digest.get(key_digest(key))
        return None if entry is None or entry.disabled else entry

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._reload_s)
            await self.reload_if_changed()

    async def reload_if_changed(self) -> None:
        assert self._path is not None
        try:
            stamp, text = await asyncio.to_thread(_read_if_changed, self._path, self._stamp)
        except OSError as exc:
            log.error("API key file not readable path=%s error=%r", self._path, exc)
            return
        if text is None:
            return
        try:
            entries = self._parse(text)
        except ValueError as exc:
            log.error("API key file not loaded, keeping %d keys path=%s error=%s",
                      len(self._by_digest), self._path, exc)
            return
        self._by_digest = entries
        self._stamp = stamp
        log.info("API keys loaded path=%s keys=%d", self._path, len(self._by_digest))


def _read_if_changed(path: Path, stamp: _Stamp | None) -> tuple[_Stamp, str | None]:
    info = os.stat(path)
    current = _Stamp(info.st_size, info.st_mtime_ns)
    if current == stamp:
        return current, None
    return current, path.read_text(encoding="utf-8")


def append_key_entry(path: Path, *, key_id: str, identity: str, tier: str) -> str:
    """Write a new key's entry to ``path`` and return the key (shown once, stored nowhere)."""
    key = new_api_key()
    entry = KeyEntry(id=key_id, sha256=key_digest(key), identity=identity, tier=tier)
    # JSON string literals are valid TOML basic strings (same escapes).
    fields = {"id": entry.id, "sha256": entry.sha256, "identity": entry.identity, "tier": tier}
    block = "\n[[keys]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in fields.items())
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(block)
    return key
