"""A small TOML writer for the config files kohya and diffusion-pipe read.

Python ships a TOML reader (``tomllib``) but no writer, and the trainer image should not need an
extra package for a few flat files. Supports what those files use: strings, numbers, booleans,
arrays of scalars, tables and arrays of tables.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any


class TomlError(ValueError):
    """A value that TOML cannot represent (None, NaN, a nested list of tables, ...)."""


def _key(name: str) -> str:
    if name and all(c.isalnum() or c in "-_" for c in name):
        return name
    return json.dumps(name)


def _scalar(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise TomlError(f"{where}: {value} cannot be written to TOML")
        return repr(value)
    if isinstance(value, str):
        # JSON string escapes are a subset of TOML basic-string escapes.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        if any(isinstance(item, Mapping) for item in value):
            raise TomlError(f"{where}: a list mixing tables and values cannot be written inline")
        return "[" + ", ".join(_scalar(item, where) for item in value) + "]"
    if value is None:
        raise TomlError(f"{where}: TOML has no null; leave the key out instead")
    raise TomlError(f"{where}: unsupported value of type {type(value).__name__}")


def _is_table_list(value: Any) -> bool:
    return (
        isinstance(value, list | tuple) and bool(value) and all(isinstance(item, Mapping) for item in value)
    )


def _write_table(lines: list[str], table: Mapping[str, Any], path: list[str]) -> None:
    nested: list[tuple[str, Any]] = []
    for name, value in table.items():
        if isinstance(value, Mapping) or _is_table_list(value):
            nested.append((name, value))
        else:
            lines.append(f"{_key(name)} = {_scalar(value, '.'.join([*path, name]))}")
    for name, value in nested:
        sub_path = [*path, name]
        header = ".".join(_key(part) for part in sub_path)
        if isinstance(value, Mapping):
            lines.extend(["", f"[{header}]"])
            _write_table(lines, value, sub_path)
        else:
            for item in value:
                lines.extend(["", f"[[{header}]]"])
                _write_table(lines, item, sub_path)


def dumps(document: Mapping[str, Any]) -> str:
    """Serialise a mapping to TOML text (raises :class:`TomlError` for unsupported values)."""
    lines: list[str] = []
    _write_table(lines, document, [])
    return "\n".join(lines).lstrip("\n") + "\n"
