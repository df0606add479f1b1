"""The dashboard's system figures: the node agents' (a real agent process), else the gateway host's."""

from __future__ import annotations

from pathlib import Path

import psutil

from kubepilot_gateway.profiles.comfyui_docker.resources import node_figures, read_usage
from kubepilot_gateway.profiles.controlpilot.telemetry import AgentSnapshot, NodeAgents
from tests.gateway.nodeagent_process import Agent


def test_gpu_use_is_the_mean_of_every_gpu_the_agents_report() -> None:
    snapshots = [
        AgentSnapshot.model_validate(
            {
                "cpu": {"percent": 12.5, "count": 8},
                "memory": {"usedBytes": 25, "totalBytes": 100, "availableBytes": 75},
                "gpus": [{"index": 0, "utilizationPercent": 30.0}, {"index": 1, "utilizationPercent": None}],
            }
        ),
        AgentSnapshot.model_validate({"gpus": [{"index": 0, "utilizationPercent": 50.0}]}),
    ]
    assert node_figures(snapshots) == (12.5, 25.0, 40.0)
    assert node_figures([]) == (None, None, None)


async def test_the_figures_come_from_the_agent_and_from_this_host_without_one(
    agent: Agent, tmp_path: Path
) -> None:
    from_agent = await read_usage(NodeAgents([agent.url], 5), tmp_path)
    memory = agent.snapshot()["memory"]
    assert abs(from_agent.memory_percent - memory["usedBytes"] * 100 / memory["totalBytes"]) <= 3
    assert from_agent.gpu_percent == 0  # this machine's agent reports no GPU
    assert from_agent.disk_total > 0 and 0 <= from_agent.disk_percent <= 100

    alone = await read_usage(NodeAgents(["http://127.0.0.1:9"], 1), tmp_path)
    assert abs(alone.memory_percent - psutil.virtual_memory().percent) <= 3 and alone.gpu_percent == 0
