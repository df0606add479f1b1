"""Where ``kubepilot dev`` keeps things in its data folder, and the settings it writes for each
component there (rewritten at every start, so a changed flag takes effect; the cluster state in
the same folder is kept)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubepilot_dev import demo

VOLUMES = ("models", "datasets", "outputs")


@dataclass(frozen=True)
class Ports:
    """Every port the stack listens on (all on ``host``)."""

    cluster: int = 6443
    intake: int = 8081
    operator_health: int = 8082
    node_agent: int = 9400
    gateway: int = 9000


@dataclass(frozen=True)
class Layout:
    """The data folder: cluster state and kubeconfig, the three volumes, settings and logs."""

    root: Path

    @property
    def cluster(self) -> Path:
        return self.root / "cluster"

    @property
    def kubeconfig(self) -> Path:
        return self.cluster / "kubeconfig"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def settings(self) -> Path:
        return self.root / "settings"

    def volume(self, name: str) -> Path:
        return self.root / "volumes" / name

    def create(self) -> None:
        for folder in (self.cluster, self.logs, self.settings, *(self.volume(v) for v in VOLUMES)):
            folder.mkdir(parents=True, exist_ok=True)


def operator_settings(
    layout: Layout, ports: Ports, host: str, hf_endpoint: str, *, demo_models: bool = False
) -> dict[str, Any]:
    """The operator on this machine: volumes are host folders mounted at the same path (the
    devcluster runs pods as local processes), the intake on loopback."""

    def volume(name: str) -> dict[str, str]:
        path = str(layout.volume(name))
        return {"hostPath": path, "mountPath": path, "operatorPath": path}

    settings: dict[str, Any] = {
        "operatorNamespace": "default",
        "storage": {name: volume(name) for name in VOLUMES},
        "intake": {"host": host, "port": ports.intake},
        "healthPort": ports.operator_health,
        # Pods share this machine's network: a multi-pod TrainingRun's rank 0 listens on another
        # port than the Service in front of it.
        "rendezvous": {"servicePort": 29400, "listenPort": 29500},
    }
    if hf_endpoint:
        settings["huggingFaceEndpoint"] = hf_endpoint
    if demo_models:
        settings.update(demo.operator_settings())
    return settings


def node_agent_config(layout: Layout, ports: Ports, host: str) -> dict[str, Any]:
    return {
        "host": host,
        "port": ports.node_agent,
        "diskPaths": ["/", *(str(layout.volume(v)) for v in VOLUMES)],
    }


def gateway_settings(
    layout: Layout,
    ports: Ports,
    host: str,
    *,
    native: bool = True,
    controlpilot_ui: str = "",
    demo_models: bool = False,
) -> dict[str, Any]:
    agent = f"http://{host}:{ports.node_agent}"
    settings: dict[str, Any] = {
        "namespace": "default",
        "operatorNamespace": "default",
        "volumes": {name: str(layout.volume(name)) for name in VOLUMES},
        # ControlPilot's telemetry reads the node agent the stack runs.
        "profileSettings": {
            "controlpilot": {
                "system": {"nodeAgentUrls": [agent]},
                # ControlPilot's own web UI (LoRA Pilot's static folder), when the user has a copy.
                "ui": {"dir": controlpilot_ui},
                # The devcluster's node offers no GPU (its node.yaml says how to give it some): a run
                # asking for one would wait for ever, so the trainers run on the CPU here.
                "training": {"gpuCount": 0},
            },
            "onetrainer": {"training": {"gpuCount": 0}, "system": {"nodeAgentUrls": [agent]}},
            "comfyui-docker": {"nodeAgentUrls": [agent]},
        },
        "listeners": {"host": host, "combinedPort": ports.gateway, "native": native},
    }
    if demo_models:
        settings["profileSettings"].update(demo.profile_settings())
    return settings


def write_yaml(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def write_json(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return path
