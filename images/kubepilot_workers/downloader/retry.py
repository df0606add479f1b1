"""Waiting out rate limits and passing server trouble: backoff with jitter, Retry-After, a time budget.

A busy Hub answers 429 to some requests and not others; what matters is how long it keeps refusing,
not how many times. So each request is retried on its own (a file's metadata call apart from its
transfer, the revision apart from the file list), with waits that grow exponentially and carry
random jitter (pods started together do not come back together), never shorter than the server's
``Retry-After``, until the request has been refused for the retry budget: by default five minutes,
``$KUBEPILOT_DOWNLOAD_RETRY_SECONDS`` to change it. Server errors (5xx) share the budget but also
give up after a few attempts: a broken server rarely heals while we wait.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from kubepilot_workers.downloader.errors import DownloadError, ErrorCode, Interrupted

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_BUDGET_ENV = "KUBEPILOT_DOWNLOAD_RETRY_SECONDS"
DEFAULT_RETRY_BUDGET_SECONDS = 300.0
BACKOFF_BASE_SECONDS = 0.25
BACKOFF_CAP_SECONDS = 30.0
SERVER_ERROR_ATTEMPTS = 5


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how patiently one request is retried."""

    budget_seconds: float = DEFAULT_RETRY_BUDGET_SECONDS
    base_seconds: float = BACKOFF_BASE_SECONDS
    cap_seconds: float = BACKOFF_CAP_SECONDS
    server_error_attempts: int = SERVER_ERROR_ATTEMPTS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RetryPolicy:
        """The policy with the budget from ``$KUBEPILOT_DOWNLOAD_RETRY_SECONDS``; ValueError when invalid."""
        raw = (os.environ if environ is None else environ).get(RETRY_BUDGET_ENV, "").strip()
        if not raw:
            return cls()
        try:
            budget = float(raw)
        except ValueError:
            budget = math.nan
        if not math.isfinite(budget) or budget < 0:
            raise ValueError(f"{RETRY_BUDGET_ENV} must be a number of seconds >= 0, not {raw!r}")
        return cls(budget_seconds=budget)

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """The wait before retry number ``attempt`` (1, 2, ...) without a server hint: "equal jitter",
        half the exponential step for sure and the other half at random."""
        step = min(self.cap_seconds, self.base_seconds * 2.0 ** min(attempt - 1, 30))
        return step / 2 + rng.uniform(0, step / 2)


class Retrier:
    """The retries of one request: call :meth:`wait` after each failure, then try again."""

    def __init__(self, policy: RetryPolicy, stop: threading.Event, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.attempts = 0
        """Failures so far."""
        self._stop = stop
        self._rng = rng or random.Random()
        self._server_errors = 0
        self._started = time.monotonic()

    def wait(self, error: DownloadError) -> None:
        """Sleep until the next try; raises ``error`` (told how long it was retried) when it is not
        worth another try or the budget is spent, :class:`Interrupted` when a stop comes first."""
        if not error.retryable:
            raise error
        self.attempts += 1
        elapsed = time.monotonic() - self._started
        if error.code is not ErrorCode.RATE_LIMITED:
            self._server_errors += 1
            if self._server_errors >= self.policy.server_error_attempts:
                raise self._given_up(error, elapsed, "")
        remaining = self.policy.budget_seconds - elapsed
        hint = error.retry_after
        if remaining <= 0:
            raise self._given_up(error, elapsed, "")
        if hint is not None and hint > remaining:
            # Trying before the server allows is pointless, and waiting would outlast the budget.
            raise self._given_up(error, elapsed, f"; the server asked to wait {hint:.0f}s more")
        delay = self.policy.backoff(self.attempts, self._rng)
        if hint is not None:
            delay = max(delay, hint)
        # The last wait is cut to the budget, so the final try comes when the budget ends.
        delay = min(delay, remaining)
        log.warning("%s; retrying in %.1fs (attempt %d)", error.message, delay, self.attempts + 1)
        if self._stop.wait(delay):
            raise Interrupted("stop requested while waiting to retry")

    def _given_up(self, error: DownloadError, elapsed: float, detail: str) -> DownloadError:
        budget = self.policy.budget_seconds
        message = (
            f"{error.message}; gave up after {self.attempts} attempt(s) in {elapsed:.1f}s "
            f"(retry budget {budget:g}s, ${RETRY_BUDGET_ENV}){detail}"
        )
        return DownloadError(error.code, message, retry_after=error.retry_after)


def call_with_retries(call: Callable[[], T], policy: RetryPolicy, stop: threading.Event) -> T:
    """``call()``, tried again while it raises a retryable :class:`DownloadError` (see :class:`Retrier`)."""
    retrier = Retrier(policy, stop)
    while True:
        try:
            return call()
        except DownloadError as error:
            retrier.wait(error)
