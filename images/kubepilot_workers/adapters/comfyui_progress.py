"""Turn ComfyUI's execution events into GenerationProgress.

For the standard graph progress follows the KSampler's steps, which is where the time goes.
For a user's workflow it follows nodes: each node that runs (cached ones do not) is one share
of the work, and a node's own ``progress`` events fill its share.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from kubepilot_api.common import now
from kubepilot_api.generationjob import GenerationProgress


class ComfyProgress:
    """Progress of one prompt, reported through ``report`` after every change."""

    def __init__(
        self,
        report: Callable[[GenerationProgress], None],
        *,
        node_count: int,
        images_total: int,
        by_steps: bool,
    ) -> None:
        self._report = report
        self._node_count = max(1, node_count)
        self._cached: set[str] = set()
        self._done_nodes: list[str] = []
        self._images_total = images_total
        self._by_steps = by_steps
        self._node = ""
        self._step = 0
        self._total_steps = -1
        self._images_done = 0
        self._first_step: tuple[float, int] | None = None
        self._seconds_per_step: float | None = None
        self.started = False
        """ComfyUI began executing this prompt (it can no longer be deleted from the queue)."""

    def execution_started(self) -> None:
        self.started = True
        self._publish()

    def cached(self, nodes: Iterable[str]) -> None:
        self._cached.update(str(node) for node in nodes)
        self._publish()

    def executing(self, node: str) -> None:
        if self._node and self._node != node and self._node not in self._done_nodes:
            self._done_nodes.append(self._node)
        self._node = node
        self.started = True
        if not self._by_steps:
            self._step, self._total_steps = 0, -1
        self._publish()

    def step(self, value: int, maximum: int, node: str | None) -> None:
        self.started = True
        clock = time.monotonic()
        if self._first_step is None or value < self._step:
            # A new sampler run (or the first event): measure the step rate from here.
            self._first_step = (clock, value)
        else:
            first_clock, first_value = self._first_step
            if value > first_value:
                self._seconds_per_step = (clock - first_clock) / (value - first_value)
        if node:
            self._node = node
        self._step, self._total_steps = max(0, value), maximum
        self._publish()

    def images_written(self, count: int) -> None:
        self._images_done += count
        self._publish()

    def finished(self, images: int) -> None:
        """The prompt is done and ``images`` outputs were collected."""
        self._images_done = images
        self._images_total = images
        self._publish(final=True)

    def _percent(self) -> int:
        step_fraction = self._step / self._total_steps if self._total_steps > 0 else 0.0
        if self._by_steps:
            return min(99, int(100 * step_fraction)) if self._total_steps > 0 else -1
        to_run = max(1, self._node_count - len(self._cached))
        done = len(self._done_nodes) + step_fraction
        return min(99, int(100 * done / to_run))

    def _publish(self, *, final: bool = False) -> None:
        eta = -1
        if self._seconds_per_step is not None and self._total_steps > 0:
            eta = max(0, round(self._seconds_per_step * (self._total_steps - self._step)))
        self._report(
            GenerationProgress(
                step=self._total_steps if final and self._total_steps > 0 else self._step,
                totalSteps=self._total_steps,
                imagesDone=self._images_done,
                imagesTotal=self._images_total,
                percent=100 if final else self._percent(),
                currentNode="" if final else self._node[:200],
                etaSeconds=0 if final else eta,
                lastUpdatedTime=now(),
            )
        )
