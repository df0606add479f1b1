"""Imperative actions: nonce annotations in, ``status.actions`` out, acks from the workload.

``kubepilot.io/action-<name>: <nonce>`` requests an action; a new nonce requests it again. The
reconciler records each new nonce as Pending; the intake hands Pending actions to the worker in
its reply; the worker's ack (same name and nonce) makes it Done or Failed.
"""

from __future__ import annotations

import json
from typing import Any

from kubepilot_api.constants import ACTION_ANNOTATION_PREFIX
from kubepilot_api.workers.progress import ActionAck, PendingAction
from kubepilot_operator.conditions import timestamp
from kubepilot_operator.naming import ACTION_PARAMS_SUFFIX

Obj = dict[str, Any]


def requested(cr: Obj) -> dict[str, str]:
    """Action name → nonce, from the annotations."""
    annotations = cr.get("metadata", {}).get("annotations") or {}
    return {
        key[len(ACTION_ANNOTATION_PREFIX) :]: str(value)
        for key, value in annotations.items()
        if key.startswith(ACTION_ANNOTATION_PREFIX) and not key.endswith(ACTION_PARAMS_SUFFIX) and value
    }


def params(cr: Obj, name: str) -> dict[str, Any]:
    annotations = cr.get("metadata", {}).get("annotations") or {}
    raw = annotations.get(f"{ACTION_ANNOTATION_PREFIX}{name}{ACTION_PARAMS_SUFFIX}")
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def update(cr: Obj, actions: Obj, acks: list[ActionAck]) -> Obj:
    """The new ``status.actions``: new nonces recorded Pending, acks applied."""
    result = {name: dict(state) for name, state in actions.items()}
    for name, nonce in requested(cr).items():
        current = result.get(name)
        if current is None or current.get("requestedNonce") != nonce:
            result[name] = {"requestedNonce": nonce, "state": "Pending", "requestedAt": timestamp()}
    for ack in acks:
        current = result.get(ack.name)
        if current is not None and current.get("requestedNonce") == ack.nonce:
            current.update(
                observedNonce=ack.nonce,
                state="Done" if ack.ok else "Failed",
                completedAt=timestamp(),
                message=ack.message[:4096],
            )
    return result


def complete(actions: Obj, name: str, ok: bool, message: str) -> None:
    """Mark an action the operator itself carries out (a restart) as done."""
    current = actions.get(name)
    if current is not None and current.get("state") == "Pending":
        current.update(
            observedNonce=current["requestedNonce"],
            state="Done" if ok else "Failed",
            completedAt=timestamp(),
            message=message,
        )


def pending(cr: Obj, acked: set[tuple[str, str]]) -> list[PendingAction]:
    """Actions to hand to the workload: Pending in status and not already acked."""
    actions = (cr.get("status") or {}).get("actions") or {}
    result = []
    for name, state in sorted(actions.items()):
        nonce = str(state.get("requestedNonce", ""))
        if state.get("state") == "Pending" and (name, nonce) not in acked:
            result.append(PendingAction(name=name, nonce=nonce, params=params(cr, name)))
    return result
