"""API errors and the ``Status`` bodies the real kube-apiserver sends for them."""

from __future__ import annotations

from typing import Any

JsonObject = dict[str, Any]

_REASON_CODES = {
    "BadRequest": 400,
    "Unauthorized": 401,
    "Forbidden": 403,
    "NotFound": 404,
    "MethodNotAllowed": 405,
    "NotAcceptable": 406,
    "AlreadyExists": 409,
    "Conflict": 409,
    "Gone": 410,
    "Expired": 410,
    "UnsupportedMediaType": 415,
    "Invalid": 422,
    "TooManyRequests": 429,
    "InternalError": 500,
    "ServiceUnavailable": 503,
}


def status_body(code: int, reason: str, message: str, details: JsonObject | None = None) -> JsonObject:
    """A ``Status`` object shaped exactly like the real server's failure responses."""
    body: JsonObject = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


class ApiError(Exception):
    """An error answered to the client as a ``Status`` body with an HTTP code."""

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        code: int | None = None,
        details: JsonObject | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.code = code if code is not None else _REASON_CODES.get(reason, 500)
        self.details = details
        self.headers = headers or {}

    def body(self) -> JsonObject:
        return status_body(self.code, self.reason, self.message, self.details)


def _details(name: str, group: str, kind: str) -> JsonObject:
    # The real server omits an empty group (``omitempty``), so core resources carry none.
    details: JsonObject = {"name": name, "group": group, "kind": kind}
    if not group:
        del details["group"]
    return details


def _qualified(group: str, plural: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(group: str, plural: str, name: str) -> ApiError:
    return ApiError(
        "NotFound",
        f'{_qualified(group, plural)} "{name}" not found',
        details=_details(name, group, plural),
    )


def already_exists(group: str, plural: str, name: str) -> ApiError:
    return ApiError(
        "AlreadyExists",
        f'{_qualified(group, plural)} "{name}" already exists',
        details=_details(name, group, plural),
    )


def conflict(group: str, plural: str, name: str, why: str) -> ApiError:
    return ApiError(
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(group, plural)} "{name}": {why}',
        details=_details(name, group, plural),
    )


def bad_request(message: str) -> ApiError:
    return ApiError("BadRequest", message)


def invalid(group: str, kind: str, name: str, causes: list[JsonObject]) -> ApiError:
    """422 Invalid; each cause is ``{"reason", "message", "field"}`` like the real server's."""
    summary = ", ".join(f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes)
    qualified = f"{kind}.{group}" if group else kind
    return ApiError(
        "Invalid",
        f'{qualified} "{name}" is invalid: {summary}' if causes else f'{qualified} "{name}" is invalid',
        details={**_details(name, group, kind), "causes": causes},
    )


def cause(field: str, message: str, reason: str = "FieldValueInvalid") -> JsonObject:
    return {"reason": reason, "message": message, "field": field}
