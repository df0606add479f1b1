"""A finished run's record in its output folder, so that a rerun of its pod ends at once, unchanged.

A Job's pod can run again after it succeeded (a node drained at the wrong moment, a re-created Job,
a rerun by hand). Without a record it would find its checkpoints, resume from the newest, train on
and overwrite the final LoRA the operator already reported. ``run_complete.json`` is written,
atomically, once the final LoRA is in place; it holds the run's lineage and its final report. A later
run with the same lineage whose outputs still have their recorded sha256 sends that report again
(state Succeeded, the same outputs) without loading a model or touching a file. When an output is
gone or changed, or the lineage differs (``maxSteps`` raised), the record is passed over and the
run trains as it would without it.

This module stays free of torch: the check runs before the trainer's heavy imports.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kubepilot_api.common import now
from kubepilot_api.workers.config import TrainerConfig
from kubepilot_api.workers.progress import TrainingReport

log = logging.getLogger(__name__)

COMPLETE_FILE = "run_complete.json"
FORMAT_VERSION = 1


def _lineage(config: TrainerConfig) -> dict[str, Any]:
    """What must match for the recorded outputs to be this run's outputs."""
    return {
        "baseModel": config.baseModelPath,
        "dataset": config.datasetDir,
        "outputName": config.outputName,
        "maxSteps": config.hyperparameters.maxSteps,
    }


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def record_completion(config: TrainerConfig, report: TrainingReport) -> None:
    """Record that the run in ``config.outputDir`` finished with ``report`` (its outputs in place)."""
    folder = Path(config.outputDir)
    body = {
        "version": FORMAT_VERSION,
        "lineage": _lineage(config),
        "report": report.model_dump(mode="json", exclude_none=True),
    }
    staging = folder / f".{COMPLETE_FILE}.partial"
    try:
        staging.write_text(json.dumps(body, indent=2))
        staging.replace(folder / COMPLETE_FILE)
    except OSError as error:
        # The LoRA is in place and the report goes out regardless; only a rerun would train again.
        log.warning("could not record the finished run in %s: %s", folder, error)


def finished_report(config: TrainerConfig) -> TrainingReport | None:
    """The final report to send again when this run already finished; None when it has to train."""
    folder = Path(config.outputDir)
    path = folder / COMPLETE_FILE
    if not path.is_file():
        return None
    try:
        body = json.loads(path.read_text())
        report = TrainingReport.model_validate(body["report"])
        version, lineage = body["version"], body["lineage"]
    except (OSError, ValueError, KeyError, TypeError, ValidationError) as error:
        log.warning("%s is unreadable (%s): training as if the run had not finished", path, error)
        return None
    if version != FORMAT_VERSION or lineage != _lineage(config):
        log.info("%s records a run of another configuration: training", path)
        return None
    for output in report.outputs:
        # Reported paths are under the outputs volume, the output folder's parent.
        file = folder.parent / output.path
        try:
            intact = file.is_file() and _sha256(file) == output.sha256
        except OSError:
            intact = False
        if not intact:
            log.warning("finished run's output %s is missing or changed: training again", output.path)
            return None
    return report.model_copy(
        update={
            "sequence": 0,
            "time": now(),
            "final": False,
            "acks": [],
            "message": f"already finished ({report.message}); outputs unchanged"[:4096],
        }
    )
