"""``meta.k8s.io/v1`` Table responses, so ``kubectl get`` prints server-side columns.

Custom resources use their CRD's ``additionalPrinterColumns`` (simple JSONPath); built-ins get
kubectl-like defaults (pods: READY, STATUS, RESTARTS, AGE; everything: NAME and AGE).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from kubepilot_devcluster.apiserver.resources import ResourceType
from kubepilot_devcluster.apiserver.timeutil import age

JsonObject = dict[str, Any]
Cell = Callable[[JsonObject], Any]

_NAME_COLUMN = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "priority": 0,
    "description": "Name must be unique within a namespace.",
}
_AGE_COLUMN = {
    "name": "Age",
    "type": "date",
    "format": "",
    "priority": 0,
    "description": "CreationTimestamp is a timestamp representing the server time when this object "
    "was created.",
}


def jsonpath(obj: Any, path: str) -> Any:
    """Evaluate the JSONPath forms printer columns use: ``.a.b``, ``.a[0].b``, ``.a[?(@.k=="v")].b``."""
    current: Any = obj
    for token in re.findall(
        r'\.([A-Za-z0-9_-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_]+)==["\']([^"\']*)["\']\)\]',
        path.strip().lstrip("{").rstrip("}"),
    ):
        key, index, filter_key, filter_value = token
        if key:
            current = current.get(key) if isinstance(current, dict) else None
        elif index:
            current = current[int(index)] if isinstance(current, list) and int(index) < len(current) else None
        else:
            current = (
                next(
                    (
                        item
                        for item in current
                        if isinstance(item, dict) and str(item.get(filter_key)) == filter_value
                    ),
                    None,
                )
                if isinstance(current, list)
                else None
            )
        if current is None:
            return None
    return current


def _pod_ready(pod: JsonObject) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or [])
    ready = sum(1 for s in statuses if s.get("ready"))
    return f"{ready}/{total}"


def _pod_status(pod: JsonObject) -> str:
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        waiting = (state.get("waiting") or {}).get("reason")
        terminated = (state.get("terminated") or {}).get("reason")
        if waiting:
            return str(waiting)
        if terminated and status.get("phase") not in ("Succeeded", "Failed"):
            return str(terminated)
    return str(status.get("reason") or status.get("phase") or "Pending")


def _pod_restarts(pod: JsonObject) -> int:
    return sum(
        int(s.get("restartCount", 0)) for s in (pod.get("status") or {}).get("containerStatuses") or []
    )


def _column(name: str, kind: str = "string", priority: int = 0) -> JsonObject:
    return {"name": name, "type": kind, "format": "", "description": name, "priority": priority}


def _builtin_columns(resource: ResourceType) -> list[tuple[JsonObject, Cell]]:
    kind = resource.kind
    if kind == "Pod":
        return [
            (_column("Ready"), _pod_ready),
            (_column("Status"), _pod_status),
            (_column("Restarts", "integer"), _pod_restarts),
            (_AGE_COLUMN, lambda o: age(o["metadata"].get("creationTimestamp"))),
            (_column("IP", priority=1), lambda o: (o.get("status") or {}).get("podIP", "<none>")),
            (_column("Node", priority=1), lambda o: (o.get("spec") or {}).get("nodeName", "<none>")),
        ]
    extra: list[tuple[JsonObject, Cell]] = []
    if kind == "Namespace":
        extra = [(_column("Status"), lambda o: (o.get("status") or {}).get("phase", ""))]
    elif kind == "Deployment":
        extra = [
            (
                _column("Ready"),
                lambda o: (
                    f"{(o.get('status') or {}).get('readyReplicas', 0)}/"
                    f"{(o.get('spec') or {}).get('replicas', 0)}"
                ),
            ),
            (_column("Up-to-date", "integer"), lambda o: (o.get("status") or {}).get("updatedReplicas", 0)),
            (_column("Available", "integer"), lambda o: (o.get("status") or {}).get("availableReplicas", 0)),
        ]
    elif kind == "Job":
        extra = [
            (_column("Status"), _job_status),
            (
                _column("Completions"),
                lambda o: (
                    f"{(o.get('status') or {}).get('succeeded', 0)}/"
                    f"{(o.get('spec') or {}).get('completions', 1)}"
                ),
            ),
        ]
    elif kind in ("ConfigMap", "Secret"):
        extra = [
            (_column("Data", "integer"), lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {}))
        ]
    elif kind == "Node":
        extra = [(_column("Status"), _node_status)]
    elif kind == "Service":
        extra = [
            (_column("Type"), lambda o: (o.get("spec") or {}).get("type", "")),
            (_column("Cluster-IP"), lambda o: (o.get("spec") or {}).get("clusterIP", "<none>")),
            (_column("Port(s)"), _service_ports),
        ]
    elif kind == "Event" and resource.group == "":
        return _event_columns()
    elif kind in ("ReplicaSet", "DaemonSet"):
        desired = "replicas" if kind == "ReplicaSet" else "desiredNumberScheduled"
        extra = [
            (
                _column("Desired", "integer"),
                lambda o: (o.get("spec" if kind == "ReplicaSet" else "status") or {}).get(desired, 0),
            ),
            (
                _column("Ready", "integer"),
                lambda o: (o.get("status") or {}).get(
                    "readyReplicas" if kind == "ReplicaSet" else "numberReady", 0
                ),
            ),
        ]
    return [*extra, (_AGE_COLUMN, lambda o: age(o["metadata"].get("creationTimestamp")))]


def _service_ports(service: JsonObject) -> str:
    ports = (service.get("spec") or {}).get("ports") or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports) or "<none>"


def _event_columns() -> list[tuple[JsonObject, Cell]]:
    """``kubectl get events`` columns; the NAME column comes first as for every kind."""

    def last_seen(event: JsonObject) -> str:
        stamp = (
            event.get("lastTimestamp") or event.get("eventTime") or event["metadata"].get("creationTimestamp")
        )
        return age(stamp)

    def involved(event: JsonObject) -> str:
        target = event.get("involvedObject") or {}
        return f"{str(target.get('kind', '')).lower()}/{target.get('name', '')}"

    return [
        (_column("Last Seen"), last_seen),
        (_column("Type"), lambda o: o.get("type", "")),
        (_column("Reason"), lambda o: o.get("reason", "")),
        (_column("Object"), involved),
        (_column("Message"), lambda o: o.get("message", "")),
    ]


def _job_status(job: JsonObject) -> str:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed", "Suspended"):
            return str(condition["type"])
    return "Running"


def _node_status(node: JsonObject) -> str:
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return "Ready" if condition.get("status") == "True" else "NotReady"
    return "Unknown"


def _custom_columns(resource: ResourceType) -> list[tuple[JsonObject, Cell]]:
    columns: list[tuple[JsonObject, Cell]] = []
    specs = (resource.crd_version or {}).get("additionalPrinterColumns")
    if specs is None:
        return [(_AGE_COLUMN, lambda o: age(o["metadata"].get("creationTimestamp")))]
    for spec in specs:
        path = spec.get("jsonPath", "")
        definition = {
            "name": spec.get("name", ""),
            "type": spec.get("type", "string"),
            "format": spec.get("format", ""),
            "description": spec.get("description", ""),
            "priority": spec.get("priority", 0),
        }
        if path == ".metadata.creationTimestamp" and spec.get("type") == "date":
            columns.append((definition, lambda o: age(o["metadata"].get("creationTimestamp"))))
        else:
            columns.append((definition, _path_cell(path, spec.get("type") == "date")))
    return columns


def _path_cell(path: str, is_date: bool) -> Cell:
    def cell(obj: JsonObject) -> Any:
        value = jsonpath(obj, path)
        return age(str(value)) if is_date and value else value

    return cell


def columns(resource: ResourceType) -> list[tuple[JsonObject, Cell]]:
    rest = _custom_columns(resource) if resource.is_custom else _builtin_columns(resource)
    return [(_NAME_COLUMN, lambda o: o["metadata"]["name"]), *rest]


def _row_object(obj: JsonObject, include: str) -> JsonObject | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}


def table(
    resource: ResourceType,
    objects: list[JsonObject],
    list_meta: JsonObject,
    include: str,
    with_columns: bool = True,
) -> JsonObject:
    """A Table of ``objects``; ``include`` is the ``includeObject`` parameter (None/Metadata/Object)."""
    chosen = columns(resource)
    rows = []
    for obj in objects:
        row: JsonObject = {"cells": [_cell(cell, obj) for _, cell in chosen]}
        embedded = _row_object(obj, include)
        if embedded is not None:
            row["object"] = embedded
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": [definition for definition, _ in chosen] if with_columns else [],
        "rows": rows,
    }


def _cell(cell: Cell, obj: JsonObject) -> Any:
    try:
        return cell(obj)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
