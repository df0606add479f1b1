"""Container process groups recorded on disk, so that a kubelet restarted after a crash kills what it left.

Each running container has ``<pod dir>/<container>.pid`` holding its pid and the process start time (from
``/proc``); the start time guards against killing an unrelated process that reused the pid.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from pathlib import Path

log = logging.getLogger(__name__)


def process_start_time(pid: int) -> str | None:
    """The process' start time in clock ticks since boot, or None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces; the fields after its closing parenthesis are fixed.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def record_process(pid_path: Path, pid: int) -> None:
    start = process_start_time(pid)
    if start is not None:
        with contextlib.suppress(OSError):
            pid_path.write_text(f"{pid} {start}\n")


def forget_process(pid_path: Path) -> None:
    pid_path.unlink(missing_ok=True)


def reap_orphans(data_dir: Path) -> int:
    """SIGKILL the process groups of containers a previous kubelet left running; returns how many."""
    reaped = 0
    for pid_path in (data_dir / "pods").glob("*/*.pid"):
        try:
            pid_text, start = pid_path.read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            forget_process(pid_path)
            continue
        if process_start_time(pid) == start:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
                reaped += 1
        forget_process(pid_path)
    if reaped:
        log.warning("killed %d container process group(s) left by a previous kubelet", reaped)
    return reaped
