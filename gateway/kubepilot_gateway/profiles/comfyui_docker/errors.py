"""The dashboard's error envelope: ``{"error": {"code", "message", "details", "timestamp"}}``.

The seed names the codes; issue 12 gives their statuses from the product's companion guide
(docs/API.md): 404 ``PRESET_NOT_FOUND``, 409 ``PRESET_ALREADY_INSTALLED``, 500
``DOWNLOAD_FAILED``, 507 ``INSUFFICIENT_STORAGE``, 503 ``COMFYUI_UNAVAILABLE``, 400
``INVALID_WORKFLOW``, 404 ``MODEL_NOT_FOUND``, 507 ``QUEUE_FULL``, 401 ``UNAUTHORIZED``, 429
``RATE_LIMIT_EXCEEDED``.
Errors the seed has no code for get a code of ours from their status
(``INVALID_REQUEST`` for bad input, answered 400 like the product's other input errors).
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

from fastapi import HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from starlette.responses import JSONResponse, Response

from kubepilot_gateway.app.errors import Problem, safe_validation_errors, validation_message
from kubepilot_gateway.app.jsontext import has_lone_surrogate as has_lone_surrogate
from kubepilot_gateway.app.jsontext import nested_deeper_than as nested_deeper_than

STATUS_CODES = {
    400: "INVALID_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    422: "INVALID_REQUEST",
    429: "RATE_LIMIT_EXCEEDED",
    503: "SERVICE_UNAVAILABLE",
}
"""Codes of ours for errors the seed's table does not cover."""


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def api_error(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> HTTPException:
    """An error the envelope renders with the seed's ``code``."""
    return HTTPException(
        status_code=status, detail={"code": code, "message": message, "details": details or {}}
    )


def body(code: str, message: str, details: Any) -> dict[str, Any]:
    error = {"code": code, "message": message, "details": details, "timestamp": now_iso()}
    return {"error": json_safe(error)}


LONE_SURROGATE = re.compile("[\ud800-\udfff]")
"""A UTF-16 surrogate left alone in a text (JSON's ``"\\ud800"``): no UTF-8 encoding exists for it."""


def json_safe(value: Any) -> Any:
    """``value`` as an error may always render it: a float JSON cannot carry (NaN, Infinity: Python's
    JSON reader takes them, so they come back in validation errors' ``input``) as its text, a lone
    surrogate (which UTF-8 cannot encode) as its ``\\ud800`` escape."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode() if LONE_SURROGATE.search(value) else value
    if isinstance(value, dict):
        return {json_safe(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


MAX_INPUT_DEPTH = 32
"""Deepest ``input`` a validation error shows; a deeper one is replaced by a note."""
MAX_GRAPH_DEPTH = 64
"""Deepest workflow graph saved or executed (ComfyUI's API format nests 4 or 5 levels): JSON as
deep as Python's reader goes cannot be answered back (the serializer has a depth limit) nor stored
as a custom resource safely."""


def shallow(error: Any) -> Any:
    """A validation error whose ``input`` is too deep to render, with a note in its place."""
    if isinstance(error, dict) and nested_deeper_than(error.get("input"), MAX_INPUT_DEPTH):
        return {**error, "input": f"(nested more than {MAX_INPUT_DEPTH} levels deep)"}
    return error


async def on_validation(request: Request, exc: Exception) -> Response:
    """Bad input's 400 ``INVALID_REQUEST``, as the core's handler answers it, but safe for inputs
    nested as deep as the JSON reader goes (the core's ``safe_validation_errors`` walks them
    recursively and would fail with RecursionError: a 500); no credential is echoed (the core's)."""
    assert isinstance(exc, RequestValidationError)
    errors = safe_validation_errors([shallow(error) for error in exc.errors()])
    return envelope(request, Problem(400, errors, validation_message(errors), "validation"))


class JsonInputError(ValueError):
    """A request body (or a JSON text inside one) that is no JSON this profile takes."""


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise JsonInputError(f"{text[:20]} is beyond a JSON number's range")
    return number


def _no_constant(name: str) -> Any:
    raise JsonInputError(f"{name} is not a JSON number")


def parse_json(raw: str | bytes) -> Any:
    """The JSON value of ``raw`` as the API server would read it; ``JsonInputError`` with the reason
    when it is not JSON, is nested deeper than the reader goes (Python's raises RecursionError), or
    holds NaN / Infinity (which Python's reader takes and the API server's and browsers' do not) or a
    lone surrogate escape (a text no UTF-8 answer or file can hold)."""
    try:
        value = json.loads(raw, parse_float=_finite, parse_constant=_no_constant)
    except JsonInputError:
        raise
    except RecursionError:
        raise JsonInputError("nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise JsonInputError(str(error)) from None
    if has_lone_surrogate(value):
        raise JsonInputError("a text holds a lone surrogate escape (no Unicode character)")
    return value


def envelope(request: Request, problem: Problem) -> Response:
    """Every error of this profile, in the dashboard's shape."""
    detail = problem.detail
    if isinstance(detail, dict) and "code" in detail:
        content = body(str(detail["code"]), str(detail.get("message") or ""), detail.get("details") or {})
    elif problem.source == "validation":
        content = body("INVALID_REQUEST", problem.message, {"errors": jsonable_encoder(detail)})
    else:
        code = STATUS_CODES.get(problem.status, "INTERNAL_ERROR" if problem.status >= 500 else "ERROR")
        content = body(code, problem.message, {})
    headers = dict(problem.headers) if problem.headers else None
    return JSONResponse(content, status_code=problem.status, headers=headers)
