"""The stack's child processes: each in its own process group, its output in a log file, stopped
gently (SIGTERM to the group) and then firmly (SIGKILL) so that nothing is left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

STOP_GRACE_SECONDS = 20.0


class ChildFailed(RuntimeError):
    """A child exited or never became ready; the message carries the end of its log."""


@dataclass
class Child:
    """One ``kubepilot <command>`` process of the stack."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    offset: int = 0
    """Where this run's output starts in the log (earlier runs' output stays above it)."""

    @classmethod
    def kubepilot(cls, name: str, args: Sequence[str], logs: Path, env: dict[str, str]) -> Child:
        """``kubepilot <args>`` run with this interpreter (the stack needs no PATH set up)."""
        argv = [sys.executable, "-m", "kubepilot_api.cli", *args]
        return cls(name, argv, logs / f"{name}.log", env)

    def start(self) -> Child:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.offset = log.tell()
            log.write(f"\n== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(self.argv)}\n".encode())
            log.flush()
            # Its own session: Ctrl-C in the terminal reaches only us, and we stop the children in
            # order (the gateway before the cluster it watches), each with its whole group.
            self.process = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def output(self) -> str:
        """Everything this run of the child has written so far."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self.offset)
                return log.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``ready`` until it holds; fail early when the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.exit_code()
            if code is not None:
                raise ChildFailed(f"{self.name} exited with {code} before {what}:\n{self.log_tail()}")
            if ready():
                return
            time.sleep(0.2)
        raise ChildFailed(f"{self.name}: {what} not reached within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> int | None:
        """SIGTERM the group, wait up to ``grace``, then SIGKILL it; the exit code."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(grace)
        # Kill whatever is still in the group (a child process the command started) either way.
        _signal_group(process.pid, signal.SIGKILL)
        return process.wait()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
