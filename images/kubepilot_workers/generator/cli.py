"""``python -m kubepilot_workers.generator --config FILE``: one-shot job or executor server.

One-shot mode runs ``config.request``, pushes progress per step to the intake, writes the images
under ``outputsDir`` and ends with the final report (also written as the termination message).
A ``cancel`` action from the intake, or SIGTERM, interrupts the job between steps.

Server mode serves the executor API until SIGTERM (or SIGINT), then ends like every worker: a final
report (a ServiceReport, state Stopped, or Failed when the model cannot load or the server cannot
run) sent to the intake and written as the termination message.

Exit codes: 0 succeeded, 1 failed, 2 invalid config, 3 cancelled. A server stopped by SIGTERM exits
143 (128 + the signal, as a shell reports a process the signal ended), by SIGINT 130.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType

from pydantic import ValidationError

from kubepilot_api.common import ErrorInfo, now
from kubepilot_api.generationjob import GenerationProgress, OutputImage, Timings
from kubepilot_api.workers.config import GeneratorConfig, GeneratorMode, load_config
from kubepilot_api.workers.env import CONFIG_ENV, DEFAULT_CONFIG_PATH
from kubepilot_api.workers.progress import GenerationReport, ServiceReport, WorkState
from kubepilot_workers.executor.backend import Cancelled, ExecutionError, JobContext
from kubepilot_workers.reporting import Reporter

log = logging.getLogger(__name__)

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_INVALID_CONFIG = 2
EXIT_CANCELLED = 3
CANCEL_ACTIONS = frozenset({"cancel", "interrupt", "stop"})


def _report(state: WorkState, message: str, **fields: object) -> GenerationReport:
    return GenerationReport.model_validate(
        {"sequence": 0, "time": now(), "state": state, "message": message[:4096], **fields}
    )


class OneShotJob:
    """One GenerationJob run in this process, reporting to the intake as it goes."""

    def __init__(self, config: GeneratorConfig, reporter: Reporter) -> None:
        self.config = config
        self.reporter = reporter
        self.cancelled = threading.Event()
        self.progress: GenerationProgress | None = None

    def on_progress(self, progress: GenerationProgress) -> None:
        """Per-step callback: remember, push (coalesced), and act on cancel actions."""
        self.progress = progress
        self.reporter.update(_report(WorkState.RUNNING, "generating", progress=progress))
        for action in self.reporter.take_actions():
            if action.name in CANCEL_ACTIONS:
                self.cancelled.set()
                self.reporter.ack(action.name, action.nonce, message="interrupting")
            else:
                self.reporter.ack(
                    action.name, action.nonce, ok=False, message="not supported by the generator"
                )

    def run(self) -> int:
        """Run the job and send the final report; returns the exit code."""
        from kubepilot_workers.generator.backend import DiffusersBackend

        request = self.config.request
        if request is None:
            return self._fail("INVALID_CONFIG", "one-shot mode needs a request", EXIT_INVALID_CONFIG)
        started = time.monotonic()
        self.reporter.update(_report(WorkState.STARTING, "loading model"))
        backend: DiffusersBackend | None = None
        try:
            backend = DiffusersBackend(self.config)
            context = JobContext(
                job_id=self.config.workload.uid or self.config.workload.name,
                request=request,
                output_dir=Path(self.config.outputsDir),
                report_progress=self.on_progress,
                cancelled=self.cancelled,
            )
            outputs = backend.run(context)
        except Cancelled:
            return self._finish(WorkState.CANCELLED, "cancelled", [], self._timings(backend, started))
        except ExecutionError as error:
            return self._fail(error.code, error.message, EXIT_FAILED, self._timings(backend, started))
        except Exception as error:  # the pod must still end with a final report
            log.exception("generation failed")
            message = f"{type(error).__name__}: {error}"
            return self._fail("INTERNAL_ERROR", message, EXIT_FAILED, self._timings(backend, started))
        message = f"{len(outputs)} image(s) written"
        return self._finish(WorkState.SUCCEEDED, message, outputs, self._timings(backend, started))

    @staticmethod
    def _timings(backend: object, started: float) -> Timings:
        load = float(getattr(backend, "last_load_seconds", 0.0) or 0.0)
        total = time.monotonic() - started
        return Timings(loadSeconds=round(load, 3), runSeconds=round(max(0.0, total - load), 3))

    def _finish(self, state: WorkState, message: str, outputs: list[OutputImage], timings: Timings) -> int:
        self.reporter.finish(
            _report(state, message, progress=self.progress, outputs=outputs[:64], timings=timings)
        )
        log.info("job %s: %s", state.value, message)
        return EXIT_SUCCEEDED if state is WorkState.SUCCEEDED else EXIT_CANCELLED

    def _fail(self, code: str, message: str, exit_code: int, timings: Timings | None = None) -> int:
        error = ErrorInfo(code=code, message=message[:4096])
        self.reporter.finish(
            _report(WorkState.FAILED, message, error=error, progress=self.progress, timings=timings)
        )
        log.error("job failed: %s: %s", code, message)
        return exit_code


def _service_report(state: WorkState, message: str, error: ErrorInfo | None = None) -> ServiceReport:
    return ServiceReport(sequence=0, time=now(), state=state, message=message[:4096], error=error)


class _StopSignals:
    """Notes SIGTERM/SIGINT so that serving ends normally and the final report is still written.

    uvicorn handles both while it serves; once shut down it restores the handlers it found and
    raises the signal again. With the default handler that re-raise would end the process before
    any final report; with this one it only records which signal stopped the server.
    """

    def __init__(self) -> None:
        self.received: int | None = None

    def install(self) -> None:
        for stop_signal in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop_signal, self._note)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            log.info("received %s; the generator server stops", signal.Signals(signum).name)
        self.received = signum


def run_server(config: GeneratorConfig, reporter: Reporter) -> int:
    """Load the default model, serve the executor API until stopped, then send the final report."""
    from kubepilot_workers.executor.app import serve
    from kubepilot_workers.generator.backend import DiffusersBackend

    # Installed before the model loads: a pod stopped while loading still ends with its report.
    stop = _StopSignals()
    stop.install()
    try:
        backend = DiffusersBackend(config)
        backend.load_default()
    except ExecutionError as error:
        return _server_failed(reporter, error.code, f"cannot load the model: {error.message}")
    except Exception as error:  # the pod must still end with a final report
        log.exception("cannot start the generator server")
        return _server_failed(reporter, "INTERNAL_ERROR", f"{type(error).__name__}: {error}")
    try:
        if stop.received is None:
            log.info("serving the executor API on %s:%d", config.host, config.port)
            serve(backend, config.host, config.port)
    except (Exception, SystemExit) as error:
        # uvicorn exits (SystemExit) when it cannot listen; it has logged why.
        detail = f"{type(error).__name__}: {error}" if isinstance(error, Exception) else "see the log"
        return _server_failed(
            reporter, "SERVER_FAILED", f"the executor API on port {config.port} failed: {detail}"
        )
    name = signal.Signals(stop.received).name if stop.received is not None else "shutdown"
    reporter.finish(_service_report(WorkState.STOPPED, f"the generator server stopped ({name})"))
    log.info("the generator server stopped")
    return 128 + stop.received if stop.received is not None else EXIT_SUCCEEDED


def _server_failed(reporter: Reporter, code: str, message: str) -> int:
    log.error("the generator server failed: %s: %s", code, message)
    reporter.finish(_service_report(WorkState.FAILED, message, ErrorInfo(code=code, message=message[:4096])))
    return EXIT_FAILED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubepilot generator", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config",
        default=os.environ.get(CONFIG_ENV, DEFAULT_CONFIG_PATH),
        help=f"GeneratorConfig JSON file (default: ${CONFIG_ENV} or {DEFAULT_CONFIG_PATH})",
    )
    parser.add_argument(
        "--host",
        default="",
        help="address to bind, overriding the config (the operator passes the pod's IP: $(POD_IP))",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse arguments, load the config, run one job or serve."""
    arguments = _parser().parse_args(argv)
    logging.basicConfig(level=arguments.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(GeneratorConfig, arguments.config)
    except (OSError, ValidationError, ValueError) as error:
        detail = f"invalid config {arguments.config}: {error}"
        log.error("%s", detail)
        error_info = ErrorInfo(code="INVALID_CONFIG", message=detail[:4096])
        Reporter.from_env().finish(_report(WorkState.FAILED, "invalid config", error=error_info))
        return EXIT_INVALID_CONFIG
    if arguments.host:
        config.host = arguments.host
    if config.mode is GeneratorMode.SERVER:
        return run_server(config, Reporter.from_env())
    job = OneShotJob(config, Reporter.from_env())

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        log.warning("SIGTERM: interrupting the job")
        job.cancelled.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    return job.run()
