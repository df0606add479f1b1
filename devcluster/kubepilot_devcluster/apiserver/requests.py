"""Request plumbing: Kubernetes URL paths, query options, bodies and JSON responses."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from kubepilot_devcluster.apiserver import protobuf_kinds
from kubepilot_devcluster.apiserver.errors import ApiError, bad_request

JsonObject = dict[str, Any]

_TRUE = {"1", "true", "True", "TRUE", "yes"}
_NAMESPACE_SUBRESOURCES = {"status", "finalize"}


@dataclass(frozen=True)
class ResourcePath:
    """A parsed resource URL: ``/api/v1/namespaces/ns/pods/name/status`` and friends."""

    group: str
    version: str
    namespace: str | None
    plural: str
    name: str | None
    subresource: str | None
    legacy_watch: bool


def parse_resource_path(path: str) -> ResourcePath | None:
    """Split a resource URL, or None when the path is not one (discovery documents included)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    legacy_watch = bool(rest) and rest[0] == "watch"
    if legacy_watch:
        rest = rest[1:]
    if not rest:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in _NAMESPACE_SUBRESOURCES:
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        return None
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else None
    return ResourcePath(group, version, namespace, plural, name, subresource, legacy_watch)


def flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "") in _TRUE


def int_query(request: web.Request, name: str) -> int | None:
    text = request.query.get(name)
    if text in (None, ""):
        return None
    try:
        return int(text)
    except ValueError as error:
        raise bad_request(f"invalid value for {name}: {text!r}") from error


def dry_run(request: web.Request) -> bool:
    values = request.query.getall("dryRun", [])
    for value in values:
        if value != "All":
            raise bad_request(f"unsupported dry run value {value!r}: only 'All' is supported")
    return bool(values)


def field_validation(request: web.Request) -> str:
    value = request.query.get("fieldValidation", "Warn") or "Warn"
    if value not in ("Strict", "Warn", "Ignore"):
        raise bad_request(f"fieldValidation must be one of Strict, Warn or Ignore, not {value!r}")
    return value


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _int_or_float(literal: str) -> int | float:
    """An integer literal as the API server's JSON decoder reads it: int64, else a float64 (which
    an ``integer`` field's schema then refuses with a 422, as a real cluster does)."""
    value = int(literal)
    return value if INT64_MIN <= value <= INT64_MAX else float(literal)


def _no_constant(literal: str) -> Any:
    raise ValueError(f"invalid character {literal[0]!r} looking for beginning of value")


def _fit_int64(value: Any) -> Any:
    """A decoded YAML document with integers outside int64 read as floats (see ``_int_or_float``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if INT64_MIN <= value <= INT64_MAX else float(value)
    if isinstance(value, dict):
        return {key: _fit_int64(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_fit_int64(item) for item in value]
    return value


def decode_json(raw: bytes | str) -> Any:
    """JSON as Go decodes it for the API server: no NaN or Infinity, integers within int64."""
    return json.loads(raw, parse_int=_int_or_float, parse_constant=_no_constant)


async def read_body(request: web.Request, api_version: str = "", kind: str = "") -> Any:
    """The decoded request body: JSON, YAML, or the protobuf ``kubectl create`` sends."""
    content_type = request.headers.get("Content-Type", "application/json").split(";")[0].strip()
    raw = await request.read()
    if content_type == "application/vnd.kubernetes.protobuf" and raw:
        return protobuf_kinds.decode(raw, api_version, kind)
    if "protobuf" in content_type or "cbor" in content_type:
        raise ApiError(
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted "
            f"media types include: application/json, application/yaml (got {content_type})",
            code=415,
        )
    if not raw:
        return None
    try:
        if "yaml" in content_type:
            return _fit_int64(yaml.safe_load(raw))
        return decode_json(raw)
    except (ValueError, yaml.YAMLError) as error:
        raise bad_request(
            f"the request body is not valid {'YAML' if 'yaml' in content_type else 'JSON'}: {error}"
        ) from error


def dumps(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"))


def json_response(
    body: Any, status: int = 200, warnings: list[str] | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    response = web.Response(text=dumps(body), status=status, content_type="application/json", headers=headers)
    for warning in warnings or []:
        response.headers.add("Warning", '299 - "' + warning.replace('"', '\\"') + '"')
    return response


def error_response(error: ApiError) -> web.Response:
    return json_response(error.body(), status=error.code, headers=error.headers)


def wants_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")
