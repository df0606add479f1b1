"""Exponential backoff with jitter, so informers that lost the API server do not return in step."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delays of initial·2ⁿ capped at ``maximum``, each shortened by a random part up to ``jitter``."""

    def __init__(
        self,
        initial: float,
        maximum: float,
        jitter: float = 0.5,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self._rng = rng
        self.attempt = 0

    def next(self) -> float:
        # The exponent is capped: 2**n times a float overflows after about a thousand failures.
        delay = min(self.maximum, self.initial * 2.0 ** min(self.attempt, 62))
        self.attempt += 1
        return delay * (1 - self.jitter * self._rng())

    def reset(self) -> None:
        self.attempt = 0
