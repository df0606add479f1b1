"""``pods/log``: container logs written by the process kubelet under the data directory.

Contract with the kubelet (``kubelet/paths.py``): container ``c`` of pod ``ns/p`` with uid ``u``
writes ``<data-dir>/pods/<ns>_<p>_<u>/<c>.log`` (``<c>.previous.log`` for the run before its last
restart, served for ``previous=true``). ``follow=true`` streams new output until the pod finishes,
is deleted, or the client goes away.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from kubepilot_devcluster.apiserver.errors import bad_request
from kubepilot_devcluster.apiserver.requests import flag, int_query
from kubepilot_devcluster.apiserver.store import ObjectStore

JsonObject = dict[str, Any]

_POLL_S = 0.2


def log_path(data_dir: Path, pod: JsonObject, container: str, previous: bool = False) -> Path:
    meta = pod["metadata"]
    directory = data_dir / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"
    return directory / (f"{container}.previous.log" if previous else f"{container}.log")


class PodLogs:
    """Serves pod logs from files under ``data_dir``."""

    def __init__(self, data_dir: Path, store: ObjectStore) -> None:
        self.data_dir = data_dir
        self.store = store

    def _container(self, request: web.Request, pod: JsonObject) -> str:
        names = [c.get("name", "") for c in (pod.get("spec") or {}).get("containers") or []]
        chosen = request.query.get("container")
        if chosen:
            init_names = [c.get("name", "") for c in (pod.get("spec") or {}).get("initContainers") or []]
            if chosen not in names + init_names:
                raise bad_request(f"container {chosen} is not valid for pod {pod['metadata']['name']}")
            return chosen
        if len(names) == 1:
            return str(names[0])
        raise bad_request(
            f"a container name must be specified for pod {pod['metadata']['name']}, choose one "
            f"of: [{' '.join(names)}]"
        )

    async def serve(self, request: web.Request, pod: JsonObject) -> web.StreamResponse:
        meta = pod["metadata"]
        previous = flag(request, "previous")
        path = log_path(self.data_dir, pod, self._container(request, pod), previous)
        if previous and not path.exists():
            raise bad_request(
                f'previous terminated container "{self._container(request, pod)}" in pod '
                f'"{meta["name"]}" not found'
            )
        text = path.read_bytes() if path.exists() else b""
        tail = int_query(request, "tailLines")
        if tail is not None:
            lines = text.splitlines(keepends=True)
            text = b"".join(lines[-tail:]) if tail > 0 else b""
        if not flag(request, "follow"):
            return web.Response(body=text, content_type="text/plain")
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(text)
        offset = path.stat().st_size if path.exists() else 0
        while True:
            await asyncio.sleep(_POLL_S)
            transport = request.transport
            if transport is None or transport.is_closing():
                break
            if path.exists() and path.stat().st_size > offset:
                with path.open("rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
                offset += len(chunk)
                await response.write(chunk)
            current = self.store.get(("", "pods"), meta["namespace"], meta["name"])
            if (
                current is None
                or current["metadata"]["uid"] != meta["uid"]
                or (current.get("status") or {}).get("phase") in ("Succeeded", "Failed")
            ):
                break
        await response.write_eof()
        return response
