"""Errors of the OpenAI-compatible endpoints in OpenAI's shape, so the SDKs' own handling works.

Body: ``{"error": {"message", "type", "param", "code"}}``. The status is what OpenAI answers for
the same failure, because the SDKs choose their exception class and their automatic retry by it
(``openai`` retries 408, 409, 429 and 5xx, obeying ``Retry-After``; 4xx is raised at once):

======  ==========================  =================================================
status  type                        from
======  ==========================  =================================================
400     invalid_request_error       a bad body (tokenwire's 400/413/416/422 included)
401     invalid_request_error       no or a bad credential (code ``invalid_api_key``)
403     permission_error            a quota that waiting does not lift (model, max_tokens)
404     invalid_request_error       an unknown completion (or another caller's)
429     requests | tokens           a rate quota or the stream caps (``rate_limit_exceeded``)
5xx     server_error                Kafka or the answer failed
======  ==========================  =================================================

After a stream started, an error is sent as one ``data: {"error": {...}}`` line, which the SDKs
raise as ``APIError`` with the same body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from api.errors import ApiError, ErrorJSONResponse
from schemas.session_events import ErrorEvent

INVALID = "invalid_request_error"
SERVER = "server_error"
# tokenwire answers these for a request that is the caller's to fix; OpenAI says 400 for them.
AS_BAD_REQUEST = frozenset({400, 413, 416, 422})
TOKEN_QUOTAS = frozenset({"tokens_per_minute"})


@dataclass(eq=False)
class OpenAIError(Exception):
    status: int
    message: str
    type: str = INVALID
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.code or self.type}: {self.message}"

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message, "type": self.type, "param": self.param, "code": self.code,
            }
        }  # fmt: skip

    def response(self, headers: dict[str, str] | None = None) -> ErrorJSONResponse:
        return ErrorJSONResponse(
            self.body(), status_code=self.status, headers={**self.headers, **(headers or {})}
        )


def unsupported(param: str, message: str) -> OpenAIError:
    return OpenAIError(400, message, param=param, code="unsupported_parameter")


def unrecognized(param: str) -> OpenAIError:
    # OpenAI's own wording for a field it does not know.
    return OpenAIError(400, f"Unrecognized request argument supplied: {param}", param=param)


def not_found(completion_id: str) -> OpenAIError:
    return OpenAIError(
        404, f"No chat completion found with id '{completion_id}'.", param="completion_id",
        code="not_found",
    )


def from_api_error(exc: ApiError) -> OpenAIError:
    """tokenwire's own error (auth, validation, quotas, Kafka) as OpenAI would answer it."""
    headers = _retry_headers(exc.headers)
    status = exc.status
    if status in AS_BAD_REQUEST:
        param, code = _param_of(exc.details), exc.code
        return OpenAIError(400, _detailed(exc), INVALID, param, code, headers)
    if status == 401:
        return OpenAIError(401, exc.message, INVALID, None, "invalid_api_key", headers)
    if status == 403:
        return OpenAIError(403, exc.message, "permission_error", None, _reason(exc), headers)
    if status == 429:
        reason = _reason(exc)
        kind = "tokens" if reason in TOKEN_QUOTAS else "requests"
        message = f"Rate limit reached: {exc.message}"
        return OpenAIError(429, message, kind, None, "rate_limit_exceeded", headers)
    if status in (404, 409):
        return OpenAIError(status, exc.message, INVALID, None, exc.code, headers)
    if status >= 500:
        return OpenAIError(status, exc.message, SERVER, None, exc.code, headers)
    return OpenAIError(status, exc.message, INVALID, None, exc.code, headers)


def from_error_event(event: ErrorEvent) -> OpenAIError:
    """A request that ended in ``error``: the provider's own status when it refused
    (``http_<status>``), else a server error."""
    status = 500
    if event.code.startswith("http_") and event.code[5:].isdigit():
        status = int(event.code[5:])
        status = status if 400 <= status <= 599 else 500
    kind = SERVER if status >= 500 else INVALID
    return OpenAIError(status, event.message, kind, None, event.code)


def answer_restarted(completion_id: str, reason: str) -> OpenAIError:
    """A retried answer that differs from what a live stream already sent (``reason``)."""
    return OpenAIError(
        500,
        f"The answer was restarted after a failure and {reason}; re-attach with GET "
        f"/v1/chat/completions/{completion_id}/stream to read the final answer from its start.",
        SERVER, None, "answer_restarted",
    )


def interrupted(completion_id: str) -> OpenAIError:
    return OpenAIError(
        503,
        "The stream was interrupted; the answer goes on: re-attach with GET "
        f"/v1/chat/completions/{completion_id}/stream.",
        SERVER, None, "stream_interrupted",
    )


def _retry_headers(headers: dict[str, str]) -> dict[str, str]:
    """``Retry-After`` as sent, plus ``retry-after-ms``, which the SDKs read first."""
    after = headers.get("Retry-After")
    if after is None or not after.isdigit():
        return dict(headers)
    return {**headers, "retry-after-ms": str(int(after) * 1000)}


def _reason(exc: ApiError) -> str:
    details = exc.details
    if isinstance(details, dict) and isinstance(details.get("reason"), str):
        return str(details["reason"])
    return exc.code


def _param_of(details: Any) -> str | None:
    """The first offending field of a validation error, named as ``messages[0].role``."""
    if not isinstance(details, list) or not details or not isinstance(details[0], dict):
        return None
    return param_path(details[0].get("loc") or [])


def param_path(loc: list[Any]) -> str | None:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and not part.startswith(("function-", "tagged-union", "list[")):
            path += f".{part}" if path else part
    return path or None


def _detailed(exc: ApiError) -> str:
    details = exc.details
    if not isinstance(details, list) or not details or not isinstance(details[0], dict):
        return exc.message
    first = details[0]
    where = param_path(first.get("loc") or [])
    message = f"{exc.message}: {first.get('msg', '')}"
    return f"{message} (at {where})" if where else message
