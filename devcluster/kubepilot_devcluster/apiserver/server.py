"""The devcluster API server: an aiohttp application over the cluster state, run in-process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from kubepilot_devcluster.apiserver import discovery, openapi
from kubepilot_devcluster.apiserver.cluster import Cluster, WriteOptions
from kubepilot_devcluster.apiserver.crds import register
from kubepilot_devcluster.apiserver.deletion import Deleter
from kubepilot_devcluster.apiserver.errors import ApiError
from kubepilot_devcluster.apiserver.faults import ConnectionReset, FaultInjector
from kubepilot_devcluster.apiserver.handlers import ResourceHandler, verb_of
from kubepilot_devcluster.apiserver.persistence import Persistence
from kubepilot_devcluster.apiserver.pod_logs import PodLogs
from kubepilot_devcluster.apiserver.requests import (
    error_response,
    json_response,
    parse_resource_path,
    read_body,
)
from kubepilot_devcluster.apiserver.resources import ResourceRegistry
from kubepilot_devcluster.apiserver.store import ObjectStore

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DEFAULT_NODE = "devcluster-node"
BOOT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class DevClusterServer:
    """State, persistence and HTTP serving of one devcluster; ``faults`` is the in-process fault handle."""

    def __init__(
        self, data_dir: Path, host: str = "127.0.0.1", port: int = 0, node_name: str = DEFAULT_NODE
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self.node_name = node_name
        self.registry = ResourceRegistry()
        self.store = ObjectStore()
        self.cluster = Cluster(self.registry, self.store)
        self.deleter = Deleter(self.cluster)
        self.faults = FaultInjector()
        self.persistence = Persistence(data_dir, self.store)
        self.handler = ResourceHandler(self.cluster, self.deleter, PodLogs(data_dir, self.store))
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> str:
        """Load state, bootstrap the default objects, and start listening; returns the URL."""
        self.persistence.open()
        for storage in list(self.store.storages()):
            if storage == ("apiextensions.k8s.io", "customresourcedefinitions"):
                for crd in self.store.list(storage):
                    register(self.registry, crd)
        self.deleter.rebuild_indexes()
        self._bootstrap()
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if self.port == 0:
            # aiohttp exposes the bound port of a port-0 site only through its server's sockets.
            sockets = getattr(site._server, "sockets", None) or []
            self.port = int(sockets[0].getsockname()[1])
        log.info("devcluster API server listening on %s", self.url)
        return self.url

    async def stop(self) -> None:
        """Close watches, stop serving, and persist a final snapshot."""
        self.store.drop_watchers()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.persistence.close()

    def _bootstrap(self) -> None:
        namespaces = self.registry.get("", "v1", "namespaces")
        nodes = self.registry.get("", "v1", "nodes")
        assert namespaces is not None and nodes is not None
        for name in BOOT_NAMESPACES:
            if self.store.get(namespaces.storage_key, "", name) is None:
                self.cluster.create(namespaces, "", {"metadata": {"name": name}}, WriteOptions())
            self.cluster.ensure_default_service_account(name)
        if self.store.get(nodes.storage_key, "", self.node_name) is None:
            node = {
                "metadata": {
                    "name": self.node_name,
                    "labels": {"kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux"},
                },
                "spec": {},
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "Unknown",
                            "reason": "NodeStatusNeverUpdated",
                            "message": "Kubelet never posted node status.",
                        }
                    ]
                },
            }
            self.cluster.create(nodes, "", node, WriteOptions())

    # -- HTTP ----------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as error:
            return error_response(error)
        except ConnectionReset:
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("internal error serving %s %s", request.method, request.path)
            return error_response(
                ApiError("InternalError", "Internal error occurred: see the devcluster log", code=500)
            )

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/_devcluster/"):
            return await self._admin(request, path.removeprefix("/_devcluster/"))
        resource_path = parse_resource_path(path)
        if resource_path is not None:
            verb = verb_of(request.method, resource_path, request)
            plural = resource_path.plural + (
                f"/{resource_path.subresource}" if resource_path.subresource else ""
            )
            self.faults.check(verb, plural)
            return await self.handler.handle(request, resource_path, verb)
        if request.method != "GET":
            raise ApiError(
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                code=405,
            )
        self.faults.check("get", path)
        return self._document(request, path)

    def _document(self, request: web.Request, path: str) -> web.StreamResponse:
        accept = request.headers.get("Accept", "")
        if "apidiscovery.k8s.io" in accept and not _accepts_plain_json(accept):
            raise ApiError(
                "NotAcceptable", "aggregated discovery is not served; ask for application/json", code=406
            )
        parts = [p for p in path.split("/") if p]
        if "protobuf" in accept and "json" not in accept:
            # OpenAPI v2 as protobuf is not served; 406 lets client-go give up on it cleanly.
            raise ApiError("NotAcceptable", "only application/json is served", code=406)
        body: JsonObject | None = None
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if path == "/version":
            body = discovery.SERVER_VERSION
        elif parts == ["api"]:
            body = discovery.api_versions(f"{self.host}:{self.port}")
        elif parts == ["apis"]:
            body = discovery.api_groups(self.registry)
        elif len(parts) == 2 and parts[0] == "api":
            body = discovery.resource_list(self.registry, "", parts[1])
        elif len(parts) == 2 and parts[0] == "apis":
            body = discovery.api_group(self.registry, parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            body = discovery.resource_list(self.registry, parts[1], parts[2])
        elif parts == ["openapi", "v2"]:
            body = openapi.v2_document(self.registry)
        elif parts == ["openapi", "v3"]:
            body = openapi.v3_root(self.registry)
        elif len(parts) >= 4 and parts[:2] == ["openapi", "v3"]:
            rest = parts[2:]
            group, version = (
                ("", rest[1]) if rest[0] == "api" else (rest[1], rest[2] if len(rest) > 2 else "")
            )
            body = openapi.v3_document(self.registry, group, version)
        if body is None:
            raise ApiError("NotFound", "the server could not find the requested resource")
        return json_response(body)

    async def _admin(self, request: web.Request, action: str) -> web.StreamResponse:
        """Fault injection and test hooks; never under a Kubernetes path."""
        if action == "faults" and request.method == "GET":
            return json_response({"faults": self.faults.describe()})
        if action == "faults" and request.method == "DELETE":
            self.faults.clear()
            return json_response({"faults": []})
        if action == "faults" and request.method == "POST":
            spec = await read_body(request)
            if not isinstance(spec, dict):
                raise ApiError(
                    "BadRequest",
                    'expected {"mode": "409|410|429|500|reset", "count": N, '
                    '"verb": "...", "resource": "..."}',
                )
            try:
                self.faults.add(
                    str(spec.get("mode", "")),
                    int(spec.get("count", 1)),
                    str(spec.get("verb", "")),
                    str(spec.get("resource", "")),
                )
            except (ValueError, TypeError) as error:
                raise ApiError("BadRequest", str(error)) from error
            return json_response({"faults": self.faults.describe()}, status=201)
        if action == "drop-watches" and request.method == "POST":
            return json_response({"dropped": self.store.drop_watchers()})
        if action == "compact" and request.method == "POST":
            self.store.compact()
            return json_response({"resourceVersion": str(self.store.resource_version)})
        if action == "stats" and request.method == "GET":
            return json_response(
                {
                    "objects": self.store.count(),
                    "watchers": self.store.watcher_count,
                    "resourceVersion": str(self.store.resource_version),
                }
            )
        raise ApiError("NotFound", f"no devcluster admin action {action!r}")


def _accepts_plain_json(accept: str) -> bool:
    """Whether an Accept header takes plain JSON (client-go lists it after the aggregated types)."""
    for media_range in accept.split(","):
        media_type, _, params = media_range.strip().partition(";")
        if media_type in ("application/json", "*/*", "application/*") and "g=" not in params:
            return True
    return False


async def serve_until(server: DevClusterServer, stop: asyncio.Event) -> None:
    """Run ``server`` until ``stop`` is set."""
    await server.start()
    try:
        await stop.wait()
    finally:
        await server.stop()
