"""``kubepilot adapter`` / ``python -m kubepilot_workers.adapters``: serve the executor API for a backend.

Reads an AdapterConfig, builds the ComfyUI or sd.cpp backend and serves the executor API
(``kubepilot_workers.executor``) on ``host:port`` until the pod stops. The sidecar's own
report is only its final state (Stopped, or Failed with the reason), written as the
termination message; jobs push their progress to their own intake URLs through the executor.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
from pathlib import Path
from types import FrameType

from pydantic import ValidationError

from kubepilot_api.common import ErrorInfo, now
from kubepilot_api.workers.config import AdapterConfig, load_config
from kubepilot_api.workers.env import CONFIG_ENV, DEFAULT_CONFIG_PATH
from kubepilot_api.workers.progress import ServiceReport, WorkState
from kubepilot_workers.adapters.comfyui import ComfyUIBackend
from kubepilot_workers.adapters.sdcpp import SdCppBackend
from kubepilot_workers.executor.app import serve
from kubepilot_workers.reporting import Reporter

log = logging.getLogger(__name__)


def build_backend(config: AdapterConfig) -> ComfyUIBackend | SdCppBackend:
    """The backend the config names, pointed at its URL."""
    if config.backend == "comfyui":
        return ComfyUIBackend(config.backendUrl)
    return SdCppBackend(config.backendUrl)


def _note_stop_signals() -> None:
    """Let SIGTERM/SIGINT end the serving loop and then this function normally.

    uvicorn shuts down on them and re-raises the signal once it has; with these handlers in place
    the re-raise is just logged, so the final Stopped report is still written and the exit code is 0.
    """

    def stopped(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; the adapter stops", signal.Signals(signum).name)

    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, stopped)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubepilot adapter",
        description="Serve the kubepilot executor API in front of ComfyUI or an sd.cpp server.",
    )
    parser.add_argument(
        "--config",
        default=os.environ.get(CONFIG_ENV, DEFAULT_CONFIG_PATH),
        help=f"AdapterConfig JSON file (default: ${CONFIG_ENV} or {DEFAULT_CONFIG_PATH})",
    )
    parser.add_argument(
        "--host",
        default="",
        help="address to bind, overriding the config (the operator passes the pod's IP: $(POD_IP))",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def _final(reporter: Reporter, state: WorkState, message: str, error: ErrorInfo | None = None) -> None:
    reporter.finish(ServiceReport(sequence=0, time=now(), state=state, message=message, error=error))


def main(argv: list[str]) -> int:
    """Run the adapter; returns the process exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One line per backend call (health probes every few seconds) would drown the job logs.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    reporter = Reporter.from_env()
    try:
        config = load_config(AdapterConfig, args.config)
    except OSError as error:
        message = f"cannot read the config file {args.config}: {error.strerror}"
        log.error(message)
        _final(reporter, WorkState.FAILED, message, ErrorInfo(code="CONFIG_INVALID", message=message))
        return 2
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in error.errors()
        )
        message = f"invalid config {args.config}: {problems}"
        log.error(message)
        _final(reporter, WorkState.FAILED, message, ErrorInfo(code="CONFIG_INVALID", message=message[:4000]))
        return 2
    if args.host:
        config.host = args.host

    backend = build_backend(config)
    try:
        Path(config.outputsDir).mkdir(parents=True, exist_ok=True)
        log.info(
            "serving the executor API on %s:%s for %s at %s",
            config.host,
            config.port,
            backend.name,
            config.backendUrl,
        )
        _note_stop_signals()
        serve(backend, config.host, config.port)
    except Exception as error:
        message = f"the adapter stopped: {type(error).__name__}: {error}"
        log.error(message)
        _final(reporter, WorkState.FAILED, message, ErrorInfo(code="ADAPTER_FAILED", message=message[:4000]))
        return 1
    finally:
        backend.close()
    _final(reporter, WorkState.STOPPED, "the adapter stopped")
    return 0
