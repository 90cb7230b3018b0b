"""Client-side rate limiting of the Alpaca Trading API.

Alpaca allows 200 requests per minute per account, paper and live alike, and reports
the budget on every response in ``X-Ratelimit-Limit``, ``X-Ratelimit-Remaining`` and
``X-Ratelimit-Reset`` (epoch seconds); past it, requests get 429 (alpaca.md §3). The
:class:`RateLimiter` keeps below that on its own (a token bucket of 180 per minute with
a burst of 20: the algorithm of RFC 2697's committed bucket, without the colours),
believes the server when it says fewer requests are left, stops until the reset after a
429, and lets order submission, replacement and cancellation go before queries.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import Callable, Mapping

#: Alpaca's limit is 200/min; staying 10 % under leaves room for other tools on the key.
DEFAULT_RATE_PER_MIN = 180.0
DEFAULT_BURST = 20
#: Pause after a 429 that carries no usable ``X-Ratelimit-Reset``, seconds.
DEFAULT_429_PAUSE_S = 1.0
#: Longest sleep of a waiting request before it looks again, seconds.
_MAX_SLEEP_S = 0.05


class Priority(enum.IntEnum):
    """Who goes first when tokens are short: orders (submit/replace/cancel) before
    queries (lists, lookups, account, positions, clock)."""

    ORDER = 0
    QUERY = 1


class RateLimiter:
    """A token bucket with two priorities that also obeys Alpaca's rate-limit headers.

    Parameters
    ----------
    rate_per_min : float
        Sustained requests per minute (> 0); Alpaca's limit is 200.
    burst : int
        Bucket capacity: requests that may go back to back after a quiet spell (>= 1).
    monotonic, wall : callable
        Clocks in seconds (injectable for tests): ``monotonic`` for the bucket,
        ``wall`` (epoch seconds) to read ``X-Ratelimit-Reset``.

    Raises
    ------
    ValueError
        Non-positive ``rate_per_min`` or ``burst``.
    """

    def __init__(
        self,
        rate_per_min: float = DEFAULT_RATE_PER_MIN,
        burst: int = DEFAULT_BURST,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not rate_per_min > 0 or burst < 1:
            raise ValueError(f"rate limiter: rate {rate_per_min}/min and burst {burst} must be > 0")
        self.rate_per_s = rate_per_min / 60.0
        self.burst = float(burst)
        self._monotonic, self._wall = monotonic, wall
        self._tokens = float(burst)
        self._stamp = monotonic()
        self._paused_until = 0.0  # monotonic seconds
        self._waiting = {Priority.ORDER: 0, Priority.QUERY: 0}
        self._changed = asyncio.Event()
        #: Requests granted, and times a caller had to wait, per priority (for /metrics).
        self.granted = {p: 0 for p in Priority}
        self.delayed = {p: 0 for p in Priority}

    @property
    def tokens(self) -> float:
        """Tokens available now (refilled to the current time)."""
        self._refill()
        return self._tokens

    def _refill(self) -> None:
        now = self._monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate_per_s)
        self._stamp = now

    def _wait_s(self, priority: Priority) -> float:
        """0 if a ``priority`` request may go now, else how long to wait before retrying."""
        self._refill()
        pause = self._paused_until - self._monotonic()
        if pause > 0:
            return pause
        if priority is Priority.QUERY and self._waiting[Priority.ORDER]:
            return 1.0 / self.rate_per_s  # woken earlier when the orders are through
        if self._tokens >= 1.0:
            return 0.0
        return (1.0 - self._tokens) / self.rate_per_s

    async def acquire(self, priority: Priority = Priority.QUERY) -> None:
        """Wait until one request of ``priority`` may be sent, and take its token."""
        self._waiting[priority] += 1
        try:
            delay = self._wait_s(priority)
            if delay > 0:
                self.delayed[priority] += 1
            while delay > 0:
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), min(delay, _MAX_SLEEP_S))
                delay = self._wait_s(priority)
            self._tokens -= 1.0
            self.granted[priority] += 1
        finally:
            self._waiting[priority] -= 1
            self._changed.set()

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Take the server's view into account after a response.

        ``X-Ratelimit-Remaining`` caps the tokens (the server counts every client of
        the key); when it reaches 0 requests pause until ``X-Ratelimit-Reset`` (epoch
        seconds, at most a minute away), and a 429 pauses them at least
        :data:`DEFAULT_429_PAUSE_S`. Malformed headers are ignored.
        """
        remaining = _number(headers.get("X-Ratelimit-Remaining"))
        reset = _number(headers.get("X-Ratelimit-Reset"))
        self._refill()
        if remaining is not None:
            self._tokens = min(self._tokens, remaining)
        wait = 0.0
        if remaining == 0:  # the budget is spent: until the reset
            wait = DEFAULT_429_PAUSE_S if reset is None else min(reset - self._wall(), 60.0)
        if status == 429:
            wait = max(wait, DEFAULT_429_PAUSE_S)
        self._paused_until = max(self._paused_until, self._monotonic() + wait)
        self._changed.set()


def _number(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if value >= 0 else None
