"""Fault injection: make the next N matching requests fail, or drop every open watch stream.

Driven over HTTP at ``/_devcluster/faults`` (a path no Kubernetes client uses) or in-process
through :class:`FaultInjector`. Failure modes: 409, 410, 429 (with ``Retry-After``), 500, or
``reset`` (the connection is closed without a response).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubepilot_devcluster.apiserver.errors import ApiError

JsonObject = dict[str, Any]

MODES = ("409", "410", "429", "500", "reset")


@dataclass
class Fault:
    """Fail ``remaining`` requests whose verb and resource match (empty matches anything)."""

    mode: str
    remaining: int
    verb: str = ""
    resource: str = ""

    def matches(self, verb: str, resource: str) -> bool:
        return (not self.verb or self.verb == verb) and (not self.resource or self.resource == resource)


class ConnectionReset(Exception):
    """Raised to make the server drop the connection without answering."""


def _error_for(mode: str) -> ApiError:
    if mode == "409":
        return ApiError("Conflict", "Operation cannot be fulfilled: injected conflict (devcluster fault)")
    if mode == "410":
        return ApiError("Expired", "too old resource version: injected expiry (devcluster fault)", code=410)
    if mode == "429":
        return ApiError(
            "TooManyRequests",
            "the server has received too many requests and has asked us to try "
            "again later (devcluster fault)",
            headers={"Retry-After": "1"},
            details={"retryAfterSeconds": 1},
        )
    return ApiError("InternalError", "Internal error occurred: injected failure (devcluster fault)", code=500)


class FaultInjector:
    """The queue of pending faults, consulted by the server before every API request."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []

    def add(self, mode: str, count: int = 1, verb: str = "", resource: str = "") -> Fault:
        if mode not in MODES:
            raise ValueError(f"unknown fault mode {mode!r}; choose one of {', '.join(MODES)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        fault = Fault(mode, count, verb, resource)
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        self.faults.clear()

    def check(self, verb: str, resource: str) -> None:
        """Raise the injected failure if a pending fault matches this request."""
        for fault in self.faults:
            if fault.matches(verb, resource):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.faults.remove(fault)
                if fault.mode == "reset":
                    raise ConnectionReset()
                raise _error_for(fault.mode)

    def describe(self) -> list[JsonObject]:
        return [
            {"mode": f.mode, "remaining": f.remaining, "verb": f.verb, "resource": f.resource}
            for f in self.faults
        ]
