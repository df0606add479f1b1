"""The event bus on its own: fan-out, filters, lag signalling and closing (no cluster needed)."""

from __future__ import annotations

import asyncio

from kubepilot_gateway.bus import EventBus, Lagged, ResourceEvent


def event(
    name: str, kind: str = "ModelPull", namespace: str = "ns", event_type: str = "ADDED"
) -> ResourceEvent:
    obj = {"kind": kind, "metadata": {"name": name, "namespace": namespace, "resourceVersion": "1"}}
    return ResourceEvent(kind, namespace, name, event_type, obj)  # type: ignore[arg-type]


async def test_every_subscriber_receives_each_event_in_order() -> None:
    bus = EventBus()
    first, second = bus.subscribe(), bus.subscribe()
    for index in range(5):
        bus.publish(event(f"m{index}"))
    for subscription in (first, second):
        got = [await anext(subscription) for _ in range(5)]
        assert [item.name for item in got if isinstance(item, ResourceEvent)] == [f"m{i}" for i in range(5)]


async def test_slow_subscriber_is_told_it_lagged_while_a_fast_one_gets_everything() -> None:
    bus = EventBus(queue_size=1000)
    slow = bus.subscribe(queue_size=10)
    fast = bus.subscribe()
    received: list[str] = []

    async def read_fast() -> None:
        async for item in fast:
            assert isinstance(item, ResourceEvent)
            received.append(item.name)

    reader = asyncio.create_task(read_fast())
    for index in range(100):
        bus.publish(event(f"m{index}"))  # never awaits, however full the slow queue is
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    assert received == [f"m{i}" for i in range(100)]

    assert await anext(slow) == Lagged(90)
    rest = [await anext(slow) for _ in range(10)]
    assert [item.name for item in rest if isinstance(item, ResourceEvent)] == [
        f"m{i}" for i in range(90, 100)
    ]
    assert slow.dropped == 90 and slow.pending == 0
    fast.close()
    await asyncio.wait_for(reader, 1)


async def test_subscription_filters_by_kind_and_namespace() -> None:
    bus = EventBus()
    pods_here = bus.subscribe(kinds=["Pod"], namespace="here")
    bus.publish(event("a", kind="ModelPull", namespace="here"))
    bus.publish(event("b", kind="Pod", namespace="elsewhere"))
    bus.publish(event("c", kind="Pod", namespace="here"))
    item = await anext(pods_here)
    assert isinstance(item, ResourceEvent) and item.name == "c"
    assert pods_here.pending == 0


async def test_closing_a_subscription_ends_its_iteration_and_unsubscribes() -> None:
    bus = EventBus()
    subscription = bus.subscribe()
    items: list[object] = []

    async def read() -> None:
        async for item in subscription:
            items.append(item)

    reader = asyncio.create_task(read())
    await asyncio.sleep(0)
    async with subscription:
        bus.publish(event("a"))
        await asyncio.sleep(0.01)
    await asyncio.wait_for(reader, 1)
    assert len(items) == 1
    assert bus.subscriber_count == 0
    bus.publish(event("b"))  # a closed subscriber is no longer offered anything
    assert subscription.pending == 0


async def test_bus_close_ends_every_subscription() -> None:
    bus = EventBus()
    subscriptions = [bus.subscribe() for _ in range(3)]
    bus.close()
    for subscription in subscriptions:
        assert [item async for item in subscription] == []
    assert bus.subscriber_count == 0
