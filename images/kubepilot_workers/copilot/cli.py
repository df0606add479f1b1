"""``python -m kubepilot_workers.copilot --host 0.0.0.0 --port 7879``: serve the Copilot sidecar API.

Settings come from the ``COPILOT_*`` environment variables (``server.SidecarSettings.from_env``);
the options below win over them. ``--volume`` (repeatable) names a storage volume mounted outside
the workspace (the operator mounts them at ``/models``, ``/datasets``, ``/outputs``): it is linked
into the workspace as ``<workspace>/<basename>`` at start and accepted as a ``cwd``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from types import FrameType

import uvicorn

from kubepilot_workers.copilot.server import (
    DEFAULT_PORT,
    DEFAULT_WORKSPACE,
    PORT_ENV,
    TIMEOUT_ENV,
    VOLUMES_ENV,
    WORKSPACE_ENV,
    SidecarSettings,
    create_app,
    link_volumes,
)

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kubepilot_workers.copilot",
        description="Serve ControlPilot's Copilot Sidecar API (/health, /status, /chat) over the Copilot CLI",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=None, help=f"port (default ${PORT_ENV} or {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--workspace",
        default=None,
        help=f"root every cwd must lie under (default ${WORKSPACE_ENV} or {DEFAULT_WORKSPACE})",
    )
    parser.add_argument(
        "--volume",
        action="append",
        default=None,
        metavar="PATH",
        help=f"a volume mounted outside the workspace, linked into it (repeatable; default ${VOLUMES_ENV})",
    )
    parser.add_argument(
        "--timeout-seconds",
        type=float,
        default=None,
        help=f"default time limit of a /chat run (default ${TIMEOUT_ENV} or 1800)",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def _note_stop_signals() -> None:
    """Let SIGTERM/SIGINT end the serving loop and then this function normally (exit code 0).

    uvicorn shuts down on them and re-raises the signal once it has, under the handlers it found;
    with these in place the re-raise is only logged.
    """

    def stopped(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; the copilot sidecar stops", signal.Signals(signum).name)

    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, stopped)


def main(argv: list[str]) -> int:
    """Serve until SIGTERM or SIGINT; returns the process exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = SidecarSettings.from_env(
            os.environ,
            workspace=args.workspace,
            port=args.port,
            volumes=tuple(args.volume) if args.volume else None,
            timeout_seconds=args.timeout_seconds,
        )
    except ValueError as error:
        print(f"copilot sidecar: invalid settings: {error}", file=sys.stderr)
        return 2
    link_volumes(settings)
    log.info(
        "copilot sidecar on %s:%d, workspace %s%s",
        args.host,
        settings.port,
        settings.workspace,
        f" (volumes {', '.join(settings.volumes)})" if settings.volumes else "",
    )
    _note_stop_signals()
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=settings.port,
        log_level=args.log_level.lower(),
        log_config=None,
    )
    return 0
