"""Controller building blocks without a server: selectors, endpoints, index lists and the TCP proxy."""

from __future__ import annotations

import asyncio
import contextlib

from kubepilot_devcluster.controllers.job import format_indexes
from kubepilot_devcluster.controllers.objects import (
    merge_conditions,
    selector_matches,
    template_hash,
)
from kubepilot_devcluster.controllers.proxy import ServiceProxy
from kubepilot_devcluster.controllers.services import compact_subsets, endpoint_groups, proxy_entries


def _pod(
    name: str, ip: str, ready: bool, labels: dict[str, str], port_name: str = "http"
) -> dict[str, object]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "labels": labels},
        "spec": {"nodeName": "n", "containers": [{"ports": [{"name": port_name, "containerPort": 8188}]}]},
        "status": {
            "podIP": ip,
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


SERVICE = {
    "metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid"},
    "spec": {
        "clusterIP": "127.2.0.7",
        "selector": {"app": "web"},
        "ports": [{"name": "h", "port": 80, "targetPort": "http"}],
    },
}


def test_label_selectors_match_labels_and_expressions() -> None:
    labels = {"app": "web", "tier": "front"}
    assert selector_matches({"matchLabels": {"app": "web"}}, labels)
    assert selector_matches(
        {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]}, labels
    )
    assert not selector_matches({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, labels)
    assert not selector_matches({}, labels)


def test_endpoints_split_ready_and_not_ready_and_skip_other_pods() -> None:
    pods = [
        _pod("a", "127.1.0.3", True, {"app": "web"}),
        _pod("b", "127.1.0.2", False, {"app": "web"}),
        _pod("c", "127.1.0.4", True, {"app": "db"}),
        _pod("d", "", True, {"app": "web"}),
    ]
    subsets = endpoint_groups(SERVICE, pods)
    assert len(subsets) == 1
    assert [a["ip"] for a in subsets[0]["addresses"]] == ["127.1.0.3"]
    assert [a["ip"] for a in subsets[0]["notReadyAddresses"]] == ["127.1.0.2"]
    assert subsets[0]["ports"] == [{"name": "h", "port": 8188, "protocol": "TCP"}]
    assert proxy_entries(SERVICE, subsets) == {("127.2.0.7", 80): [("127.1.0.3", 8188)]}
    assert compact_subsets([{"addresses": [], "notReadyAddresses": [], "ports": []}]) == []


def test_completed_indexes_are_compressed_like_kubernetes() -> None:
    assert format_indexes({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"
    assert format_indexes(set()) == ""


def test_template_hash_is_stable_and_sensitive_to_changes() -> None:
    template = {"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [{"name": "c"}]}}
    assert template_hash(template) == template_hash(
        {"spec": {"containers": [{"name": "c"}]}, "metadata": {"labels": {"a": "1"}}}
    )
    assert template_hash(template) != template_hash({**template, "metadata": {"annotations": {"r": "now"}}})


def test_merge_conditions_keeps_transition_time_when_status_is_unchanged() -> None:
    old = [{"type": "Available", "status": "True", "reason": "A", "lastTransitionTime": "t0"}]
    new = [{"type": "Available", "status": "True", "reason": "B", "lastTransitionTime": "t1"}]
    merged = merge_conditions(old, new)
    assert merged[0]["reason"] == "B" and merged[0]["lastTransitionTime"] == "t0"


async def test_proxy_forwards_round_robin_and_closes_without_backends() -> None:
    async def serve(tag: bytes) -> asyncio.Server:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            data = await reader.read(100)
            writer.write(tag + b":" + data)
            await writer.drain()
            writer.close()

        return await asyncio.start_server(handle, "127.1.0.50", 0)

    one, two = await serve(b"one"), await serve(b"two")
    backends = [("127.1.0.50", s.sockets[0].getsockname()[1]) for s in (one, two)]
    probe = await asyncio.start_server(lambda r, w: None, "127.2.0.50", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    proxy = ServiceProxy()
    await proxy.update({("127.2.0.50", port): backends})

    async def ask() -> bytes:
        reader, writer = await asyncio.open_connection("127.2.0.50", port)
        writer.write(b"hi")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return answer

    answers = {await ask(), await ask()}
    assert answers == {b"one:hi", b"two:hi"}
    await proxy.update({("127.2.0.50", port): []})
    reader, writer = await asyncio.open_connection("127.2.0.50", port)
    # Closed before or after our read: either way the connection gets no service.
    with contextlib.suppress(ConnectionResetError):
        assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    await proxy.close()
    assert proxy.listening == set()
    for server in (one, two):
        server.close()
        await server.wait_closed()
