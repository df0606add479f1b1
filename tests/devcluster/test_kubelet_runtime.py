"""The process runtime: launch plans, real processes, stop with SIGTERM then SIGKILL, termination messages."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from kubepilot_devcluster.kubelet.config import ImageMapping, NodeConfig
from kubepilot_devcluster.kubelet.orphans import reap_orphans
from kubepilot_devcluster.kubelet.runtime import (
    ContainerProcess,
    CreateContainerError,
    ImageNotRunnable,
    base_environment,
    plan_launch,
    read_termination_message,
    rotate_log,
)
from kubepilot_devcluster.kubelet.volumes import Mount

CONFIG = NodeConfig(
    images=(ImageMapping("kubepilot/*"), ImageMapping("tools:*", prefix=("env",), command=("true",)))
)


def test_python_resolves_to_this_interpreter_and_args_expand_and_rewrite() -> None:
    container = {
        "name": "c",
        "image": "kubepilot/worker:1",
        "command": ["python", "-m", "mod"],
        "args": ["--port=$(PORT)", "--config=/etc/app/c.yaml"],
    }
    plan = plan_launch(
        container, CONFIG, {"PORT": "8188", "CFG": "/etc/app"}, {"BASE": "1"}, [Mount("/etc/app", "/r")]
    )
    assert plan.argv == [sys.executable, "-m", "mod", "--port=8188", "--config=/r/c.yaml"]
    assert plan.env["CFG"] == "/r" and plan.env["BASE"] == "1"


def test_mapping_prefix_and_default_command_apply() -> None:
    plan = plan_launch({"name": "c", "image": "tools:2"}, CONFIG, {}, {}, [])
    assert plan.argv == ["env", "true"]


def test_unmapped_image_is_not_runnable_with_a_clear_message() -> None:
    with pytest.raises(
        ImageNotRunnable, match=r"image busybox:1\.36 is not runnable by the devcluster kubelet"
    ):
        plan_launch({"name": "c", "image": "busybox:1.36", "command": ["sh"]}, CONFIG, {}, {}, [])


def test_missing_command_and_working_dir_are_create_errors(tmp_path: Path) -> None:
    with pytest.raises(CreateContainerError, match="has no command"):
        plan_launch({"name": "c", "image": "kubepilot/x"}, CONFIG, {}, {}, [])
    with pytest.raises(CreateContainerError, match="workingDir /nowhere does not exist"):
        plan_launch(
            {"name": "c", "image": "kubepilot/x", "command": ["python"], "workingDir": "/nowhere"},
            CONFIG,
            {},
            {},
            [],
        )


async def test_process_logs_output_and_reports_exit_code(tmp_path: Path) -> None:
    log_path = tmp_path / "c.log"
    plan = plan_launch(
        {
            "name": "c",
            "image": "kubepilot/x",
            "command": ["python", "-c", "import sys; print('out'); sys.exit(3)"],
        },
        CONFIG,
        {},
        base_environment("p"),
        [],
    )
    proc = await ContainerProcess.start(plan, log_path)
    assert await proc.wait() == 3
    assert log_path.read_text() == "out\n"


async def test_stop_sends_sigterm_then_sigkill_after_grace(tmp_path: Path) -> None:
    script = (
        "import signal, time, sys\n"
        "signal.signal(signal.SIGTERM, lambda *a: print('got TERM', flush=True))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    plan = plan_launch(
        {"name": "c", "image": "kubepilot/x", "command": ["python", "-c", script]},
        CONFIG,
        {},
        base_environment("p"),
        [],
    )
    log_path = tmp_path / "c.log"
    proc = await ContainerProcess.start(plan, log_path)
    for _ in range(200):
        if "ready" in log_path.read_text():
            break
        await asyncio.sleep(0.05)
    began = time.monotonic()
    await proc.stop(0.5)
    assert 0.4 < time.monotonic() - began < 5
    assert await proc.wait() == 137
    assert "got TERM" in log_path.read_text()


async def test_missing_executable_is_a_create_error(tmp_path: Path) -> None:
    plan = plan_launch(
        {"name": "c", "image": "kubepilot/x", "command": ["no-such-binary-xyz"]}, CONFIG, {}, {}, []
    )
    with pytest.raises(CreateContainerError, match="cannot start 'no-such-binary-xyz'"):
        await ContainerProcess.start(plan, tmp_path / "c.log")


def test_termination_message_file_or_log_fallback(tmp_path: Path) -> None:
    term, log_path = tmp_path / "term", tmp_path / "c.log"
    log_path.write_text("line1\nboom\n")
    assert read_termination_message(term, log_path, "FallbackToLogsOnError", 1) == "line1\nboom"
    assert read_termination_message(term, log_path, "FallbackToLogsOnError", 0) == ""
    assert read_termination_message(term, log_path, "File", 1) == ""
    term.write_text("explicit")
    assert read_termination_message(term, log_path, "FallbackToLogsOnError", 1) == "explicit"
    rotate_log(log_path, tmp_path / "c.previous.log")
    assert not log_path.exists() and (tmp_path / "c.previous.log").read_text() == "line1\nboom\n"


async def test_a_restarted_kubelet_kills_process_groups_left_behind(tmp_path: Path) -> None:
    pid_path = tmp_path / "pods" / "ns_p_uid" / "main.pid"
    pid_path.parent.mkdir(parents=True)
    plan = plan_launch(
        {"name": "c", "image": "kubepilot/x", "command": ["python", "-c", "import time; time.sleep(60)"]},
        CONFIG,
        {},
        base_environment("p"),
        [],
    )
    proc = await ContainerProcess.start(plan, tmp_path / "c.log", pid_path)
    assert pid_path.read_text().split()[0] == str(proc.pid)
    # Another, unrelated record whose pid no longer matches its start time must be left alone.
    (pid_path.parent / "stale.pid").write_text(f"{proc.pid} 1\n")
    began = time.monotonic()
    assert reap_orphans(tmp_path) == 1
    assert await asyncio.wait_for(proc.wait(), 5) == 137
    assert time.monotonic() - began < 5
    assert list(pid_path.parent.glob("*.pid")) == []
