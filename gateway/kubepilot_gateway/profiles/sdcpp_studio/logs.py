"""The application log (SD-33, ``GET /api/logs``): what the product's ``queueProcessor`` /
``modelManager`` / ``routes`` loggers would have said, rebuilt from two sources.

- **The jobs' own story**, from the cluster: every GenerationJob of this profile carries the
  conditions the operator recorded (scheduled, running, succeeded, failed, cancelled), so those
  lines survive a gateway restart and every replica shows the same ones (module
  ``queueProcessor``).
- **The gateway's own actions** for this profile (a job queued, cancelled or deleted, a model
  started or stopped, a download started or cancelled, a request refused), kept in a bounded ring
  in this process (``logRingSize`` lines; lost on restart, as the product's in-memory tail is) and
  also written to the ``kubepilot_gateway.profiles.sdcpp_studio`` Python logger.

Service pods' logs are not mixed in: a model's server log belongs to that model (a per-service
log endpoint would be the place), and reading pods' logs per request would not scale.

Entries are ``{timestamp, level, message, module}`` with ISO times in milliseconds and ``Z``,
oldest first; ``limit`` keeps the newest ones.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from kubepilot_gateway.profiles.sdcpp_studio import jobs as tr

JsonObject = dict[str, Any]
LOGGER = logging.getLogger("kubepilot_gateway.profiles.sdcpp_studio")
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def normalized(stamp: Any) -> str:
    """An RFC 3339 time as ISO with milliseconds and ``Z`` (unparsable ones as they are)."""
    try:
        return iso(datetime.fromisoformat(str(stamp).replace("Z", "+00:00")))
    except ValueError:
        return str(stamp or "")


class LogRing:
    """The newest ``size`` lines the gateway wrote for this profile."""

    def __init__(self, size: int) -> None:
        self._lines: deque[JsonObject] = deque(maxlen=size)

    def add(self, level: str, module: str, message: str) -> None:
        self._lines.append(
            {"timestamp": iso(datetime.now(UTC)), "level": level, "message": message, "module": module}
        )
        LOGGER.log(LEVELS.get(level, logging.INFO), "%s: %s", module, message)

    def lines(self) -> list[JsonObject]:
        return list(self._lines)


def job_lines(jobs: Iterable[JsonObject]) -> list[JsonObject]:
    """The jobs' conditions as log lines (module ``queueProcessor``)."""
    lines = []
    for cr in jobs:
        name = str((cr.get("metadata") or {}).get("name"))
        for entry in tr.generation_logs(cr)["logs"]:
            lines.append(
                {
                    "timestamp": normalized(entry["timestamp"]),
                    "level": entry["level"],
                    "message": f"Job {name}: {entry['message']}",
                    "module": "queueProcessor",
                }
            )
    return lines


def application_log(ring: LogRing, jobs: Iterable[JsonObject], limit: int) -> JsonObject:
    """``{"logs": [...]}``: both sources merged by time, the newest ``limit`` lines, oldest first."""
    merged = sorted([*ring.lines(), *job_lines(jobs)], key=lambda line: str(line["timestamp"]))
    return {"logs": merged[-limit:] if limit > 0 else []}
