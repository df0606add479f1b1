"""Turning a container spec into a local process, and running/stopping that process.

A container runs when its image matches an entry of node.yaml's image mapping: its ``command`` (or the
mapping's default ``command``) plus ``args``, after $(VAR) expansion and mountPath rewriting, is executed
with the kubelet's own Python environment (``python``/``python3`` mean ``sys.executable``; the venv's bin
directory leads ``PATH``). Each process gets its own session so that signals reach its whole group.

The process inherits the kubelet's environment (minus ``KUBECONFIG``), then gets ``HOSTNAME``,
``KUBERNETES_SERVICE_HOST``/``PORT`` (the API server), ``KUBEPILOT_VOLUME_<NAME>``, the GPU variables of
:mod:`.gpus` and finally the container's own env. stdout and stderr go to the container log file. The
``terminationMessagePath`` (default ``/dev/termination-log``) is rewritten like a mountPath to a per-container
file whose path is also exported as ``KUBEPILOT_TERMINATION_MESSAGE_PATH``. Exit codes follow Kubernetes
(128+signal); an out-of-memory kill cannot be told from any other SIGKILL here, so it is reported as
``Error``, never ``OOMKilled``; memory and CPU limits are not enforced.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import NodeConfig
from .env import expand
from .orphans import forget_process, record_process
from .volumes import Mount, rewrite_paths

JsonObject = dict[str, Any]
PYTHON_NAMES = ("python", "python3", f"python3.{sys.version_info.minor}")
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
# Inherited from the kubelet so that the venv keeps working; KUBECONFIG is dropped on purpose.
_DROPPED_ENV = ("KUBECONFIG",)


class ImageNotRunnable(Exception):
    """The kubelet has no way to run this image (reason ErrImageNeverPull)."""


class CreateContainerError(Exception):
    """The container cannot be started as specified (reason CreateContainerError)."""


@dataclass(frozen=True)
class LaunchPlan:
    """Everything needed to start one container process."""

    argv: list[str]
    env: dict[str, str]
    cwd: str | None


def base_environment(pod_name: str) -> dict[str, str]:
    """The environment every container starts from: the kubelet's, minus client config, plus HOSTNAME."""
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    env["HOSTNAME"] = pod_name
    env["PYTHONUNBUFFERED"] = "1"
    return env


def plan_launch(
    container: JsonObject,
    config: NodeConfig,
    container_env: dict[str, str],
    base_env: dict[str, str],
    mounts: list[Mount],
) -> LaunchPlan:
    """Resolve the argv, environment and working directory of a container."""
    image = str(container.get("image", ""))
    mapping = config.image_mapping(image)
    if mapping is None:
        raise ImageNotRunnable(
            f"image {image} is not runnable by the devcluster kubelet; map it in node.yaml (images: pattern)"
        )
    command = [str(c) for c in container.get("command") or []] or list(mapping.command)
    if not command:
        raise CreateContainerError(
            f"container {container.get('name')!r} has no command and image {image} has no default command "
            "in node.yaml"
        )
    env = {k: rewrite_paths(v, mounts) for k, v in container_env.items()}
    argv = [
        rewrite_paths(expand(part, env), mounts)
        for part in command + [str(a) for a in container.get("args") or []]
    ]
    if argv[0] in PYTHON_NAMES:
        argv[0] = sys.executable
    argv = list(mapping.prefix) + argv
    cwd = container.get("workingDir")
    real_cwd = rewrite_paths(str(cwd), mounts) if cwd else None
    if real_cwd is not None and not Path(real_cwd).is_dir():
        raise CreateContainerError(f"workingDir {cwd} does not exist on the devcluster host")
    return LaunchPlan(argv, base_env | env, real_cwd)


class ContainerProcess:
    """One run of a container: a local process whose stdout+stderr go to the container's log file."""

    def __init__(self, proc: asyncio.subprocess.Process, pid_path: Path | None = None) -> None:
        self.proc = proc
        self.stopping = False
        self.pid_path = pid_path

    @classmethod
    async def start(cls, plan: LaunchPlan, log_path: Path, pid_path: Path | None = None) -> ContainerProcess:
        """Start the process (recording its pid at ``pid_path``); CreateContainerError when it cannot run."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log_file:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *plan.argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=asyncio.subprocess.STDOUT,
                    env=plan.env,
                    cwd=plan.cwd,
                    start_new_session=True,
                )
            except OSError as err:
                raise CreateContainerError(f"cannot start {plan.argv[0]!r}: {err.strerror or err}") from err
        if pid_path is not None:
            record_process(pid_path, proc.pid)
        return cls(proc, pid_path)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def wait(self) -> int:
        """The container's exit code as Kubernetes reports it (128+signal for a signal)."""
        code = await self.proc.wait()
        if self.pid_path is not None:
            forget_process(self.pid_path)
        return 128 - code if code < 0 else code

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    async def stop(self, grace_seconds: float) -> None:
        """SIGTERM the process group, wait up to the grace period, then SIGKILL it."""
        self.stopping = True
        if self.proc.returncode is None:
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), timeout=max(grace_seconds, 0.0))
        # Children that outlived the leader still belong to the group.
        self._signal_group(signal.SIGKILL)
        await self.proc.wait()


def rotate_log(log_path: Path, previous_path: Path) -> None:
    """Keep the last run's log as the 'previous' log before a restart."""
    if log_path.exists():
        log_path.replace(previous_path)


def read_termination_message(path: Path, log_path: Path, policy: str, exit_code: int) -> str:
    """The termination message: the file's content, or the log's tail with FallbackToLogsOnError."""
    message = ""
    with contextlib.suppress(OSError):
        message = path.read_bytes()[:4096].decode("utf-8", errors="replace")
    if not message and policy == "FallbackToLogsOnError" and exit_code != 0:
        with contextlib.suppress(OSError):
            lines = log_path.read_bytes()[-2048:].decode("utf-8", errors="replace").splitlines()[-80:]
            message = "\n".join(lines)
    return message
