"""``ConfigMapDocument``: a profile's admin-edited document, read from the devcluster and cached.

The profiles' own tests (ControlPilot's manifest, ComfyUI-Docker's catalog) cover it through
their routes; these pin the helper's contract on its own: the default when the ConfigMap is
missing, one read shared by concurrent callers, a parse only when the text changed, the last
document serving through a failing API server, and a first failure raised as the profile maps it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, cast

import pytest

from kubepilot_devcluster.testing import DevCluster
from kubepilot_gateway.kube import CONFIGMAPS, KubeClient, KubeError
from kubepilot_gateway.kube.configdoc import ConfigMapDocument

NAME, KEY = "doc-under-test", "doc"


@dataclass(frozen=True)
class Lines:
    """A toy document: one entry a line, a line starting with ``!`` is a problem."""

    entries: tuple[str, ...]
    problems: tuple[str, ...]


class Parser:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, text: str) -> Lines:
        self.calls += 1
        lines = [line for line in text.splitlines() if line]
        return Lines(
            tuple(line for line in lines if not line.startswith("!")),
            tuple(line for line in lines if line.startswith("!")),
        )


class Mapped(Exception):
    pass


def _doc(kube: KubeClient, namespace: str, parser: Parser, ttl: float = 60.0) -> ConfigMapDocument[Lines]:
    return ConfigMapDocument(
        kube,
        namespace,
        NAME,
        KEY,
        ttl=ttl,
        parse=parser,
        default_text="built-in\n",
        what="test document",
        first_failure=lambda error: Mapped(str(error)),
    )


async def _write(kube: KubeClient, namespace: str, text: str) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": NAME}, "data": {KEY: text}}
    try:
        await kube.request("POST", CONFIGMAPS.path(namespace), body=body)
    except KubeError:
        await kube.request(
            "PATCH",
            CONFIGMAPS.path(namespace, NAME),
            body={"data": {KEY: text}},
            content_type="application/merge-patch+json",
        )


async def test_a_missing_configmap_is_the_default(kube: KubeClient, namespace: str) -> None:
    assert (await _doc(kube, namespace, Parser()).get()).entries == ("built-in",)


class CountingClient:
    """The real client, counting the requests that go through it."""

    def __init__(self, inner: KubeClient) -> None:
        self.inner = inner
        self.requests = 0

    async def request(self, *args: Any, **kwargs: Any) -> Any:
        self.requests += 1
        return await self.inner.request(*args, **kwargs)


async def test_concurrent_callers_share_one_read_and_one_parse(kube: KubeClient, namespace: str) -> None:
    await _write(kube, namespace, "a\nb\n")
    parser, counting = Parser(), CountingClient(kube)
    doc = _doc(cast(KubeClient, counting), namespace, parser)
    results = await asyncio.gather(*(doc.get() for _ in range(10)))
    assert {r.entries for r in results} == {("a", "b")}
    assert (counting.requests, parser.calls) == (1, 1)


async def test_the_text_is_parsed_again_only_when_it_changed(kube: KubeClient, namespace: str) -> None:
    await _write(kube, namespace, "a\n!bad line\n")
    parser = Parser()
    doc = _doc(kube, namespace, parser, ttl=0)
    first = await doc.get()
    assert (first.entries, first.problems) == (("a",), ("!bad line",))
    assert await doc.get() is first  # read again (TTL 0), same text: the same document
    assert parser.calls == 1
    await _write(kube, namespace, "c\n")
    assert (await doc.get()).entries == ("c",)
    assert parser.calls == 2


async def test_the_ttl_holds_an_edit_back_until_it_passes(kube: KubeClient, namespace: str) -> None:
    await _write(kube, namespace, "a\n")
    doc = _doc(kube, namespace, Parser(), ttl=0.4)
    assert (await doc.get()).entries == ("a",)
    await _write(kube, namespace, "b\n")
    assert (await doc.get()).entries == ("a",)
    await asyncio.sleep(0.5)
    assert (await doc.get()).entries == ("b",)


async def test_the_last_document_serves_through_a_failing_api_server(
    kube: KubeClient, namespace: str, devcluster: DevCluster
) -> None:
    await _write(kube, namespace, "a\n")
    doc = _doc(kube, namespace, Parser(), ttl=0)
    assert (await doc.get()).entries == ("a",)
    devcluster.inject_fault("500", count=100, verb="get", resource="configmaps")
    assert (await doc.get()).entries == ("a",)


async def test_a_first_read_that_fails_is_raised_as_the_profile_maps_it(
    kube: KubeClient, namespace: str, devcluster: DevCluster
) -> None:
    await _write(kube, namespace, "a\n")
    doc = _doc(kube, namespace, Parser())
    devcluster.inject_fault("500", count=100, verb="get", resource="configmaps")
    with pytest.raises(Mapped):
        await doc.get()
    devcluster.clear_faults()
    assert (await doc.get()).entries == ("a",)  # nothing cached from the failure
