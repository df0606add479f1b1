"""Services: cluster IP allocation, Endpoints and EndpointSlices, and the userspace proxy table.

The API server gives every Service of type ClusterIP (also NodePort/LoadBalancer, which the devcluster
treats as ClusterIP) a ``spec.clusterIP`` from 127.2.0.0/16; one outside that block (set by hand in a
manifest, say) is replaced through a patch, because only loopback addresses can be proxied on this machine.

Its selector picks pods of its namespace that have a pod IP and are not finished or terminating; ready
pods become ``addresses``, others ``notReadyAddresses``. Only ready addresses receive proxied connections.
Headless (``clusterIP: None``) services get Endpoints but no proxy. A Service without a selector is
proxied to the Endpoints its owner maintains (any address, e.g. a process on 127.0.0.1).

There is no cluster DNS: reach a Service through ``spec.clusterIP`` or its Endpoints.
"""

from __future__ import annotations

import logging
from typing import Any

from ..kubelet.network import SERVICE_NETWORK, AddressPool
from .base import ControlLoop
from .client import ENDPOINTS, ENDPOINTSLICES, PODS, SERVICES, TRANSIENT_ERRORS, ApiError, KubeClient
from .objects import is_ready, map_selector_matches, meta, owner_reference, template_hash
from .proxy import Address, ServiceProxy

log = logging.getLogger(__name__)
JsonObject = dict[str, Any]
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "devcluster-endpointslice-controller"


def _target_port(service_port: JsonObject, pod: JsonObject) -> int | None:
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    text = str(target)
    if text.isdigit():
        return int(text)
    for container in (pod.get("spec") or {}).get("containers") or []:
        for declared in container.get("ports") or []:
            if declared.get("name") == text:
                return int(declared.get("containerPort", 0))
    return None


def endpoint_groups(service: JsonObject, pods: list[JsonObject]) -> list[JsonObject]:
    """Endpoints ``subsets``: pods grouped by their resolved ports, addresses sorted by IP."""
    spec = service.get("spec") or {}
    namespace = meta(service).get("namespace")
    groups: dict[tuple[tuple[str, int, str], ...], JsonObject] = {}
    for pod in sorted(pods, key=lambda p: str((p.get("status") or {}).get("podIP", ""))):
        pod_meta = meta(pod)
        status = pod.get("status") or {}
        if pod_meta.get("namespace") != namespace or not status.get("podIP"):
            continue
        if pod_meta.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
            continue
        if not map_selector_matches(spec.get("selector"), pod_meta.get("labels") or {}):
            continue
        ports = []
        for service_port in spec.get("ports") or []:
            target = _target_port(service_port, pod)
            if target is not None:
                ports.append(
                    (str(service_port.get("name", "")), target, str(service_port.get("protocol", "TCP")))
                )
        key = tuple(ports)
        group = groups.setdefault(
            key,
            {
                "addresses": [],
                "notReadyAddresses": [],
                "ports": [{"name": n, "port": p, "protocol": pr} for n, p, pr in key],
            },
        )
        address = {
            "ip": status["podIP"],
            "nodeName": (pod.get("spec") or {}).get("nodeName", ""),
            "targetRef": {
                "kind": "Pod",
                "name": pod_meta.get("name"),
                "namespace": namespace,
                "uid": pod_meta.get("uid"),
            },
        }
        group["addresses" if is_ready(pod) else "notReadyAddresses"].append(address)
    return list(groups.values())


def compact_subsets(subsets: list[JsonObject]) -> list[JsonObject]:
    """Subsets as the API server stores them: empty address lists omitted, empty subsets dropped."""
    out = []
    for subset in subsets:
        kept = {k: v for k, v in subset.items() if v or k == "ports"}
        if kept.get("addresses") or kept.get("notReadyAddresses"):
            out.append(kept)
    return out


def proxy_entries(service: JsonObject, subsets: list[JsonObject]) -> dict[Address, list[Address]]:
    """Frontends (clusterIP, port) of a Service and the ready backends for each."""
    spec = service.get("spec") or {}
    cluster_ip = spec.get("clusterIP")
    if not cluster_ip or cluster_ip == "None":
        return {}
    table: dict[Address, list[Address]] = {}
    for service_port in spec.get("ports") or []:
        if str(service_port.get("protocol", "TCP")) != "TCP":
            continue
        name = str(service_port.get("name", ""))
        backends: list[Address] = []
        for subset in subsets:
            port = next((p.get("port") for p in subset.get("ports") or [] if p.get("name", "") == name), None)
            if port is not None:
                backends.extend((str(a["ip"]), int(port)) for a in subset.get("addresses", []))
        table[(str(cluster_ip), int(service_port.get("port", 0)))] = backends
    return table


def endpoint_slices(service: JsonObject, subsets: list[JsonObject]) -> list[JsonObject]:
    """One discovery.k8s.io/v1 EndpointSlice per port group."""
    name = str(meta(service)["name"])
    slices = []
    for subset in subsets:
        endpoints = [
            {
                "addresses": [a["ip"]],
                "conditions": {"ready": ready, "serving": ready, "terminating": False},
                "nodeName": a["nodeName"],
                "targetRef": a["targetRef"],
            }
            for key, ready in (("addresses", True), ("notReadyAddresses", False))
            for a in subset.get(key, [])
        ]
        slices.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-{template_hash({'ports': subset['ports']})[:5]}",
                    "namespace": meta(service).get("namespace"),
                    "labels": {SERVICE_NAME_LABEL: name, MANAGED_BY_LABEL: MANAGED_BY},
                    "ownerReferences": [owner_reference(service, "v1", "Service")],
                },
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": subset["ports"],
            }
        )
    return slices


class ServiceController(ControlLoop):
    """Allocates cluster IPs, keeps Endpoints/EndpointSlices current and drives the proxy."""

    name = "service-controller"
    watched = (SERVICES, PODS)

    def __init__(self, client: KubeClient) -> None:
        super().__init__(client)
        self.pool = AddressPool(SERVICE_NETWORK)
        self.proxy = ServiceProxy()
        self._slices_supported = True

    async def reconcile(self) -> None:
        services, _ = await self.client.list(SERVICES)
        pods, _ = await self.client.list(PODS)
        for service in services:
            self.pool.reserve(str((service.get("spec") or {}).get("clusterIP") or ""))
        table: dict[Address, list[Address]] = {}
        manual: dict[tuple[str, str], list[JsonObject]] | None = None
        for service in services:
            try:
                await self._allocate(service)
                if (service.get("spec") or {}).get("selector"):
                    subsets = endpoint_groups(service, pods)
                    await self._write_endpoints(service, subsets)
                    await self._write_slices(service, subsets)
                else:
                    # Without a selector the user manages the Endpoints; the proxy still follows them.
                    if manual is None:
                        manual = await self._manual_endpoints()
                    subsets = manual.get(
                        (str(meta(service).get("namespace")), str(meta(service)["name"])), []
                    )
                table |= proxy_entries(service, subsets)
            except TRANSIENT_ERRORS as err:
                log.warning("service %s: %s", meta(service).get("name"), err)
        await self.proxy.update(table)

    async def _manual_endpoints(self) -> dict[tuple[str, str], list[JsonObject]]:
        endpoints, _ = await self.client.list(ENDPOINTS)
        return {
            (str(meta(e).get("namespace")), str(meta(e).get("name"))): list(e.get("subsets") or [])
            for e in endpoints
        }

    async def _allocate(self, service: JsonObject) -> None:
        spec = service.setdefault("spec", {})
        current = str(spec.get("clusterIP") or "")
        # An address outside 127.2.0.0/16 (e.g. one the API server defaulted) cannot be proxied here.
        if spec.get("type") == "ExternalName" or current == "None" or current in self.pool:
            return
        address = self.pool.allocate()
        patched = await self.client.patch(
            SERVICES,
            meta(service).get("namespace"),
            meta(service)["name"],
            {"spec": {"clusterIP": address, "clusterIPs": [address]}},
        )
        if patched is None:
            self.pool.release(address)
            return
        spec["clusterIP"] = address

    async def _write_endpoints(self, service: JsonObject, subsets: list[JsonObject]) -> None:
        namespace, name = meta(service).get("namespace"), str(meta(service)["name"])
        subsets = compact_subsets(subsets)
        current = await self.client.get(ENDPOINTS, namespace, name)
        if current is None:
            body = {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": dict(meta(service).get("labels") or {}),
                },
                "subsets": subsets,
            }
            await self.client.create(ENDPOINTS, namespace, body)
        elif (current.get("subsets") or []) != subsets:
            await self.client.patch(ENDPOINTS, namespace, name, {"subsets": subsets})

    async def _write_slices(self, service: JsonObject, subsets: list[JsonObject]) -> None:
        if not self._slices_supported:
            return
        namespace, name = meta(service).get("namespace"), str(meta(service)["name"])
        try:
            existing, _ = await self.client.list(ENDPOINTSLICES, namespace, f"{SERVICE_NAME_LABEL}={name}")
        except ApiError as err:
            if err.status == 404:
                log.warning(
                    "the API server serves no discovery.k8s.io/v1 EndpointSlices; only Endpoints are kept"
                )
                self._slices_supported = False
                return
            raise
        by_name = {
            meta(s)["name"]: s
            for s in existing
            if (meta(s).get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY
        }
        for wanted in endpoint_slices(service, subsets):
            slice_name = wanted["metadata"]["name"]
            current = by_name.pop(slice_name, None)
            if current is None:
                await self.client.create(ENDPOINTSLICES, namespace, wanted)
            elif current.get("endpoints") != wanted["endpoints"] or current.get("ports") != wanted["ports"]:
                await self.client.patch(
                    ENDPOINTSLICES,
                    namespace,
                    slice_name,
                    {"endpoints": wanted["endpoints"], "ports": wanted["ports"]},
                )
        for stale in by_name:
            await self.client.delete(ENDPOINTSLICES, namespace, stale)

    async def shutdown(self) -> None:
        await self.proxy.close()
