"""``kubepilot devcluster --port PORT --data-dir DIR``: run the devcluster in the foreground.

Writes ``DIR/kubeconfig`` (context ``devcluster``, plain HTTP, a dummy token the server accepts),
serves until SIGINT/SIGTERM, and runs the controllers and process kubelet alongside the API server
when that package is installed (``--no-controllers`` turns them off).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import yaml

from kubepilot_devcluster.apiserver.server import DevClusterServer
from kubepilot_devcluster.kubelet.config import NodeConfig, NodeConfigError, load_node_config

log = logging.getLogger("kubepilot_devcluster")

KUBECONFIG_NAME = "kubeconfig"
CONTEXT_NAME = "devcluster"


def kubeconfig(url: str) -> dict[str, Any]:
    """A kubeconfig for ``url``; the token is a placeholder the devcluster accepts unchecked."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT_NAME, "cluster": {"server": url}}],
        "users": [{"name": CONTEXT_NAME, "user": {"token": "devcluster"}}],
        "contexts": [
            {
                "name": CONTEXT_NAME,
                "context": {"cluster": CONTEXT_NAME, "user": CONTEXT_NAME, "namespace": "default"},
            }
        ],
        "current-context": CONTEXT_NAME,
        "preferences": {},
    }


def write_kubeconfig(data_dir: Path, url: str) -> Path:
    path = data_dir / KUBECONFIG_NAME
    temp = path.with_suffix(".tmp")
    temp.write_text(yaml.safe_dump(kubeconfig(url), sort_keys=False), encoding="utf-8")
    temp.replace(path)
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubepilot devcluster", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=6443, help="port to listen on (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--data-dir", type=Path, required=True, help="directory for state and kubeconfig")
    parser.add_argument(
        "--node-name",
        default=None,
        help="name of the one Node (default: nodeName in DIR/node.yaml, else devcluster-node)",
    )
    parser.add_argument(
        "--no-controllers", action="store_true", help="serve the API only: no controllers, no process kubelet"
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


async def _control_plane(url: str, data_dir: Path, stop: asyncio.Event) -> None:
    try:
        module = importlib.import_module("kubepilot_devcluster.controllers")
        run = module.run_control_plane
    except (ImportError, AttributeError):
        log.info("controllers not available (kubepilot_devcluster.controllers.run_control_plane): API only")
        return
    await run(url, data_dir, stop)


def _tune_garbage_collector() -> None:
    # Stored objects are acyclic JSON, freed by reference counting; the cyclic collector only adds
    # latency spikes by rescanning thousands of long-lived dicts, so it runs far less often.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 1_000)


def node_name(data_dir: Path, requested: str | None) -> str:
    """The Node's name. It lives in ``node.yaml`` (the kubelet's config, so the server and the kubelet
    never disagree); ``--node-name`` seeds a new node.yaml and must match an existing one."""
    path = data_dir / "node.yaml"
    if requested is not None and not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        seeded = NodeConfig(node_name=requested).to_yaml()
        path.write_text(yaml.safe_dump(seeded, sort_keys=False))
    configured = load_node_config(data_dir).node_name
    if requested is not None and requested != configured:
        raise NodeConfigError(f"--node-name {requested!r} differs from nodeName {configured!r} in {path}")
    return configured


async def run(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        name = node_name(args.data_dir, args.node_name)
    except NodeConfigError as error:
        log.error("%s", error)
        return 2
    server = DevClusterServer(args.data_dir, args.host, args.port, name)
    try:
        url = await server.start()
    except OSError as error:
        log.error(
            "cannot start the devcluster on %s:%s with %s: %s", args.host, args.port, args.data_dir, error
        )
        return 1
    _tune_garbage_collector()
    path = write_kubeconfig(args.data_dir, url)
    log.info("devcluster ready at %s; kubeconfig: %s", url, path)
    controllers: asyncio.Task[None] | None = None
    if not args.no_controllers:
        controllers = asyncio.create_task(_control_plane(url, args.data_dir, stop))
    try:
        await stop.wait()
    finally:
        if controllers is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(controllers, timeout=30)
        await server.stop()
    log.info("devcluster stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``kubepilot devcluster``; returns the exit code."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        log.error("cannot create the data directory %s: %s", args.data_dir, error)
        return 1
    try:
        return asyncio.run(run(args))
    except RuntimeError as error:
        log.error("%s", error)
        return 1
