"""Protobuf bodies of the kinds ``kubectl create <kind>`` sends, decoded into JSON objects.

kubectl's typed clients (``create namespace|configmap|secret|serviceaccount|deployment|job|service``)
send ``application/vnd.kubernetes.protobuf`` and do not retry as JSON, so the server decodes the
fields those commands fill. Field numbers are the Kubernetes wire protocol. A non-empty field this
table does not know makes the request fail with 415 (asking for JSON) instead of losing data.
"""

from __future__ import annotations

import base64
from typing import Any

from kubepilot_devcluster.apiserver.errors import ApiError
from kubepilot_devcluster.apiserver.protobuf_wire import WireError, WireField, read_fields, signed64, unwrap

JsonObject = dict[str, Any]

# message -> field number -> (json name, type). Types: str, int, bool, bytes (base64 in JSON),
# "[]T" repeated, "map:T" map<string,T>, "msg:Name" nested message, "intstr", "quantity"; a "?" suffix
# marks Go pointer fields, which are sent only when set, so their zero values are kept.
_MESSAGES: dict[str, dict[int, tuple[str, str]]] = {
    "ObjectMeta": {
        1: ("name", "str"),
        2: ("generateName", "str"),
        3: ("namespace", "str"),
        11: ("labels", "map:str"),
        12: ("annotations", "map:str"),
        14: ("finalizers", "[]str"),
    },
    "Namespace": {1: ("metadata", "msg:ObjectMeta"), 2: ("spec", "msg:NamespaceSpec")},
    "NamespaceSpec": {1: ("finalizers", "[]str")},
    "ConfigMap": {
        1: ("metadata", "msg:ObjectMeta"),
        2: ("data", "map:str"),
        3: ("binaryData", "map:bytes"),
        4: ("immutable", "bool?"),
    },
    "Secret": {
        1: ("metadata", "msg:ObjectMeta"),
        2: ("data", "map:bytes"),
        3: ("type", "str"),
        4: ("stringData", "map:str"),
        5: ("immutable", "bool?"),
    },
    "ServiceAccount": {1: ("metadata", "msg:ObjectMeta"), 4: ("automountServiceAccountToken", "bool?")},
    "Service": {1: ("metadata", "msg:ObjectMeta"), 2: ("spec", "msg:ServiceSpec")},
    "ServiceSpec": {
        1: ("ports", "[]msg:ServicePort"),
        2: ("selector", "map:str"),
        3: ("clusterIP", "str"),
        4: ("type", "str"),
        7: ("sessionAffinity", "str"),
    },
    "ServicePort": {
        1: ("name", "str"),
        2: ("protocol", "str"),
        3: ("port", "int"),
        4: ("targetPort", "intstr"),
        5: ("nodePort", "int"),
    },
    "Deployment": {1: ("metadata", "msg:ObjectMeta"), 2: ("spec", "msg:DeploymentSpec")},
    "DeploymentSpec": {
        1: ("replicas", "int?"),
        2: ("selector", "msg:LabelSelector"),
        3: ("template", "msg:PodTemplateSpec"),
        4: ("strategy", "msg:DeploymentStrategy"),
        5: ("minReadySeconds", "int"),
        6: ("revisionHistoryLimit", "int?"),
        7: ("paused", "bool"),
        9: ("progressDeadlineSeconds", "int?"),
    },
    "DeploymentStrategy": {1: ("type", "str")},
    "Job": {1: ("metadata", "msg:ObjectMeta"), 2: ("spec", "msg:JobSpec")},
    "JobSpec": {
        1: ("parallelism", "int?"),
        2: ("completions", "int?"),
        3: ("activeDeadlineSeconds", "int?"),
        4: ("selector", "msg:LabelSelector"),
        5: ("manualSelector", "bool?"),
        6: ("template", "msg:PodTemplateSpec"),
        7: ("backoffLimit", "int?"),
        8: ("ttlSecondsAfterFinished", "int?"),
        9: ("completionMode", "str"),
        10: ("suspend", "bool?"),
    },
    "LabelSelector": {1: ("matchLabels", "map:str")},
    "PodTemplateSpec": {1: ("metadata", "msg:ObjectMeta"), 2: ("spec", "msg:PodSpec")},
    "PodSpec": {
        2: ("containers", "[]msg:Container"),
        3: ("restartPolicy", "str"),
        4: ("terminationGracePeriodSeconds", "int?"),
        5: ("activeDeadlineSeconds", "int?"),
        6: ("dnsPolicy", "str"),
        7: ("nodeSelector", "map:str"),
        8: ("serviceAccountName", "str"),
        10: ("nodeName", "str"),
        19: ("schedulerName", "str"),
        20: ("initContainers", "[]msg:Container"),
    },
    "Container": {
        1: ("name", "str"),
        2: ("image", "str"),
        3: ("command", "[]str"),
        4: ("args", "[]str"),
        5: ("workingDir", "str"),
        6: ("ports", "[]msg:ContainerPort"),
        7: ("env", "[]msg:EnvVar"),
        8: ("resources", "msg:ResourceRequirements"),
        13: ("terminationMessagePath", "str"),
        14: ("imagePullPolicy", "str"),
        16: ("stdin", "bool"),
        17: ("stdinOnce", "bool"),
        18: ("tty", "bool"),
        20: ("terminationMessagePolicy", "str"),
    },
    "ContainerPort": {
        1: ("name", "str"),
        2: ("hostPort", "int"),
        3: ("containerPort", "int"),
        4: ("protocol", "str"),
        5: ("hostIP", "str"),
    },
    "EnvVar": {1: ("name", "str"), 2: ("value", "str")},
    "ResourceRequirements": {1: ("limits", "map:quantity"), 2: ("requests", "map:quantity")},
}

_KINDS = {"Namespace", "ConfigMap", "Secret", "ServiceAccount", "Service", "Deployment", "Job"}


def _unsupported(message: str) -> ApiError:
    return ApiError(
        "UnsupportedMediaType",
        f"{message}; the devcluster reads protobuf only for the kinds "
        f"`kubectl create` sends - send application/json",
        code=415,
    )


def _is_empty(field: WireField) -> bool:
    """Go's zero values: 0, empty bytes, or a message whose fields are all zero."""
    if isinstance(field.value, int):
        return field.value == 0
    if not field.value:
        return True
    try:
        nested = read_fields(field.value)
    except WireError:
        return False
    return all(_is_empty(f) for f in nested)


def _scalar(kind: str, field: WireField) -> Any:
    value = field.value
    if kind == "str" and isinstance(value, bytes):
        return value.decode()
    if kind == "bytes" and isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if kind == "int" and isinstance(value, int):
        return signed64(value)
    if kind == "bool" and isinstance(value, int):
        return bool(value)
    if kind == "quantity" and isinstance(value, bytes):
        return next(
            (f.value.decode() for f in read_fields(value) if f.number == 1 and isinstance(f.value, bytes)), ""
        )
    if kind == "intstr" and isinstance(value, bytes):
        parts = {f.number: f.value for f in read_fields(value)}
        if parts.get(1, 0) == 1 and isinstance(parts.get(3), bytes):
            return parts[3].decode()  # type: ignore[union-attr]
        return signed64(parts.get(2, 0)) if isinstance(parts.get(2, 0), int) else 0  # type: ignore[arg-type]
    if kind.startswith("msg:") and isinstance(value, bytes):
        return decode_message(kind[4:], value)
    raise _unsupported(f"unexpected wire type for a {kind} field")


def decode_message(message: str, data: bytes) -> JsonObject:
    """Decode one message by the table above, leaving out empty (Go zero) values like ``omitempty``."""
    table = _MESSAGES[message]
    result: JsonObject = {}
    for field in read_fields(data):
        entry = table.get(field.number)
        if entry is None:
            if _is_empty(field):
                continue
            raise _unsupported(f"protobuf field {field.number} of {message} is not understood")
        name, kind = entry
        if kind.startswith("[]"):
            result.setdefault(name, []).append(_scalar(kind[2:], field))
        elif kind.startswith("map:"):
            assert isinstance(field.value, bytes)
            pair = {f.number: f for f in read_fields(field.value)}
            key = pair[1].value.decode() if 1 in pair and isinstance(pair[1].value, bytes) else ""
            default: Any = "" if kind[4:] in ("str", "bytes", "quantity") else None
            result.setdefault(name, {})[key] = _scalar(kind[4:], pair[2]) if 2 in pair else default
        elif kind.endswith("?"):
            result[name] = _scalar(kind[:-1], field)
        elif not _is_empty(field):
            result[name] = _scalar(kind, field)
    return result


def decode(body: bytes, expected_api_version: str, expected_kind: str) -> JsonObject:
    """A Kubernetes protobuf request body as a JSON object of the expected kind."""
    try:
        envelope = unwrap(body)
        if envelope.kind not in _KINDS:
            raise _unsupported(f"protobuf bodies of kind {envelope.kind or '?'} are not read")
        obj = decode_message(envelope.kind, envelope.raw)
    except (WireError, UnicodeDecodeError, KeyError, AssertionError) as error:
        raise _unsupported(f"the protobuf body could not be read ({error})") from error
    obj["apiVersion"] = envelope.api_version or expected_api_version
    obj["kind"] = envelope.kind or expected_kind
    return obj
