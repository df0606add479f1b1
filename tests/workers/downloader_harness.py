"""Drive the downloader in tests: config, pod environment, intake registration, in-process or subprocess.

Pairs with :mod:`tests.workers.hubfake` (the source side) and :mod:`tests.workers.intake` (the
operator side), so a test reads as "publish files, run a pull, look at the files and reports".
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kubepilot_api.workers.progress import ReportBase
from tests.workers.intake import ContractIntake


class PullHarness:
    """Config, environment and intake registration for one downloader run in ``root`` (tests)."""

    def __init__(
        self,
        root: Path,
        intake: ContractIntake,
        name: str = "pull",
        *,
        models: Path | None = None,
        target: Path | None = None,
    ) -> None:
        self.root = root
        self.intake = intake
        self.name = name
        self.models = models or root / "models"
        self.target = target or self.models / "checkpoints" / name
        self.store = self.models / ".store"
        self.termination = root / f"{name}.termination"
        self.config_path = root / f"{name}.json"
        token_file = root / f"{name}.intake-token"
        token_file.write_text("intake-secret")
        self.env: dict[str, str] = {
            "KUBEPILOT_TERMINATION_MESSAGE_PATH": str(self.termination),
            "KUBEPILOT_REPORT_URL": intake.register("ns", "modelpulls", name, "intake-secret"),
            "KUBEPILOT_TOKEN_FILE": str(token_file),
        }

    def write_config(self, source: dict[str, Any], *, token: str | None = None, **extra: Any) -> Path:
        config: dict[str, Any] = {
            "workload": {"kind": "ModelPull", "namespace": "ns", "name": self.name},
            "source": source,
            "modelsRoot": str(self.models),
            "targetDir": str(self.target),
            "storeDir": str(self.store),
        } | extra
        if token is not None:
            secret = self.root / f"{self.name}.source-token"
            secret.write_text(token + "\n")
            config["tokenFile"] = str(secret)
        self.config_path.write_text(json.dumps(config))
        return self.config_path

    def run(self) -> int:
        """Run the downloader in this process (its ``main``), with the pod's environment."""
        from kubepilot_workers.downloader.cli import main as downloader_main

        with _environment(self.env):
            return downloader_main(["--config", str(self.config_path)])

    def spawn(self) -> subprocess.Popen[bytes]:
        """Run the downloader as a real process, as in the pod."""
        return subprocess.Popen(
            [sys.executable, "-m", "kubepilot_workers.downloader", "--config", str(self.config_path)],
            env={**os.environ, **self.env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def final(self) -> dict[str, Any]:
        """The termination message the run wrote."""
        result: dict[str, Any] = json.loads(self.termination.read_text())
        return result

    def reports(self) -> list[ReportBase]:
        return list(self.intake.workload("ns", "modelpulls", self.name).reports)

    def partials(self) -> list[Path]:
        folder = self.store / "partial"
        return sorted(folder.glob("*.part")) if folder.is_dir() else []


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` until true, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} not met within {timeout}s")
