"""The shape every devcluster control loop shares: wake on watch events or a resync tick, then reconcile.

Controllers are level-triggered: each pass reads the current objects from the API server (so it always sees
its own writes) and converges them; watches only decide *when* to run a pass.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Sequence

from .client import TRANSIENT_ERRORS, JsonObject, KubeClient, Resource
from .objects import controller_uid, meta, uid_of

log = logging.getLogger(__name__)


async def watch_trigger(client: KubeClient, resources: Sequence[Resource], wake: asyncio.Event) -> None:
    """Set ``wake`` on every event of every watched resource, forever."""

    async def one(res: Resource) -> None:
        async for _event in client.watch_forever(res):
            wake.set()

    await asyncio.gather(*(one(res) for res in resources))


class ControlLoop(abc.ABC):
    """Base class: override ``watched`` and ``reconcile``; ``run`` drives them until ``stop`` is set."""

    name = "controller"
    watched: Sequence[Resource] = ()
    resync_seconds = 1.0
    debounce_seconds = 0.05

    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self.wake = asyncio.Event()

    @abc.abstractmethod
    async def reconcile(self) -> None:
        """One pass: bring what this controller owns in line with what it watches."""

    async def startup(self) -> None:  # noqa: B027 (an optional hook, empty by default)
        """Called once before the first pass."""

    async def shutdown(self) -> None:  # noqa: B027 (an optional hook, empty by default)
        """Called once when the loop stops."""

    async def _sleep_until_woken(self, stop: asyncio.Event) -> None:
        """Wait for a watch event, the resync tick or ``stop``; then let a burst of events settle."""
        waiters = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=self.resync_seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if not stop.is_set():
            await asyncio.sleep(self.debounce_seconds)
        self.wake.clear()

    async def run(self, stop: asyncio.Event) -> None:
        watcher = asyncio.create_task(
            watch_trigger(self.client, self.watched, self.wake), name=f"{self.name} watch"
        )
        try:
            await self.startup()
            while not stop.is_set():
                try:
                    await self.reconcile()
                except TRANSIENT_ERRORS as err:
                    log.warning("%s: pass failed, retrying: %s", self.name, err)
                except Exception:
                    log.exception("%s: pass crashed, retrying", self.name)
                await self._sleep_until_woken(stop)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await self.shutdown()


class OwnerLoop(ControlLoop):
    """A controller of objects that own others (Job → pods, Deployment → ReplicaSets, ...).

    Each pass lists both kinds once, groups the owned objects by their controller's uid, and
    calls ``sync`` for every owner with what it controls; a transient API error skips that owner
    until the next pass instead of stopping the loop.
    """

    owner: Resource
    owned: Resource

    @abc.abstractmethod
    async def sync(self, owner: JsonObject, owned: list[JsonObject]) -> None:
        """Bring one owner's children in line with its spec and write its status."""

    async def reconcile(self) -> None:
        owners, _ = await self.client.list(self.owner)
        children, _ = await self.client.list(self.owned)
        by_owner: dict[str, list[JsonObject]] = {}
        for child in children:
            uid = controller_uid(child)
            if uid:
                by_owner.setdefault(uid, []).append(child)
        for obj in owners:
            try:
                await self.sync(obj, by_owner.get(uid_of(obj), []))
            except TRANSIENT_ERRORS as err:
                log.warning(
                    "%s: %s/%s: %s", self.name, meta(obj).get("namespace"), meta(obj).get("name"), err
                )
