"""Unit tests of the asyncio WorkQueue: coalescing, re-queue while active, delays, backoff."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from kubepilot_operator.workqueue import WorkKey, WorkQueue

KEY = WorkKey("modelpulls", "ns", "a")
OTHER = WorkKey("modelpulls", "ns", "b")
Worker = Callable[[WorkKey], Awaitable[float | None]]


class Recorder:
    """A worker that records when each key was processed."""

    def __init__(self) -> None:
        self.calls: list[tuple[WorkKey, float]] = []
        self.errors: list[tuple[WorkKey, Exception]] = []

    async def __call__(self, key: WorkKey) -> float | None:
        self.calls.append((key, asyncio.get_running_loop().time()))
        return None

    def on_error(self, key: WorkKey, error: Exception) -> None:
        self.errors.append((key, error))

    def count(self, key: WorkKey = KEY) -> int:
        return sum(1 for k, _ in self.calls if k == key)


@contextlib.asynccontextmanager
async def running(
    queue: WorkQueue, worker: Worker, on_error: Callable[[WorkKey, Exception], None]
) -> AsyncIterator[None]:
    task = asyncio.create_task(queue.run(worker, on_error))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(condition: Callable[[], bool], within: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"condition not met within {within} s")


async def test_key_added_many_times_while_queued_is_processed_once() -> None:
    queue, recorder = WorkQueue(), Recorder()
    for _ in range(10):
        queue.add(KEY)
    assert queue.pending() == 1
    async with running(queue, recorder, recorder.on_error):
        await until(lambda: recorder.count() == 1)
        await asyncio.sleep(0.05)
    assert recorder.count() == 1


async def test_distinct_keys_are_each_processed() -> None:
    queue, recorder = WorkQueue(), Recorder()
    queue.add(KEY)
    queue.add(OTHER)
    async with running(queue, recorder, recorder.on_error):
        await until(lambda: recorder.count(KEY) == 1 and recorder.count(OTHER) == 1)


async def test_key_added_while_processing_is_processed_again_afterwards() -> None:
    queue = WorkQueue()
    started, release = asyncio.Event(), asyncio.Event()
    calls: list[str] = []

    async def worker(key: WorkKey) -> float | None:
        calls.append("start")
        if len(calls) == 1:
            started.set()
            await release.wait()
        calls.append("end")
        return None

    queue.add(KEY)
    async with running(queue, worker, lambda k, e: None):
        await started.wait()
        queue.add(KEY)
        queue.add(KEY)
        await asyncio.sleep(0.02)
        assert calls == ["start"]  # never two passes of one key at once
        release.set()
        await until(lambda: len(calls) == 4)
        await asyncio.sleep(0.05)
    assert calls == ["start", "end", "start", "end"]


async def test_delayed_add_fires_after_the_delay() -> None:
    queue, recorder = WorkQueue(), Recorder()
    async with running(queue, recorder, recorder.on_error):
        start = asyncio.get_running_loop().time()
        queue.add(KEY, delay=0.2)
        assert queue.pending() == 1
        await asyncio.sleep(0.1)
        assert recorder.count() == 0
        await until(lambda: recorder.count() == 1)
    assert recorder.calls[0][1] - start >= 0.19


async def test_earlier_delayed_request_wins() -> None:
    queue, recorder = WorkQueue(), Recorder()
    async with running(queue, recorder, recorder.on_error):
        start = asyncio.get_running_loop().time()
        queue.add(KEY, delay=5.0)
        queue.add(KEY, delay=0.1)
        queue.add(KEY, delay=3.0)  # later than the one held: ignored
        await until(lambda: recorder.count() == 1, within=1.0)
        await asyncio.sleep(0.1)
    assert recorder.count() == 1
    assert recorder.calls[0][1] - start < 1.0


async def test_worker_result_requeues_after_that_many_seconds() -> None:
    queue = WorkQueue()
    times: list[float] = []

    async def worker(key: WorkKey) -> float | None:
        times.append(asyncio.get_running_loop().time())
        return 0.1 if len(times) == 1 else None

    queue.add(KEY)
    async with running(queue, worker, lambda k, e: None):
        await until(lambda: len(times) == 2)
        await asyncio.sleep(0.15)
    assert len(times) == 2
    assert times[1] - times[0] >= 0.09


async def test_failing_worker_is_retried_with_backoff_and_reported() -> None:
    queue = WorkQueue()
    times: list[float] = []
    errors: list[tuple[WorkKey, Exception]] = []
    boom = RuntimeError("api down")

    async def worker(key: WorkKey) -> float | None:
        times.append(asyncio.get_running_loop().time())
        if len(times) == 1:
            raise boom
        return None

    queue.add(KEY)
    async with running(queue, worker, lambda k, e: errors.append((k, e))):
        await until(lambda: len(times) == 2)
    assert errors == [(KEY, boom)]
    assert times[1] - times[0] >= 0.45  # first retry after 0.5 s


async def test_add_coalesced_waits_for_the_interval_after_the_last_pass() -> None:
    queue, recorder = WorkQueue(), Recorder()
    queue.add_coalesced(KEY, 0.3)  # never processed: at once
    async with running(queue, recorder, recorder.on_error):
        await until(lambda: recorder.count() == 1, within=0.25)
        done = asyncio.get_running_loop().time()
        queue.add_coalesced(KEY, 0.3)
        queue.add_coalesced(KEY, 0.3)
        await asyncio.sleep(0.15)
        assert recorder.count() == 1
        await until(lambda: recorder.count() == 2)
        await asyncio.sleep(0.05)
    assert recorder.count() == 2
    assert recorder.calls[1][1] - done >= 0.25


async def test_forget_cancels_a_delayed_pass() -> None:
    queue, recorder = WorkQueue(), Recorder()
    async with running(queue, recorder, recorder.on_error):
        queue.add(KEY, delay=0.05)
        queue.forget(KEY)
        assert queue.pending() == 0
        await asyncio.sleep(0.15)
    assert recorder.count() == 0
