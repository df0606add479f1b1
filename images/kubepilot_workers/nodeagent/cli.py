"""``python -m kubepilot_workers.nodeagent --config FILE``: serve node metrics until SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import FrameType

from pydantic import ValidationError

from kubepilot_api.workers.config import NodeAgentConfig, load_config
from kubepilot_api.workers.env import CONFIG_ENV, DEFAULT_CONFIG_PATH
from kubepilot_workers.nodeagent.collector import NodeCollector
from kubepilot_workers.nodeagent.server import NodeAgentServer

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubepilot node-agent", description="Serve GPU and host metrics.")
    parser.add_argument(
        "--config", default=os.environ.get(CONFIG_ENV, DEFAULT_CONFIG_PATH), help="NodeAgentConfig JSON file."
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(NodeAgentConfig, args.config)
    except OSError as error:
        print(f"node-agent: cannot read config {args.config}: {error.strerror or error}", file=sys.stderr)
        return 2
    except ValidationError as error:
        print(f"node-agent: invalid config {args.config}:\n{error}", file=sys.stderr)
        return 2
    try:
        server = NodeAgentServer(NodeCollector(config.diskPaths), config.host, config.port)
    except OSError as error:
        print(
            f"node-agent: cannot listen on {config.host}:{config.port}: {error.strerror or error}",
            file=sys.stderr,
        )
        return 1
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    log.info("node agent serving /metrics, /v1/snapshot and /healthz on %s:%d", config.host, server.port)
    stopping.wait()
    server.stop()
    log.info("node agent stopped")
    return 0
