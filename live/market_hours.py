"""US equity market hours: Alpaca's ``/v2/clock`` first, the NYSE calendar between reads.

``/v2/clock`` is the authority (it knows the broker's view, and in ``sim`` mode the
simulated time); the NYSE trading calendar of ``exchange_calendars`` (XNYS: holidays,
early closes) answers when no clock has been read yet or the last reading's
``next_open``/``next_close`` has passed. :func:`submission_problem` encodes Alpaca's rules
for orders outside the regular session (alpaca.md §7) so the client refuses what the
broker would reject. :func:`session_of` tells which XNYS session a market timestamp's
P&L day belongs to (the engine's daily P&L resets at each session's open).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import exchange_calendars as xcals

NEW_YORK = ZoneInfo("America/New_York")
NS_PER_S = 1_000_000_000
#: First date of the calendar: the project's data starts in 2000 (exchange_calendars'
#: default, 20 years before today, would move with the clock).
CALENDAR_START = "2000-01-01"
#: New York minutes [start, end) in which Alpaca refuses ``opg`` and ``cls`` orders.
OPG_CLOSED = (9 * 60 + 28, 19 * 60)
CLS_CLOSED = (15 * 60 + 50, 19 * 60)


@cache
def nyse_calendar() -> xcals.ExchangeCalendar:
    """The XNYS calendar from :data:`CALENDAR_START` to a year ahead (built once per
    process, on first use: it takes about a second)."""
    import exchange_calendars as xcals

    with _quiet_pandas():
        return xcals.get_calendar("XNYS", start=CALENDAR_START)


@contextmanager
def _quiet_pandas() -> Iterator[None]:
    """exchange_calendars 4.13 still reads ``Series.values`` of tz-aware series, which
    pandas 3.1 deprecates (Pandas4Warning); the values it reads are unaffected."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pd.errors.Pandas4Warning)
        yield


@dataclass(frozen=True)
class Session:
    """One XNYS session seen as a P&L day: it starts at its open and lasts until the next
    session's open (pre-market bars belong to the session before).

    Attributes
    ----------
    date : str
        The session's New York date, ISO (``"2011-01-18"``).
    open_ns : int
        Its regular-session open, ns since the epoch UTC (09:30 New York).
    next_open_ns : int
        The next session's open (after weekends and holidays), ns since the epoch UTC.
    """

    date: str
    open_ns: int
    next_open_ns: int


@cache
def session_opens() -> tuple[np.ndarray, tuple[str, ...]]:
    """Every XNYS session's open (int64 ns since the epoch UTC, ascending) and its New
    York date (ISO), built once per process (call it before trading: about a second)."""
    with _quiet_pandas():
        opens = nyse_calendar().opens
    return opens.dt.as_unit("ns").array.asi8, tuple(opens.index.strftime("%Y-%m-%d"))


def session_of(ts_ns: int) -> Session:
    """The XNYS session whose P&L day contains ``ts_ns``: the last one opened at or before
    it (opens, holidays and daylight saving from ``exchange_calendars``).

    Parameters
    ----------
    ts_ns : int
        Market time, ns since the epoch UTC (a bar's ``ts_event``).

    Raises
    ------
    ValueError
        ``ts_ns`` is before the calendar's first open or after its last session's open
        (the calendar covers :data:`CALENDAR_START` to a year ahead).
    """
    opens, dates = session_opens()
    i = int(np.searchsorted(opens, ts_ns, side="right")) - 1
    if not 0 <= i < len(opens) - 1:
        raise ValueError(
            f"{pd.Timestamp(ts_ns, tz='UTC')} is outside the XNYS calendar's sessions "
            f"({dates[0]} to {dates[-1]})"
        )
    return Session(dates[i], int(opens[i]), int(opens[i + 1]))


def _ns(value: str) -> int:
    """RFC 3339 timestamp (any offset) to ns since the epoch UTC."""
    return int(pd.Timestamp(value).value)


@dataclass(frozen=True)
class ClockReading:
    """One ``GET /v2/clock`` answer, times in ns since the epoch UTC."""

    timestamp_ns: int
    is_open: bool
    next_open_ns: int
    next_close_ns: int

    @classmethod
    def from_json(cls, clock: dict[str, Any]) -> ClockReading:
        """Parse Alpaca's Clock object.

        Raises
        ------
        ValueError
            A field is missing or not a timestamp/boolean.
        """
        try:
            is_open = clock["is_open"]
            if not isinstance(is_open, bool):
                raise TypeError(f"is_open is {is_open!r}")
            return cls(
                _ns(clock["timestamp"]),
                is_open,
                _ns(clock["next_open"]),
                _ns(clock["next_close"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"/v2/clock answer is malformed: {e!r} in {clock!r}") from e

    def valid_at(self, now_ns: int) -> bool:
        """Whether the reading still tells the state at ``now_ns`` (no transition since)."""
        return self.timestamp_ns <= now_ns < min(self.next_open_ns, self.next_close_ns)


class MarketHours:
    """Whether the regular session is open, from the last clock reading or the calendar.

    Times are ns since the epoch UTC on the broker's clock: wall time against Alpaca,
    simulated time against the simulator (pass the reading's own time as ``now_ns``).
    """

    def __init__(self) -> None:
        self.reading: ClockReading | None = None
        self._read_at = 0.0  # time.monotonic() of the reading

    def update(self, clock: dict[str, Any]) -> ClockReading:
        """Store a ``/v2/clock`` answer (see :meth:`ClockReading.from_json`)."""
        self.reading = ClockReading.from_json(clock)
        self._read_at = time.monotonic()
        return self.reading

    def is_open_now(self) -> bool:
        """Whether the session is open now: the last reading's time advanced by the wall
        time elapsed since it was read (the calendar at the wall time before any)."""
        if self.reading is None:
            return self.is_open(time.time_ns())
        elapsed_ns = int((time.monotonic() - self._read_at) * NS_PER_S)
        return self.is_open(self.reading.timestamp_ns + elapsed_ns)

    def is_open(self, now_ns: int) -> bool:
        """Whether the regular session is open at ``now_ns``."""
        if self.reading is not None and self.reading.valid_at(now_ns):
            return self.reading.is_open
        minute = pd.Timestamp(now_ns, tz="UTC").floor("min")
        cal = nyse_calendar()
        with _quiet_pandas():
            first, last = cal.first_minute, cal.last_minute
        if not first <= minute <= last:
            raise ValueError(f"{minute} is outside the XNYS calendar's range")
        with _quiet_pandas():
            return bool(cal.is_trading_minute(minute))


def ny_minute(now_ns: int) -> int:
    """Minutes since New York midnight at ``now_ns``."""
    t = datetime.fromtimestamp(now_ns // NS_PER_S, NEW_YORK)
    return t.hour * 60 + t.minute


def submission_problem(
    order_type: str, time_in_force: str, extended_hours: bool, now_ns: int
) -> str:
    """Why Alpaca would reject this order if submitted at ``now_ns``, or "".

    Rules (alpaca.md §7): ``extended_hours`` needs a ``limit`` ``day`` order; ``opg`` is
    refused from 09:28 to 19:00 New York time, ``cls`` from 15:50 to 19:00. Orders that
    arrive while the market is closed are otherwise accepted and queued for the next
    session.
    """
    if extended_hours and (order_type != "limit" or time_in_force != "day"):
        return "extended_hours orders must be limit day orders"
    windows = {"opg": OPG_CLOSED, "cls": CLS_CLOSED}
    if time_in_force in windows:
        start, end = windows[time_in_force]
        if start <= ny_minute(now_ns) < end:
            return (
                f"{time_in_force} orders are refused from {start // 60}:{start % 60:02d} "
                f"to {end // 60}:00 New York time"
            )
    return ""
