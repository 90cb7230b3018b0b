"""The client's rate limiter: token bucket, order priority, Alpaca's headers and 429s.
Both clocks are fake and moved by the test, so nothing depends on the machine's speed."""

from __future__ import annotations

import asyncio

import pytest

from live.ratelimit import Priority, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def limiter(rate_per_min: float = 60.0, burst: int = 2) -> tuple[RateLimiter, Clock, Clock]:
    mono, wall = Clock(), Clock()
    wall.t = 1_700_000_000.0
    return RateLimiter(rate_per_min, burst, monotonic=mono, wall=wall), mono, wall


async def granted(task: asyncio.Task[None]) -> bool:
    await asyncio.sleep(0.15)  # the limiter looks again every 50 ms at most
    return task.done()


@pytest.mark.asyncio
async def test_burst_then_one_token_per_interval() -> None:
    lim, mono, _ = limiter(rate_per_min=60, burst=2)  # one token a second
    await lim.acquire()
    await lim.acquire()
    third = asyncio.create_task(lim.acquire())
    assert not await granted(third)
    mono.t += 0.5
    assert not await granted(third)
    mono.t += 0.5
    await asyncio.wait_for(third, 5)
    assert lim.granted[Priority.QUERY] == 3
    assert lim.delayed[Priority.QUERY] == 1
    mono.t += 3600  # a quiet hour refills to the burst, not beyond
    assert lim.tokens == 2


@pytest.mark.asyncio
async def test_orders_go_before_waiting_queries() -> None:
    lim, mono, _ = limiter(rate_per_min=60, burst=1)
    await lim.acquire()
    queries = [asyncio.create_task(lim.acquire(Priority.QUERY)) for _ in range(2)]
    await asyncio.sleep(0.01)
    order = asyncio.create_task(lim.acquire(Priority.ORDER))
    await asyncio.sleep(0.01)
    mono.t += 1.0  # exactly one token
    assert await granted(order)
    assert not any(q.done() for q in queries)
    for _ in queries:  # the bucket holds one token: they go one a second
        mono.t += 1.0
        await asyncio.sleep(0.15)
    await asyncio.wait_for(asyncio.gather(*queries), 5)


@pytest.mark.asyncio
async def test_server_headers_cap_tokens_and_pause_until_reset() -> None:
    lim, mono, wall = limiter(rate_per_min=6000, burst=20)
    lim.observe(200, {"X-Ratelimit-Remaining": "3", "X-Ratelimit-Reset": str(wall.t + 30)})
    assert lim.tokens == 3
    lim.observe(200, {"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": str(wall.t + 30)})
    paused = asyncio.create_task(lim.acquire(Priority.ORDER))
    mono.t += 29  # tokens refill, but the server said 0 until its reset
    assert not await granted(paused)
    mono.t += 1.5
    await asyncio.wait_for(paused, 5)
    lim.observe(200, {"X-Ratelimit-Remaining": "garbage"})  # ignored
    assert lim.tokens > 0


@pytest.mark.asyncio
async def test_429_without_reset_pauses_a_second() -> None:
    lim, mono, _ = limiter(rate_per_min=6000, burst=20)
    lim.observe(429, {})
    paused = asyncio.create_task(lim.acquire())
    assert not await granted(paused)
    mono.t += 1.01
    await asyncio.wait_for(paused, 5)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        RateLimiter(0, 5)
    with pytest.raises(ValueError, match="must be > 0"):
        RateLimiter(100, 0)
