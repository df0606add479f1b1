"""Per-profile error envelopes: every error a profile answers goes through one function.

A profile's seed fixes the shape of its errors (``{"detail": ...}``, ``{"error": ...}``, a 400
for bad input rather than a 422...). ``install_error_envelope`` routes HTTP errors, validation
errors, API server errors and unexpected exceptions through the profile's ``Envelope``, so the
shape is decided in one place and an unexpected exception never shows a traceback.
"""

from __future__ import annotations

import http
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, Response

from kubepilot_gateway.app.jsontext import JsonTextGuard
from kubepilot_gateway.kube.errors import (
    AlreadyExists,
    ApiError,
    Conflict,
    Invalid,
    KubeError,
    KubeUnavailable,
    NotFound,
    TooManyRequests,
)

ProblemSource = Literal["http", "validation", "kube", "auth", "internal"]

INTERNAL_ERROR = "Internal Server Error"


@dataclass(frozen=True)
class Problem:
    """One error to answer.

    ``detail`` is what FastAPI would put under ``"detail"`` (a string, or the list of validation
    errors); ``message`` is always one human-readable line.
    """

    status: int
    detail: Any
    message: str
    source: ProblemSource
    headers: Mapping[str, str] | None = None


Envelope = Callable[[Request, Problem], Response]
"""Turns a problem into the profile's response."""


def default_envelope(request: Request, problem: Problem) -> Response:
    """FastAPI's own shape: ``{"detail": ...}``."""
    return JSONResponse(
        {"detail": jsonable_encoder(problem.detail)},
        status_code=problem.status,
        headers=dict(problem.headers) if problem.headers else None,
    )


KUBE_ERROR_STATUS: Mapping[type[KubeError], int] = {
    NotFound: 404,
    AlreadyExists: 409,
    Conflict: 409,
    Invalid: 422,
    TooManyRequests: 503,
    KubeUnavailable: 503,
}
"""API server errors a profile answers as its own status; any other is unexpected (a 500)."""

_ENVELOPE_STATE = "kubepilot_error_envelope"


def envelope_of(app: Any) -> Envelope:
    """The envelope installed on ``app`` (a FastAPI/Starlette app), else the default."""
    envelope = getattr(getattr(app, "state", None), _ENVELOPE_STATE, None)
    return envelope if callable(envelope) else default_envelope


def has_error_envelope(app: FastAPI) -> bool:
    return getattr(app.state, _ENVELOPE_STATE, None) is not None


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _has_body(status: int) -> bool:
    return status >= 200 and status not in (204, 205, 304)


def validation_message(errors: list[Any]) -> str:
    """One line for a list of validation errors: ``body.name: Field required; ...``."""
    parts = []
    for error in errors:
        location = ".".join(str(part) for part in error.get("loc", ()))
        parts.append(f"{location}: {error.get('msg', 'invalid')}" if location else str(error.get("msg")))
    return "; ".join(parts) or "Invalid request"


MAX_ECHO_DEPTH = 32
"""How deep an echoed input is kept in a validation error; deeper parts are replaced by a note."""


def _text(value: str) -> str:
    """``value`` as UTF-8 can carry it: a lone surrogate (``"\\ud800"`` in JSON) written out."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", errors="backslashreplace").decode("utf-8")
    return value


def _plain(value: Any, depth: int = 0) -> Any:
    """``value`` with bytes decoded (invalid UTF-8 replaced), lone surrogates written out, anything
    JSON cannot hold (an object, NaN, an infinity) as text, and nothing deeper than
    ``MAX_ECHO_DEPTH`` (a hostile body nested hundreds deep would exhaust the recursion)."""
    if depth > MAX_ECHO_DEPTH:
        return "(nested too deeply to echo)"
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dict):
        return {_text(str(key)): _plain(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item, depth + 1) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf": JSON has no such numbers, and a 422 must not become a 500
    if value is None or isinstance(value, int | float | bool):
        return value
    return _text(str(value))


CREDENTIAL_FIELD = re.compile(r"token|secret|passw|api_?key|^key$|credential", re.IGNORECASE)
"""Names of fields whose value is a credential: a validation error never echoes it back."""
REDACTED = "***"


def _without_credentials(value: Any, depth: int = 0) -> Any:
    if depth > MAX_ECHO_DEPTH:  # ``_plain`` cuts it here anyway
        return value
    if isinstance(value, dict):
        return {
            key: REDACTED
            if isinstance(key, str) and CREDENTIAL_FIELD.search(key)
            else _without_credentials(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_without_credentials(item, depth + 1) for item in value]
    return value


def redact_credentials(error: Any) -> Any:
    """A validation error whose ``input`` shows no credential: ``***`` for the input of a credential
    field (a password sent as a list is still a password), for a credential field inside an echoed
    object, and for an unparsed body text that names one (a login body that is no JSON object)."""
    if not isinstance(error, dict) or "input" not in error:
        return error
    names = [str(part) for part in (error.get("loc") or ())[1:]]  # after "body", "query", ...
    value = error["input"]
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    if any(CREDENTIAL_FIELD.search(name) for name in names) or (
        isinstance(text, str) and CREDENTIAL_FIELD.search(text)
    ):
        return {**error, "input": REDACTED}
    return {**error, "input": _without_credentials(value)}


def safe_validation_errors(errors: list[Any]) -> list[Any]:
    """Validation errors that always serialise: a body that is not UTF-8 arrives as bytes in
    ``input``, which FastAPI's own encoder cannot decode, and the input echoed may hold NaN, lone
    surrogates or nesting hundreds deep (bad input would become a 500). No credential is echoed
    (:func:`redact_credentials`)."""
    return [_plain(redact_credentials(error)) for error in errors]


def install_error_envelope(
    app: FastAPI,
    envelope: Envelope = default_envelope,
    *,
    validation_status: int = 422,
    kube_status: Mapping[type[KubeError], int] = KUBE_ERROR_STATUS,
    json_text_guard: bool = True,
) -> None:
    """Route every error ``app`` answers through ``envelope``.

    A JSON body that holds a lone surrogate or nests too deep for any reader is refused with
    ``validation_status`` before a route runs (``jsontext.JsonTextGuard``), unless
    ``json_text_guard`` is False: a profile whose own reader refuses both in its product's words.
    HTTP errors keep their status; request validation errors get ``validation_status``; API
    server errors get their ``kube_status`` (the API server's message as detail, except for an
    unreachable server); anything else becomes a 500 whose detail says nothing about the cause
    (the gateway logs it with its traceback).
    """

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers) if exc.headers else None
        if not _has_body(exc.status_code):
            return Response(status_code=exc.status_code, headers=headers)
        message = exc.detail if isinstance(exc.detail, str) else _phrase(exc.status_code)
        return envelope(request, Problem(exc.status_code, exc.detail, message, "http", headers))

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = safe_validation_errors(list(exc.errors()))
        return envelope(request, Problem(validation_status, errors, validation_message(errors), "validation"))

    async def on_kube(request: Request, exc: Exception) -> Response:
        status = next((kube_status[cls] for cls in type(exc).__mro__ if cls in kube_status), None)
        if status is None:  # not one of ours: the 500 path, logged by the guard
            raise exc
        if isinstance(exc, ApiError):
            message = exc.message
            headers = {"Retry-After": str(int(exc.retry_after))} if exc.retry_after else None
        else:
            # The connection error names hosts and paths: keep it in the log, out of the answer.
            message, headers = "The Kubernetes API server is unavailable", None
        return envelope(request, Problem(status, message, message, "kube", headers))

    async def on_internal(request: Request, exc: Exception) -> Response:
        return envelope(request, Problem(500, INTERNAL_ERROR, INTERNAL_ERROR, "internal"))

    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    for cls in kube_status:
        app.add_exception_handler(cls, on_kube)
    # Starlette answers this one from its outermost middleware, then re-raises for the server
    # (here: the gateway's request guard) to log.
    app.add_exception_handler(Exception, on_internal)
    setattr(app.state, _ENVELOPE_STATE, envelope)

    def refuse_json_text(request: Request, message: str) -> Response:
        return envelope(request, Problem(validation_status, message, message, "http"))

    # A JSON body with a lone surrogate or nested too deep is refused before any route runs, but
    # after every middleware the profile adds (authentication, rate limits, its headers): the
    # innermost place, which appending keeps whatever the profile adds after this call.
    if json_text_guard:
        app.user_middleware.append(Middleware(JsonTextGuard, respond=refuse_json_text))
