"""The event bus's subscriptions."""

from __future__ import annotations

import asyncio
import gc

from dockyard.services.events import EventBus


def test_a_subscription_starts_at_the_call_not_at_the_first_read() -> None:
    """The events API subscribes before its headers go: a client that has them and then acts must see
    its own events, even if the daemon reads the subscription later."""
    async def main() -> None:
        bus = EventBus()
        events = bus.subscribe()
        bus.emit("container", "start", "c1")
        ev = await asyncio.wait_for(anext(events), 10)
        assert (ev["Action"], ev["Actor"]["ID"]) == ("start", "c1")
        await events.aclose()  # type: ignore[attr-defined]

    asyncio.run(main())


def test_a_subscription_never_read_is_dropped_with_its_reader() -> None:
    async def main() -> None:
        bus = EventBus()
        events = bus.subscribe()
        assert len(bus._subscribers) == 1
        del events
        gc.collect()
        assert len(bus._subscribers) == 0
        bus.emit("container", "start", "c1")  # nobody to queue it for

    asyncio.run(main())
