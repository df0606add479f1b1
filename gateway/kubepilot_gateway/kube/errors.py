"""Typed API server errors, so profiles map them to their own status codes without parsing bodies.

The API server answers a failure with a ``Status`` object: ``code`` is the HTTP status, ``reason``
tells apart the two 409s (AlreadyExists on create, Conflict on a stale write) and ``message`` is
the text a user should see (a 422's message names the field that failed validation).
"""

from __future__ import annotations

import json
from typing import Any

JsonObject = dict[str, Any]


class KubeError(Exception):
    """Any failure talking to the API server."""


class KubeUnavailable(KubeError):
    """No answer: the connection failed, was reset or timed out."""


class ApiError(KubeError):
    """A non-2xx answer; ``status`` is the parsed ``Status`` body (empty when there was none)."""

    def __init__(self, code: int, reason: str, message: str, status: JsonObject | None = None) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.status = status or {}

    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked us to wait (429 and some 5xx), when it said."""
        seconds = (self.status.get("details") or {}).get("retryAfterSeconds")
        return float(seconds) if isinstance(seconds, int | float) else None


class BadRequest(ApiError):
    """400."""


class NotFound(ApiError):
    """404: the object (or its namespace, or its type) does not exist."""


class AlreadyExists(ApiError):
    """409 AlreadyExists: a create found an object of that name."""


class Conflict(ApiError):
    """409 Conflict: the write was based on an older resourceVersion."""


class Gone(ApiError):
    """410: the resourceVersion asked for is older than the server keeps (watch, continue token)."""


class Invalid(ApiError):
    """422: the object failed validation; ``message`` says which field and why."""


class TooManyRequests(ApiError):
    """429: throttled; ``retry_after`` says when to come back."""


class ServerError(ApiError):
    """5xx."""


_BY_CODE: dict[int, type[ApiError]] = {
    400: BadRequest,
    404: NotFound,
    410: Gone,
    422: Invalid,
    429: TooManyRequests,
}


def api_error(code: int, body: bytes | str | JsonObject | None) -> ApiError:
    """The typed error for an HTTP status and its body (a ``Status`` object, or whatever came)."""
    status: JsonObject = {}
    if isinstance(body, dict):
        status = body
    elif body:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            status = parsed
        else:
            text = body.decode(errors="replace") if isinstance(body, bytes) else body
            status = {"message": text.strip()[:2000]}
    code = int(status.get("code") or code)
    reason = str(status.get("reason") or "")
    message = str(status.get("message") or reason or f"HTTP {code}")
    if code == 409:
        cls: type[ApiError] = AlreadyExists if reason == "AlreadyExists" else Conflict
    elif code >= 500:
        cls = ServerError
    else:
        cls = _BY_CODE.get(code, ApiError)
    return cls(code, reason, message, status)
