"""``python -m kubepilot_workers.trainer --config FILE``: run one TrainingRun's trainer.

The built-in trainer (``kubepilot-lora``) runs here; kohya, diffusion-pipe and OneTrainer go to
``kubepilot_workers.trainer.adapters.run``. Every failure ends with a final Failed report and a
termination message carrying a stable error code; never a traceback as the only trace.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from pydantic import ValidationError

from kubepilot_api.common import ErrorInfo, now
from kubepilot_api.trainingrun import TrainerKind
from kubepilot_api.workers.config import TrainerConfig, load_config
from kubepilot_api.workers.env import CONFIG_ENV, DEFAULT_CONFIG_PATH
from kubepilot_api.workers.progress import TrainingReport, WorkState
from kubepilot_workers.reporting import Reporter

log = logging.getLogger("kubepilot_workers.trainer")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_CONFIG = 2


def _failure(code: str, message: str) -> TrainingReport:
    return TrainingReport(
        sequence=0,
        time=now(),
        state=WorkState.FAILED,
        message=message[:4096],
        error=ErrorInfo(code=code, message=message[:4096]),
    )


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="kubepilot train", description="Run the trainer of one TrainingRun."
    )
    parser.add_argument(
        "--config",
        default=os.environ.get(CONFIG_ENV, DEFAULT_CONFIG_PATH),
        help=f"TrainerConfig JSON file (default: ${CONFIG_ENV} or {DEFAULT_CONFIG_PATH})",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser.parse_args(argv)


def _run_adapter(config: TrainerConfig, reporter: Reporter) -> int:
    try:
        from kubepilot_workers.trainer import adapters
    except ImportError as error:
        reporter.finish(
            _failure("TRAINER_UNAVAILABLE", f"trainer {config.trainer.value} is not available: {error}")
        )
        return EXIT_FAILED
    code: int = adapters.run(config, reporter)
    return code


class StopSignal:
    """SIGTERM asks the trainer to stop (save, then exit Stopped), also when it arrives during loading."""

    def __init__(self) -> None:
        self.received = False
        self._targets: list[Callable[[], None]] = []

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._handle)

    def attach(self, request_stop: Callable[[], None]) -> None:
        self._targets.append(request_stop)
        if self.received:
            request_stop()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        log.info("SIGTERM: stopping after the current step")
        self.received = True
        for request_stop in self._targets:
            request_stop()


def run_builtin(config: TrainerConfig, reporter: Reporter) -> int:
    """Run the built-in LoRA trainer in this process (one rank of the launcher's world)."""
    from kubepilot_workers.trainer.completion import finished_report

    # Before the heavy imports and before the launcher's world forms: a rerun of a finished run's
    # pod (every rank of it) ends at once with the recorded report, changing no file.
    already = finished_report(config)
    if already is not None:
        # Rank from the launcher's environment as distributed.launcher_info reads it (that module
        # would import torch): only rank 0 reports.
        if os.environ.get("RANK", "").strip() in ("", "0"):
            sent = reporter.finish(already)
            log.info("the run had already finished: %s", sent.message)
        else:
            reporter.close()
        return EXIT_OK
    # Heavy imports (torch, diffusers, deepspeed) only when the built-in trainer runs.
    from kubepilot_workers.trainer.checkpoints import ResumeError
    from kubepilot_workers.trainer.dataset import DatasetError
    from kubepilot_workers.trainer.distributed import (
        init_process_group,
        launcher_info,
        shutdown_process_group,
    )
    from kubepilot_workers.trainer.engine import EngineConfigError
    from kubepilot_workers.trainer.loop import LoraTrainer, TrainingFailed
    from kubepilot_workers.trainer.model import ModelLoadError

    try:
        info = launcher_info()
    except ValueError as error:
        reporter.finish(_failure("CONFIG_INVALID", str(error)))
        return EXIT_BAD_CONFIG
    if not info.is_main:
        # Only rank 0 reports; the others must not overwrite its termination message either.
        reporter.close()
        reporter = Reporter(None, None)
    use_deepspeed = config.deepspeed is not None and config.deepspeed.enabled
    started = False
    trainer: LoraTrainer | None = None
    stop_signal = StopSignal()
    stop_signal.install()
    try:
        started = init_process_group(info, use_deepspeed)
        reporter.update(_starting(config))
        trainer = LoraTrainer(config, reporter, info)
        stop_signal.attach(trainer.request_stop)
        final = trainer.run()
    except DatasetError as error:
        final = _failure("DATASET_INVALID", str(error))
    except ModelLoadError as error:
        final = _failure("MODEL_LOAD_FAILED", str(error))
    except ResumeError as error:
        final = _failure("RESUME_FAILED", str(error))
    except TrainingFailed as error:
        final = _failure(error.code, error.message)
    except EngineConfigError as error:
        final = _failure("CONFIG_INVALID", str(error))
    except Exception as error:
        log.exception("training failed")
        final = _failure("TRAINING_FAILED", f"{type(error).__name__}: {error}")
    finally:
        shutdown_process_group(started)
    if trainer is not None and final.state is WorkState.FAILED:
        final = trainer.failed_report(final.error or ErrorInfo(code="TRAINING_FAILED"))
    sent = reporter.finish(final)
    log.info("training ended: %s %s", sent.state.value, sent.message)
    return EXIT_OK if sent.state in {WorkState.SUCCEEDED, WorkState.STOPPED} else EXIT_FAILED


def _starting(config: TrainerConfig) -> TrainingReport:
    return TrainingReport(
        sequence=0, time=now(), state=WorkState.STARTING, message=f"loading {config.baseModelPath}"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``kubepilot train``; returns the exit code."""
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    reporter = Reporter.from_env()
    try:
        config = load_config(TrainerConfig, args.config)
    except (OSError, ValidationError) as error:
        detail = (
            error.strerror
            if isinstance(error, OSError)
            else f"{error.error_count()} invalid field(s): {error}"
        )
        reporter.finish(_failure("CONFIG_INVALID", f"cannot read trainer config {args.config}: {detail}"))
        return EXIT_BAD_CONFIG
    if config.trainer is TrainerKind.KUBEPILOT_LORA:
        return run_builtin(config, reporter)
    return _run_adapter(config, reporter)
