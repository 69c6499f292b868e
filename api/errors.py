"""Every error the edge answers is JSON: ``{"error": {"code": ..., "message": ...}}``."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tokenwire.errors import AuthError, StreamTokenError

log = logging.getLogger(__name__)

WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="tokenwire"'}


class ErrorJSONResponse(JSONResponse):
    """An error body as JSON, even one that echoes a lone surrogate from a hostile body (JSON's
    ``"\\ud800"``, say in an unknown field's name): it goes out as that escape again, where
    plain UTF-8 would fail the response (a 500 instead of the 4xx)."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return text.encode("utf-8", errors="backslashreplace")


class ApiError(Exception):
    """Raised by a handler to answer ``status`` with a JSON error body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.details = details


def retry_after_header(seconds: float) -> str:
    """Retry-After takes whole seconds; round up so a client that obeys it is let through."""
    return str(max(1, math.ceil(seconds)))


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    details: Any = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return ErrorJSONResponse({"error": body}, status_code=status, headers=dict(headers or {}))


def token_error(exc: StreamTokenError) -> ApiError:
    code = "forbidden" if exc.status == 403 else "unauthorized"
    headers = {} if exc.status == 403 else dict(WWW_AUTHENTICATE)
    return ApiError(exc.status, code, exc.reason, headers=headers)


def auth_error(exc: AuthError) -> ApiError:
    if exc.status == 403:
        return ApiError(403, "forbidden", exc.reason)
    return ApiError(401, "unauthorized", exc.reason, headers=dict(WWW_AUTHENTICATE))


async def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(
        exc.status, exc.code, exc.message, headers=exc.headers, details=exc.details
    )


async def _token_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StreamTokenError)
    return await _api_error(request, token_error(exc))


async def _auth_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthError)
    return await _api_error(request, auth_error(exc))


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error path=%s error=%r", request.url.path, exc)
    return error_response(500, "internal", "internal error")


EXCEPTION_HANDLERS = {
    ApiError: _api_error,
    StreamTokenError: _token_error,
    AuthError: _auth_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}
