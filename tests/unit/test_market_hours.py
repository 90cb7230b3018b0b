"""Market hours from /v2/clock and the NYSE calendar; Alpaca's off-hours order rules."""

from __future__ import annotations

import pandas as pd
import pytest

from live.market_hours import ClockReading, MarketHours, submission_problem


def ns(ts: str) -> int:
    return int(pd.Timestamp(ts).value)


def test_calendar_knows_holidays_and_the_session_bounds() -> None:
    hours = MarketHours()
    assert hours.is_open(ns("2011-01-18T10:00:00-05:00"))
    assert not hours.is_open(ns("2011-01-17T10:00:00-05:00"))  # Martin Luther King Jr. Day
    assert not hours.is_open(ns("2011-01-15T10:00:00-05:00"))  # Saturday
    assert hours.is_open(ns("2011-01-18T09:30:00-05:00"))
    assert not hours.is_open(ns("2011-01-18T16:00:00-05:00"))
    assert not hours.is_open(ns("2010-11-26T13:30:00-05:00"))  # day after Thanksgiving: 13:00


def test_the_clock_reading_wins_until_its_next_transition() -> None:
    hours = MarketHours()
    reading = hours.update(
        {
            "timestamp": "2011-01-03T15:59:00-05:00",
            "is_open": False,  # e.g. a halt the calendar cannot know
            "next_open": "2011-01-04T09:30:00-05:00",
            "next_close": "2011-01-03T16:00:00-05:00",
        }
    )
    assert reading.next_close_ns == ns("2011-01-03T21:00:00Z")
    assert not hours.is_open(ns("2011-01-03T15:59:30-05:00"))
    assert hours.is_open(ns("2011-01-04T10:00:00-05:00"))  # past the reading: the calendar
    with pytest.raises(ValueError, match="is_open"):
        ClockReading.from_json({"timestamp": "2011-01-03T15:59:00Z", "is_open": "yes"})


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("market", "day", False, "2011-01-03T15:55:00-05:00"), ""),
        (("market", "opg", False, "2011-01-03T09:27:00-05:00"), ""),
        (("market", "opg", False, "2011-01-03T09:28:00-05:00"), "opg orders are refused"),
        (("limit", "opg", False, "2011-01-03T19:00:00-05:00"), ""),
        (("market", "cls", False, "2011-01-03T15:49:00-05:00"), ""),
        (("market", "cls", False, "2011-01-03T15:50:00-05:00"), "cls orders are refused"),
        (("limit", "day", True, "2011-01-03T17:00:00-05:00"), ""),
        (("market", "day", True, "2011-01-03T17:00:00-05:00"), "must be limit day orders"),
        (("limit", "gtc", True, "2011-01-03T17:00:00-05:00"), "must be limit day orders"),
    ],
)
def test_submission_rules(args: tuple[str, str, bool, str], problem: str) -> None:
    order_type, tif, extended, when = args
    got = submission_problem(order_type, tif, extended, ns(when))
    assert (got == "") if not problem else (problem in got)
