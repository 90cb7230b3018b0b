"""Market hours from /v2/clock and the NYSE calendar; Alpaca's off-hours order rules."""

from __future__ import annotations

import itertools
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from live.market_hours import ClockReading, MarketHours, session_of, submission_problem
from tests.conftest import DAILY, SPY_MINUTE
from trader.data.loaders import load_daily_csv, load_minute_bars

NEW_YORK = ZoneInfo("America/New_York")


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


def test_session_of_real_spy_minutes_starts_each_day_at_the_open_mlk_day_included() -> None:
    # Every minute of January 2011, pre-market and after-hours included: a bar belongs
    # to its own date's session from 09:30 New York on, before that to the previous
    # trading date of the file (Tuesday 2011-01-18's pre-market to Friday 01-14: Monday
    # 01-17 was Martin Luther King Jr. Day).
    ts = load_minute_bars(SPY_MINUTE, session="all").index
    local = ts.tz_convert(NEW_YORK)
    dates = np.array(local.strftime("%Y-%m-%d"))
    trading = sorted(set(dates))
    previous = dict(zip(trading[1:], trading[:-1], strict=True))
    regular = local.hour * 60 + local.minute >= 9 * 60 + 30
    got = np.array([session_of(t).date for t in ts.asi8])
    after_first_open = regular | (dates != trading[0])
    expected = np.where(regular, dates, [previous.get(d, "") for d in dates])
    assert after_first_open.sum() > 14_000
    assert (got[after_first_open] == expected[after_first_open]).all()
    mlk = (dates == "2011-01-18") & ~regular
    assert mlk.sum() > 100
    assert set(got[mlk]) == {"2011-01-14"}
    # one new day per session: 19 day changes after the first
    assert int((got[after_first_open][1:] != got[after_first_open][:-1]).sum()) == 19


def test_session_of_opens_at_09_30_new_york_across_daylight_saving_on_real_dates() -> None:
    # The AAPL file's trading dates 2000-2013 (every holiday, 26 daylight-saving changes):
    # each session opens at 09:30 New York, 14:30 UTC in winter and 13:30 UTC in summer;
    # the nanosecond before it still belongs to the previous trading date.
    dates = load_daily_csv(DAILY["AAPL"]).index.strftime("%Y-%m-%d")
    for prev, date in itertools.pairwise(dates):
        open_ns = pd.Timestamp(f"{date} 09:30", tz=NEW_YORK).value
        s = session_of(open_ns)
        assert (s.date, s.open_ns) == (date, open_ns)
        assert session_of(open_ns - 1).date == prev
        assert session_of(open_ns - 1).next_open_ns == open_ns
    spring = [pd.Timestamp(f"2011-03-{d} 09:30", tz=NEW_YORK) for d in (11, 14)]
    assert [t.tz_convert("UTC").hour for t in spring] == [14, 13]  # the change in between
    with pytest.raises(ValueError, match="outside the XNYS calendar"):
        session_of(pd.Timestamp("1999-12-30T15:00Z").value)


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
