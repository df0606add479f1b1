"""The external trainer as a child process: its own process group, its output as lines, a full log.

tqdm redraws its bar with carriage returns and no newline, so output is split on both ``\\r`` and
``\\n``. Every newline-terminated line goes to the log; bar redraws go at most once a second so a
long run does not write gigabytes of identical bars.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

READ_CHUNK = 65536
BAR_LOG_INTERVAL_SECONDS = 1.0


@dataclass
class LaunchPlan:
    """How to run one tool: the command line, where, with which extra environment."""

    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    """Config files the adapter wrote (for the log and the tests)."""


class LaunchError(Exception):
    """The tool could not be started at all (missing executable, bad working directory)."""


class ToolProcess:
    """A running tool whose output lines are handed to a callback from a reader thread."""

    def __init__(self, plan: LaunchPlan, log_path: Path, on_line: Callable[[str], None]) -> None:
        self.plan = plan
        self._on_line = on_line
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[str] = log_path.open("a", encoding="utf-8")
        self._log.write(f"$ {' '.join(plan.argv)}\n(cwd {plan.cwd})\n")
        self._log.flush()
        env = {**os.environ, **plan.env, "PYTHONUNBUFFERED": "1"}
        try:
            self._popen = subprocess.Popen(
                plan.argv,
                cwd=plan.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as error:
            self._log.write(f"could not start: {error}\n")
            self._log.close()
            raise LaunchError(f"could not start {plan.argv[0]!r}: {error.strerror or error}") from error
        self._last_bar_logged = 0.0
        self._reader = threading.Thread(target=self._read, name="trainer-output", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self._popen.pid

    def poll(self) -> int | None:
        return self._popen.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code, or None if it is still running after ``timeout`` seconds."""
        try:
            code = self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reader.join(timeout=5)
        return code

    def signal_group(self, signum: int) -> bool:
        """Send a signal to the tool's whole process group (launchers fork the real trainer)."""
        if self._popen.poll() is not None:
            return False
        try:
            os.killpg(self._popen.pid, signum)
        except ProcessLookupError:
            return False
        log.info("sent %s to the trainer's process group %d", signal.Signals(signum).name, self._popen.pid)
        return True

    def terminate(self, grace_seconds: float, first_signal: int = signal.SIGTERM) -> int:
        """Signal the group, wait up to the grace period, then SIGKILL; returns the exit code."""
        self.signal_group(first_signal)
        code = self.wait(grace_seconds)
        if code is None:
            self.signal_group(signal.SIGKILL)
            code = self._popen.wait()
        return code

    def close(self) -> None:
        if self._popen.poll() is None:
            self.terminate(5)
        self._reader.join(timeout=5)
        if not self._log.closed:
            self._log.close()

    def _read(self) -> None:
        stdout = self._popen.stdout
        assert stdout is not None
        fd = stdout.fileno()
        pending = b""
        while True:
            chunk = os.read(fd, READ_CHUNK)
            if not chunk:
                break
            pending += chunk
            pending = self._split(pending)
        if pending:
            self._emit(pending, bar=False)
        stdout.close()
        self._log.flush()

    def _split(self, data: bytes) -> bytes:
        start = 0
        for index, byte in enumerate(data):
            if byte in (0x0A, 0x0D):
                if index > start:
                    self._emit(data[start:index], bar=byte == 0x0D)
                start = index + 1
        return data[start:]

    def _emit(self, raw: bytes, *, bar: bool) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip()
        if not line.strip():
            return
        now = time.monotonic()
        if not bar or now - self._last_bar_logged >= BAR_LOG_INTERVAL_SECONDS:
            if bar:
                self._last_bar_logged = now
            self._log.write(line + "\n")
            if not bar:
                self._log.flush()
        try:
            self._on_line(line)
        except Exception:  # a parser bug must not stop the log or the run
            log.exception("could not parse trainer output line")
