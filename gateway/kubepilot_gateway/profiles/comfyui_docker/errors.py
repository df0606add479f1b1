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

from datetime import UTC, datetime
from typing import Any

from fastapi import HTTPException, Request
from fastapi.encoders import jsonable_encoder
from starlette.responses import JSONResponse, Response

from kubepilot_gateway.app.errors import Problem

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
    return {"error": {"code": code, "message": message, "details": details, "timestamp": now_iso()}}


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
