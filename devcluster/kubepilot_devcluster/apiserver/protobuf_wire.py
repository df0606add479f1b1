"""Protobuf wire-format reading, and the Kubernetes envelope (``k8s\\x00`` + runtime.Unknown).

Only decoding is needed: ``kubectl create <kind>`` sends typed objects as protobuf and does not
fall back to JSON on 415, so the server reads those bodies (see :mod:`.protobuf_kinds`).
"""

from __future__ import annotations

from dataclasses import dataclass

MAGIC = b"k8s\x00"


class WireError(ValueError):
    """The bytes are not valid protobuf (or not the Kubernetes envelope)."""


@dataclass(frozen=True)
class WireField:
    number: int
    wire_type: int  # 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32
    value: int | bytes


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if position >= len(data):
            raise WireError("truncated varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
        if shift > 70:
            raise WireError("varint too long")


def read_fields(data: bytes) -> list[WireField]:
    """Every top-level field of one message, in order."""
    fields = []
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire_type = key >> 3, key & 7
        value: int | bytes
        if wire_type == 0:
            value, position = _varint(data, position)
        elif wire_type == 1:
            value = int.from_bytes(data[position : position + 8], "little")
            position += 8
        elif wire_type == 2:
            length, position = _varint(data, position)
            if position + length > len(data):
                raise WireError("truncated length-delimited field")
            value = data[position : position + length]
            position += length
        elif wire_type == 5:
            value = int.from_bytes(data[position : position + 4], "little")
            position += 4
        else:
            raise WireError(f"unsupported wire type {wire_type}")
        if number == 0:
            raise WireError("field number 0")
        fields.append(WireField(number, wire_type, value))
    return fields


def signed64(value: int) -> int:
    """A varint read as int64 (two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclass(frozen=True)
class Envelope:
    api_version: str
    kind: str
    raw: bytes


def unwrap(body: bytes) -> Envelope:
    """Split the ``k8s\\x00`` envelope: runtime.Unknown{typeMeta{apiVersion=1, kind=2}=1, raw=2}."""
    if not body.startswith(MAGIC):
        raise WireError("missing the k8s protobuf envelope prefix")
    api_version = kind = ""
    raw = b""
    for field in read_fields(body[len(MAGIC) :]):
        if field.number == 1 and isinstance(field.value, bytes):
            for meta in read_fields(field.value):
                if meta.number == 1 and isinstance(meta.value, bytes):
                    api_version = meta.value.decode()
                elif meta.number == 2 and isinstance(meta.value, bytes):
                    kind = meta.value.decode()
        elif field.number == 2 and isinstance(field.value, bytes):
            raw = field.value
    return Envelope(api_version, kind, raw)
