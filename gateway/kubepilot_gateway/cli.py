"""``kubepilot gateway``: serve the API profiles against the cluster in use (in-cluster or $KUBECONFIG).

Each profile listens at its root on its native port, and all of them under ``/p/<profile>`` on
the combined port (with ``/healthz`` and ``/metrics``). The cache is synced before any listener
serves; SIGINT/SIGTERM stop every listener, then the cache and the client, and exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
from collections.abc import Sequence

from starlette.types import ASGIApp

from kubepilot_gateway.app.gateway import Gateway, mount_path
from kubepilot_gateway.app.runner import Listener, StopSignal, bind, serve, url, wait_for_sync
from kubepilot_gateway.app.settings import ListenerSettings, ProfileListener, load_gateway_settings
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import KubeClient
from kubepilot_gateway.profiles import NATIVE_PORTS, Profile, profiles
from kubepilot_gateway.settings import Settings

log = logging.getLogger("kubepilot_gateway")


class UsageError(Exception):
    """A command line that cannot run (exit status 2)."""


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kubepilot gateway", description=__doc__)
    parser.add_argument(
        "--settings", default=None, help="settings YAML (default: $KUBEPILOT_GATEWAY_SETTINGS)"
    )
    parser.add_argument("--namespace", default=None, help="namespace the profiles work in")
    parser.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--combined-port",
        type=int,
        default=None,
        help="port mounting every profile under /p/<name> (0: none)",
    )
    parser.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="NAME[=PORT]",
        help="serve this profile (repeatable; default: every one), on PORT natively (0: not natively)",
    )
    parser.add_argument("--no-native", action="store_true", help="serve only the combined listener")
    parser.add_argument("--sync-timeout", type=float, default=None, help="seconds to wait for the cache")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser.parse_args(list(argv))


def _profile_arg(text: str) -> tuple[str, int | None]:
    name, sep, port = text.partition("=")
    if not sep:
        return name, None
    if not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--profile {text}: the port must be a number from 0 to 65535")
    return name, int(port)


def plan(
    args: argparse.Namespace, listeners: ListenerSettings, registered: Sequence[Profile]
) -> tuple[list[Profile], ListenerSettings]:
    """The profiles to serve and the listener settings once the command line has overridden them."""
    by_name = {profile.name: profile for profile in registered}
    overrides: dict[str, ProfileListener] = dict(listeners.profiles)
    if args.profile:
        selected = []
        for text in args.profile:
            name, port = _profile_arg(text)
            if name not in by_name:
                missing = " (not built yet)" if name in NATIVE_PORTS else ""
                raise UsageError(
                    f"unknown profile {name!r}{missing}; available: {', '.join(by_name) or 'none'}"
                )
            config = listeners.for_profile(name).model_copy(update={"enabled": True})
            if port is not None:
                config = config.model_copy(update={"port": port})
            overrides[name] = config
            if by_name[name] not in selected:
                selected.append(by_name[name])
    else:
        selected = [profile for profile in registered if listeners.for_profile(profile.name).enabled]
    update: dict[str, object] = {"profiles": overrides}
    if args.host is not None:
        update["host"] = args.host
    if args.combined_port is not None:
        if not 0 <= args.combined_port <= 65535:
            raise UsageError("--combined-port must be from 0 to 65535")
        update["combinedPort"] = args.combined_port
    if args.no_native:
        update["native"] = False
    if args.sync_timeout is not None:
        update["syncTimeoutSeconds"] = args.sync_timeout
    return selected, listeners.model_copy(update=update)


def listener_plan(gateway: Gateway) -> list[tuple[Listener, ASGIApp]]:
    """Every listener (combined first) with the app it serves; ports must not collide."""
    planned: list[tuple[Listener, ASGIApp]] = []
    combined = gateway.listeners.combinedPort
    if combined:
        planned.append((Listener("combined", combined), gateway.combined_app()))
    for name, port in gateway.native_ports().items():
        planned.append((Listener(name, port), gateway.profile_app(name)))
    ports = [listener.port for listener, _ in planned]
    clashes = sorted({port for port in ports if ports.count(port) > 1})
    if clashes:
        raise UsageError(f"two listeners on port {', '.join(map(str, clashes))}")
    if not planned:
        raise UsageError("nothing to serve: the combined port is 0 and no profile listens natively")
    return planned


def _describe(listener: Listener, host: str, gateway: Gateway) -> str:
    if listener.label != "combined":
        return f"{listener.label}: {url(host, listener.port)}"
    mounts = ", ".join(f"{mount_path(p.name)}/" for p in gateway.profiles) or "no profiles"
    return f"combined: {url(host, listener.port)} ({mounts}; /healthz, /metrics)"


async def run(settings: Settings, listeners: ListenerSettings, selected: Sequence[Profile]) -> int:
    with StopSignal() as stop:
        try:
            client = KubeClient.from_settings(settings.kube)
        except Exception as error:
            log.error("cannot configure the Kubernetes client: %s", error)
            return 1
        ctx = GatewayContext.build(settings, client)
        sockets: list[socket.socket] = []
        try:
            gateway = Gateway(ctx, selected, listeners=listeners)
            planned = listener_plan(gateway)
            for listener, _ in planned:
                try:
                    sockets.append(bind(listeners.host, listener.port))
                except OSError as error:
                    log.error(
                        "cannot listen on %s for %s: %s",
                        url(listeners.host, listener.port),
                        listener.label,
                        error,
                    )
                    return 1
            log.info("syncing the cache of namespace %s", settings.namespace)
            ctx.cache.start()
            if not await wait_for_sync(ctx.cache, listeners.syncTimeoutSeconds, stop.requested):
                return 0 if stop.requested.is_set() else 1
            for listener, _ in planned:
                print(f"kubepilot gateway: {_describe(listener, listeners.host, gateway)}", flush=True)
            servings = [(listener, app, sock) for (listener, app), sock in zip(planned, sockets, strict=True)]
            async with gateway.lifespan():
                return await serve(
                    servings,
                    stop,
                    host=listeners.host,
                    shutdown_timeout=listeners.shutdownTimeoutSeconds,
                    on_stop=ctx.bus.close,
                )
        finally:
            for sock in sockets:
                sock.close()
            ctx.bus.close()
            await ctx.cache.stop()
            await client.aclose()
            log.info("gateway stopped")


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    # Access lines are JSON already: printed as they are, one per line.
    access = logging.getLogger("kubepilot_gateway.access")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.handlers = [handler]
    access.propagate = False
    if level != "DEBUG":
        for noisy in ("uvicorn", "uvicorn.error", "httpx", "httpcore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    configure_logging(args.log_level)
    try:
        settings, listeners = load_gateway_settings(args.settings)
        if args.namespace:
            settings = settings.model_copy(update={"namespace": args.namespace})
        selected, listeners = plan(args, listeners, profiles())
        if not selected:
            log.warning("no profile to serve: only /healthz and /metrics on the combined listener")
        return asyncio.run(run(settings, listeners, selected))
    except (UsageError, OSError, ValueError) as error:
        sys.stderr.write(f"kubepilot gateway: {error}\n")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
