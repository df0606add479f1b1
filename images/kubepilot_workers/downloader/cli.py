"""``kubepilot download`` / ``python -m kubepilot_workers.downloader``: run one ModelPull's download."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType

from pydantic import ValidationError

from kubepilot_api.common import ErrorInfo, now
from kubepilot_api.workers.config import DownloaderConfig, load_config
from kubepilot_api.workers.env import CONFIG_ENV, CREDENTIALS_FILE_ENV, DEFAULT_CONFIG_PATH
from kubepilot_api.workers.progress import DownloadReport, WorkState
from kubepilot_workers.downloader.errors import ErrorCode
from kubepilot_workers.downloader.retry import RetryPolicy
from kubepilot_workers.downloader.runner import EXIT_CODES, DownloadRun
from kubepilot_workers.reporting import Reporter

log = logging.getLogger("kubepilot_workers.downloader")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kubepilot download", description="Download one ModelPull's files.")
    parser.add_argument(
        "--config",
        default=os.environ.get(CONFIG_ENV, DEFAULT_CONFIG_PATH),
        help=f"DownloaderConfig JSON file (default: ${CONFIG_ENV} or {DEFAULT_CONFIG_PATH})",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser.parse_args(argv)


def read_token(path: str) -> str | None:
    """The Hugging Face token or Civitai key; None when no file is configured (unreadable: an error)."""
    if not path:
        return None
    token = Path(path).read_text().strip()
    return token or None


def main(argv: list[str]) -> int:
    """Run the download; the exit code follows the final state (0 done, paused or cancelled)."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # huggingface_hub and httpx log full request lines at INFO; keep them quiet.
    for noisy in ("httpx", "httpx2", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    reporter = Reporter.from_env()
    try:
        config = load_config(DownloaderConfig, args.config)
        token = read_token(os.environ.get(CREDENTIALS_FILE_ENV) or config.tokenFile)
    except (OSError, ValidationError, ValueError) as error:
        detail = error.strerror if isinstance(error, OSError) else str(error).splitlines()[0]
        return _fail_early(reporter, f"cannot read the config or token file: {detail}")
    try:
        retry = RetryPolicy.from_env()
    except ValueError as error:
        return _fail_early(reporter, str(error))
    run = DownloadRun(config, reporter, token=token, retry=retry)
    previous = _install_signal_handlers(run)
    try:
        report = run.run()
    except Exception as error:
        # A bug must still end with a final report and a clear code, not a bare traceback.
        log.debug("unexpected failure", exc_info=True)
        message = f"internal error: {type(error).__name__}: {str(error)[:300]}"
        log.error("%s", message)
        report = DownloadReport(
            sequence=0,
            time=now(),
            state=WorkState.FAILED,
            message=message,
            error=ErrorInfo(code=ErrorCode.DOWNLOAD_FAILED.value, message=message),
        )
    finally:
        _restore_signal_handlers(previous)
    final = reporter.finish(report)
    log.info("finished: %s %s", final.state.value, final.message)
    return EXIT_CODES[final.state]


def _fail_early(reporter: Reporter, message: str) -> int:
    log.error("%s", message)
    report = DownloadReport(
        sequence=0,
        time=now(),
        state=WorkState.FAILED,
        message=message,
        error=ErrorInfo(code=ErrorCode.INVALID_CONFIG.value, message=message),
    )
    reporter.finish(report)
    return EXIT_CODES[WorkState.FAILED]


Handlers = dict[int, signal.Handlers | int | object | None]


def _install_signal_handlers(run: DownloadRun) -> Handlers:
    def handle(signum: int, frame: FrameType | None) -> None:
        # Only set events here: the run logs and reports the stop from its own loop.
        run.request_stop_by_signal()

    previous: Handlers = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, handle)
    return previous


def _restore_signal_handlers(previous: Handlers) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)  # type: ignore[arg-type]
