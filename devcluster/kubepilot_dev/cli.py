"""``kubepilot dev --data-dir DIR``: run the whole local stack in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from kubepilot_dev.children import ChildFailed
from kubepilot_dev.layout import Layout, Ports
from kubepilot_dev.stack import Stack

DEFAULTS = Ports()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="kubepilot dev",
        description="Start the devcluster, apply the CRDs, and run the operator, the node agent and the "
        "gateway against it (workers run as local processes: the devcluster maps our images to the "
        "local worker commands). State, volumes, settings and logs stay in --data-dir; a second run "
        "reuses them. Ctrl-C stops everything.",
    )
    parser.add_argument("--data-dir", required=True, type=Path, help="folder for all state (kept)")
    parser.add_argument("--host", default="127.0.0.1", help="address every component listens on")
    parser.add_argument("--hf-endpoint", default="", help="Hugging Face endpoint (an offline mirror)")
    parser.add_argument("--cluster-port", type=int, default=DEFAULTS.cluster, help="Kubernetes API port")
    parser.add_argument("--gateway-port", type=int, default=DEFAULTS.gateway, help="combined gateway port")
    parser.add_argument("--intake-port", type=int, default=DEFAULTS.intake, help="operator progress intake")
    parser.add_argument("--operator-health-port", type=int, default=DEFAULTS.operator_health)
    parser.add_argument("--node-agent-port", type=int, default=DEFAULTS.node_agent)
    parser.add_argument(
        "--controlpilot-ui",
        type=Path,
        default=None,
        help="a copy of ControlPilot's web UI folder (LoRA Pilot's static files) to serve at its root",
    )
    parser.add_argument(
        "--no-demo-models",
        action="store_true",
        help="do not build the tiny random-weight demo models (a tiny Stable Diffusion and a 4x "
        "upscaler) the image profiles use by default",
    )
    parser.add_argument(
        "--no-native",
        action="store_true",
        help="profiles only under /p/<profile>",
    )
    return parser.parse_args(argv)


def banner(stack: Stack) -> str:
    layout = stack.layout
    listeners = "\n".join(f"  {url}" for url in stack.urls) or "  (no listener reported)"
    return f"""
kubepilot dev is up (data: {layout.root})
Gateway listeners (each profile on its own port, all of them under /p/<profile> on the combined one):
{listeners}
Kubernetes: export KUBECONFIG={layout.kubeconfig}
  kubectl get kubepilot
Operator metrics: http://{stack.host}:{stack.ports.intake}/metrics   Node agent: http://{stack.host}:{stack.ports.node_agent}/v1/snapshot
Volumes: {layout.root / "volumes"}/{{models,datasets,outputs}}   Logs: {layout.logs}
Ctrl-C stops the gateway, the node agent, the operator and the devcluster with its pods.
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    ports = Ports(
        cluster=args.cluster_port,
        intake=args.intake_port,
        operator_health=args.operator_health_port,
        node_agent=args.node_agent_port,
        gateway=args.gateway_port,
    )
    stack = Stack(
        Layout(args.data_dir.resolve()),
        ports,
        host=args.host,
        hf_endpoint=args.hf_endpoint,
        native=not args.no_native,
        controlpilot_ui=str(args.controlpilot_ui.resolve()) if args.controlpilot_ui else "",
        demo_models=not args.no_demo_models,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"kubepilot dev: starting in {stack.layout.root} (logs in {stack.layout.logs})", flush=True)
        try:
            stack.start()
        except ChildFailed as error:
            print(f"kubepilot dev: {error}", file=sys.stderr, flush=True)
            return 1
        print(banner(stack), flush=True)
        failed = stack.wait(stop)
        if failed is not None:
            print(
                f"kubepilot dev: {failed.name} exited ({failed.exit_code()}); stopping.\n{failed.log_tail()}",
                file=sys.stderr,
                flush=True,
            )
        print("kubepilot dev: stopping", flush=True)
        stack.stop()
        print("kubepilot dev: stopped", flush=True)
        return 0 if failed is None else 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
