"""Small asyncio helpers shared by the live processes."""

from __future__ import annotations

import asyncio
import contextlib


async def wait_for_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until ``event`` is set or ``timeout_s`` seconds pass; return ``event.is_set()``."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout_s)
    return event.is_set()


class CountingEvent(asyncio.Event):
    """An :class:`asyncio.Event` for a connection's state that counts its ups: every
    ``set()`` of a cleared event after the first is a reconnect."""

    def __init__(self) -> None:
        super().__init__()
        self.ups = 0

    def set(self) -> None:
        """Mark the connection up (counted if it was down)."""
        if not self.is_set():
            self.ups += 1
        super().set()

    @property
    def reconnects(self) -> int:
        """Connections made after the first one."""
        return max(0, self.ups - 1)
