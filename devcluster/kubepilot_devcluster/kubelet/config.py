"""The node's configuration, read from ``<data_dir>/node.yaml`` (written with defaults when absent).

Example::

    nodeName: devcluster-node
    capacity: {cpu: "2", memory: 8Gi, pods: "110", nvidia.com/gpu: "0"}
    crashLoopBackoff: {initialSeconds: 1, maxSeconds: 10}
    images:
      - pattern: "kubepilot/*"        # fnmatch pattern on the image reference
      - pattern: "python:*"
        prefix: []                     # optional command put in front of the container's command
        command: ["python"]            # optional default entrypoint when the container gives no command

An image matching no pattern is not runnable: its containers stay Waiting with reason ErrImageNeverPull.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .quantity import parse_quantity
from .scheduler import host_capacity

DEFAULT_NODE_NAME = "devcluster-node"
DEFAULT_IMAGE_PATTERNS = ("kubepilot/*", "*/kubepilot/*", "*/kubepilot-*", "kubepilot-*")


class NodeConfigError(ValueError):
    """node.yaml is malformed; the message names the offending field."""


@dataclass(frozen=True)
class ImageMapping:
    """How containers of images matching ``pattern`` are run locally."""

    pattern: str
    prefix: tuple[str, ...] = ()
    command: tuple[str, ...] = ()

    def matches(self, image: str) -> bool:
        return fnmatch.fnmatchcase(image, self.pattern)


@dataclass(frozen=True)
class NodeConfig:
    """Node name, capacity, image mapping and restart backoff of the devcluster's single node."""

    node_name: str = DEFAULT_NODE_NAME
    capacity: dict[str, str] = field(
        default_factory=lambda: host_capacity() | {"pods": "110", "nvidia.com/gpu": "0"}
    )
    images: tuple[ImageMapping, ...] = tuple(ImageMapping(p) for p in DEFAULT_IMAGE_PATTERNS)
    backoff_initial_seconds: float = 1.0
    backoff_max_seconds: float = 10.0

    def image_mapping(self, image: str) -> ImageMapping | None:
        """The first mapping whose pattern matches the image, if any."""
        return next((m for m in self.images if m.matches(image)), None)

    def to_yaml(self) -> dict[str, Any]:
        return {
            "nodeName": self.node_name,
            "capacity": dict(self.capacity),
            "crashLoopBackoff": {
                "initialSeconds": self.backoff_initial_seconds,
                "maxSeconds": self.backoff_max_seconds,
            },
            "images": [
                {"pattern": m.pattern, **({"prefix": list(m.prefix)} if m.prefix else {})}
                | ({"command": list(m.command)} if m.command else {})
                for m in self.images
            ],
        }


def _string_list(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise NodeConfigError(f"node.yaml: {where} must be a list of strings")
    return tuple(value)


def parse_node_config(raw: object) -> NodeConfig:
    """Validate a loaded node.yaml document."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise NodeConfigError("node.yaml must be a mapping")
    defaults = NodeConfig()
    name = raw.get("nodeName", defaults.node_name)
    if not isinstance(name, str) or not name:
        raise NodeConfigError("node.yaml: nodeName must be a non-empty string")
    capacity = dict(defaults.capacity)
    cap_raw = raw.get("capacity") or {}
    if not isinstance(cap_raw, dict):
        raise NodeConfigError("node.yaml: capacity must be a mapping")
    for key, value in cap_raw.items():
        try:
            parse_quantity(value)
        except ValueError as err:
            raise NodeConfigError(f"node.yaml: capacity.{key}: {err}") from err
        capacity[str(key)] = str(value)
    images = defaults.images
    if "images" in raw:
        entries = raw["images"] or []
        if not isinstance(entries, list):
            raise NodeConfigError("node.yaml: images must be a list")
        parsed: list[ImageMapping] = []
        for index, entry in enumerate(entries):
            if isinstance(entry, str):
                entry = {"pattern": entry}
            if not isinstance(entry, dict) or not isinstance(entry.get("pattern"), str):
                raise NodeConfigError(f"node.yaml: images[{index}] needs a string 'pattern'")
            parsed.append(
                ImageMapping(
                    entry["pattern"],
                    _string_list(entry.get("prefix"), f"images[{index}].prefix"),
                    _string_list(entry.get("command"), f"images[{index}].command"),
                )
            )
        images = tuple(parsed)
    backoff = raw.get("crashLoopBackoff") or {}
    try:
        initial = float(backoff.get("initialSeconds", defaults.backoff_initial_seconds))
        maximum = float(backoff.get("maxSeconds", defaults.backoff_max_seconds))
    except (TypeError, ValueError, AttributeError) as err:
        raise NodeConfigError("node.yaml: crashLoopBackoff seconds must be numbers") from err
    return NodeConfig(name, capacity, images, max(initial, 0.0), max(maximum, initial, 0.0))


def load_node_config(data_dir: Path) -> NodeConfig:
    """Read ``node.yaml`` from the data dir, writing the defaults there first when it is absent."""
    path = data_dir / "node.yaml"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".yaml.tmp")
        tmp.write_text(yaml.safe_dump(NodeConfig().to_yaml(), sort_keys=False))
        tmp.replace(path)
        return NodeConfig()
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise NodeConfigError(f"node.yaml is not valid YAML: {err}") from err
    return parse_node_config(raw)
