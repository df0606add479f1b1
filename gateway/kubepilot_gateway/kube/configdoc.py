"""A document kept in one key of a ConfigMap, parsed and cached for a few seconds.

Profiles keep admin-editable documents in ConfigMaps (ControlPilot's model manifest, ComfyUI-Docker's
preset catalog): a person edits them with ``kubectl edit``, and every request reads them. Reading
the API server on every request would cost a round trip per call, so a document is read at most
once per ``ttl`` seconds; concurrent readers share that one read, and the text is parsed only when
it changed. A missing ConfigMap or key means the built-in default. When the API server fails after
a first good read, the last document read keeps serving (one new try per ``ttl``); a failure on the
very first read has no document to fall back on and is raised, through ``first_failure`` where the
profile answers it in its own way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from kubepilot_gateway.kube.client import KubeClient
from kubepilot_gateway.kube.errors import KubeError, NotFound
from kubepilot_gateway.kube.resources import CONFIGMAPS

log = logging.getLogger(__name__)


class Parsed(Protocol):
    """A parsed document: what could not be read in it is reported, not raised."""

    @property
    def problems(self) -> tuple[str, ...]: ...


DocumentT = TypeVar("DocumentT", bound=Parsed)


class ConfigMapDocument(Generic[DocumentT]):
    """``data[key]`` of the ConfigMap ``namespace/name``, parsed with ``parse``."""

    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        name: str,
        key: str,
        *,
        ttl: float,
        parse: Callable[[str], DocumentT],
        default_text: str,
        what: str,
        first_failure: Callable[[KubeError], Exception] | None = None,
    ) -> None:
        self._client = client
        self._path = CONFIGMAPS.path(namespace, name)
        self._name = name
        self._key = key
        self._ttl = ttl
        self._parse = parse
        self._default_text = default_text
        self._what = what
        self._first_failure = first_failure
        self._lock = asyncio.Lock()
        self._document: DocumentT | None = None
        self._text: str | None = None
        self._read_at = 0.0

    async def get(self) -> DocumentT:
        async with self._lock:
            fresh = time.monotonic() - self._read_at < self._ttl
            if self._document is not None and fresh:
                return self._document
            text = await self._read()
            if self._document is None or text != self._text:
                self._document = self._parse(text)
                self._text = text
                for problem in self._document.problems:
                    log.warning("%s %s: %s", self._what, self._name, problem)
            self._read_at = time.monotonic()
            return self._document

    async def _read(self) -> str:
        try:
            configmap = await self._client.request("GET", self._path)
        except NotFound:
            return self._default_text
        except KubeError as error:
            if self._text is None:
                if self._first_failure is not None:
                    raise self._first_failure(error) from error
                raise
            log.warning("reading the %s failed (%s); serving the last one read", self._what, error)
            return self._text
        return str((configmap.get("data") or {}).get(self._key) or "")
