"""Loaders on the real shipped files, and their validation on broken copies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import DAILY, LOB_DIR, SPY_MINUTE
from trader.data import BAR_DTYPE, load_daily_csv, load_lobster, load_minute_bars, to_bar_array
from trader.exceptions import DataError


def test_load_minute_bars_when_regular_session_then_390_bars_per_day() -> None:
    bars = load_minute_bars(SPY_MINUTE)
    local = bars.index.tz_convert("America/New_York")
    per_day = pd.Series(1, index=local.date).groupby(level=0).sum()
    assert len(per_day) == 20
    assert (per_day == 390).all()
    assert local[0] == pd.Timestamp("2011-01-03 09:30", tz="America/New_York")
    assert local[-1] == pd.Timestamp("2011-01-31 15:59", tz="America/New_York")
    # The 2011-01-03 15:59 bar closes at Yahoo's daily close (data/PROVENANCE.md).
    assert bars.loc[pd.Timestamp("2011-01-03 20:59", tz="UTC"), "close"] == 127.05


def test_load_minute_bars_when_all_session_then_extended_hours_kept() -> None:
    all_bars = load_minute_bars(SPY_MINUTE, session="all")
    assert len(all_bars) == len(pd.read_csv(SPY_MINUTE))
    assert len(load_minute_bars(SPY_MINUTE, start="2011-01-10", end="2011-01-10")) == 390


def test_load_minute_bars_when_bar_start_then_matches_file_column() -> None:
    raw = pd.read_csv(SPY_MINUTE, nrows=5)
    bars = load_minute_bars(SPY_MINUTE, session="all").iloc[:5]
    expected = pd.to_datetime(raw["bar_start_et"], utc=True)
    assert (bars.index == pd.DatetimeIndex(expected)).all()


@pytest.mark.parametrize(
    ("row_edit", "message"),
    [
        (lambda df: df.assign(close=df["close"].where(df.index != 5, np.nan)), "NaN"),
        (lambda df: df.assign(high=df["high"].where(df.index != 7, 1.0)), "high below"),
        (lambda df: df.assign(low=df["low"].where(df.index != 9, -3.0)), "non-positive price"),
        (
            lambda df: df.drop(index=3).pipe(
                lambda d: pd.concat([d.iloc[:10], d.iloc[:1], d.iloc[10:]])
            ),
            "not strictly increasing",
        ),
    ],
)
def test_load_minute_bars_when_file_is_broken_then_error_names_file_and_row(
    tmp_path: Path, row_edit: object, message: str
) -> None:
    raw = pd.read_csv(SPY_MINUTE, nrows=50)
    bad = row_edit(raw)  # type: ignore[operator]
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    with pytest.raises(DataError, match=message) as e:
        load_minute_bars(path, session="all")
    assert "bad.csv" in str(e.value)
    assert "row " in str(e.value)


def test_load_daily_csv_when_adjusted_then_close_equals_adjclose() -> None:
    raw = pd.read_csv(DAILY["AAPL"])
    unadj = load_daily_csv(DAILY["AAPL"])
    adj = load_daily_csv(DAILY["AAPL"], adjusted=True)
    assert len(unadj) == 3270
    np.testing.assert_allclose(adj["close"].to_numpy(), raw["AdjClose"].to_numpy(), rtol=1e-12)
    # the 2000-09-29 crash is a real -52% close-to-close move, not a split
    r = unadj["close"].pct_change()
    assert r.idxmin() == pd.Timestamp("2000-09-29", tz="UTC")
    assert r.min() < -0.5


def test_load_lobster_when_real_hour_then_prices_in_usd_and_book_uncrossed() -> None:
    lob = load_lobster(
        LOB_DIR / "AAPL_2012-06-21_34200000_37800000_message_50.csv",
        LOB_DIR / "AAPL_2012-06-21_34200000_37800000_orderbook_L1-of-50.csv",
        "2012-06-21",
    )
    assert len(lob) == 91_997
    assert lob["price"].iloc[0] == 585.33
    first = lob.index[0].tz_convert("America/New_York")
    assert (first.hour, first.minute, first.second) == (9, 30, 0)
    trades = lob[lob["type"].isin([4, 5])]
    assert len(trades) == 6268
    assert trades["size"].sum() == 533_629
    assert (lob["bid_price"] < lob["ask_price"]).all()


def test_to_bar_array_when_converted_then_fields_match_frame() -> None:
    bars = load_minute_bars(SPY_MINUTE, start="2011-01-03", end="2011-01-03")
    rec = to_bar_array(bars)
    assert rec.dtype == BAR_DTYPE
    assert (rec["ts_event"] == bars.index.asi8).all()
    np.testing.assert_array_equal(rec["close"], bars["close"].to_numpy())
