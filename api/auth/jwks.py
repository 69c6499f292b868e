"""A JSON Web Key Set from a file or a URL, cached, refreshed for keys it does not know yet.

Keys are found by ``kid``. A set is read again when it is older than ``jwks_cache_s``, and at
once for a ``kid`` it lacks, but never more often than every ``jwks_refresh_min_s``: a flood of
tokens with made-up ``kid`` values costs one fetch per interval, not one per request. A failed
fetch keeps the keys already known (and is logged), so an identity provider's hiccup does not
lock everybody out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt

from tokenwire.auth_settings import AuthSettings

log = logging.getLogger(__name__)

MAX_JWKS_BYTES = 1_000_000
ASYMMETRIC_KEY_TYPES = frozenset({"RSA", "EC"})
FETCH_TIMEOUT_S = 5.0


class JwksSource:
    def __init__(self, auth: AuthSettings) -> None:
        if auth.jwks_file is None and auth.jwks_url is None:
            raise ValueError("a JWKS source needs jwks_file or jwks_url")
        self._file: Path | None = auth.jwks_file
        self._url: str | None = auth.jwks_url
        self._cache_s = auth.jwks_cache_s
        self._refresh_min_s = auth.jwks_refresh_min_s
        self._keys: dict[str, jwt.PyJWK] = {}
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        if self._url is not None:
            self._client = httpx.AsyncClient(timeout=FETCH_TIMEOUT_S, follow_redirects=False)
        await self._refresh()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def key(self, kid: str | None) -> jwt.PyJWK | None:
        """The key named ``kid`` (the only key, for a token without ``kid``), else None."""
        if time.monotonic() - self._loaded_at > self._cache_s:
            await self._refresh_at_most_every(0.0)
        found = self._find(kid)
        if found is None:
            await self._refresh_at_most_every(self._refresh_min_s)
            found = self._find(kid)
        return found

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def _refresh_at_most_every(self, interval_s: float) -> None:
        async with self._lock:
            if time.monotonic() - self._loaded_at >= interval_s:
                await self._refresh()

    async def _refresh(self) -> None:
        # Stamped first: a failing source is retried per interval, not on every request.
        self._loaded_at = time.monotonic()
        try:
            document = await self._read()
            keys = _parse(document)
        except (OSError, ValueError, RecursionError, httpx.HTTPError) as exc:
            log.error(
                "JWKS not refreshed source=%s error=%s keys_kept=%d",
                self._source, type(exc).__name__, len(self._keys),
            )
            return
        if set(keys) != set(self._keys):
            log.info("JWKS loaded source=%s kids=%s", self._source, sorted(keys))
        self._keys = keys

    async def _read(self) -> Any:
        if self._file is not None:
            raw = await asyncio.to_thread(self._file.read_bytes)
        else:
            assert self._client is not None and self._url is not None
            raw = await self._fetch(self._client, self._url)
        if len(raw) > MAX_JWKS_BYTES:
            raise ValueError(f"JWKS over {MAX_JWKS_BYTES} bytes")
        return json.loads(raw)

    @staticmethod
    async def _fetch(client: httpx.AsyncClient, url: str) -> bytes:
        """The body, read no further than ``MAX_JWKS_BYTES``."""
        raw = bytearray()
        async with client.stream("GET", url) as response:
            response.raise_for_status()
            async for chunk in response.aiter_bytes():
                raw.extend(chunk)
                if len(raw) > MAX_JWKS_BYTES:
                    raise ValueError(f"JWKS over {MAX_JWKS_BYTES} bytes")
        return bytes(raw)

    @property
    def _source(self) -> str:
        """Where keys come from, for logs: a URL without its query (it may carry a secret)."""
        if self._file is not None:
            return str(self._file)
        parts = urlsplit(self._url or "")
        return f"{parts.scheme}://{parts.hostname}{parts.path}"


def _parse(document: Any) -> dict[str, jwt.PyJWK]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("a JWKS is an object with a 'keys' list")
    keys: dict[str, jwt.PyJWK] = {}
    for index, data in enumerate(document["keys"]):
        if not isinstance(data, dict) or data.get("use", "sig") != "sig":
            continue
        if data.get("kty") not in ASYMMETRIC_KEY_TYPES:
            continue  # a JWKS publishes public keys; a shared (oct) key has no place in it
        try:
            key = jwt.PyJWK.from_dict(data)
        except Exception as exc:  # any malformed entry (even alg "none") skips that key only
            log.warning("JWKS key skipped index=%d error=%s", index, type(exc).__name__)
            continue
        keys[str(data.get("kid", f"#{index}"))] = key
    return keys
