"""Loaders for the market data the project ships in ``data/`` (see ``data/PROVENANCE.md``).

Every loader validates what it reads and raises :class:`~trader.exceptions.DataError`
naming the file, the row and the rule that failed. Bar DataFrames are indexed by the
bar *start* as a UTC ``DatetimeIndex`` named ``ts`` and carry the columns
``open, high, low, close`` (USD, float64) and ``volume`` (shares, float64).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trader.data.dtypes import BAR_COLUMNS, BAR_DTYPE
from trader.exceptions import DataError

NEW_YORK = "America/New_York"
#: LOBSTER encodes prices as USD x 10,000 (LOBSTER_SampleFiles_ReadMe.txt).
LOBSTER_PRICE_SCALE = 10_000
#: LOBSTER's placeholder prices for an empty level.
LOBSTER_EMPTY_ASK = 9_999_999_999
LOBSTER_EMPTY_BID = -9_999_999_999


def fingerprint(path: str | Path) -> str:
    """Return the SHA-256 hex digest of a file's bytes (the data fingerprint in manifests).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def validate_bars(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check a bar DataFrame and return it unchanged.

    Rules: index strictly increasing; no NaN; prices > 0; volume >= 0;
    ``low <= min(open, close)`` and ``high >= max(open, close)``.

    Parameters
    ----------
    df : DataFrame
        Bars indexed by UTC timestamps with :data:`~trader.data.dtypes.BAR_COLUMNS`.
    source : str
        Where the bars came from, used in error messages (a path, a symbol).

    Raises
    ------
    DataError
        On the first violated rule, naming ``source``, the row position and timestamp.
    """
    missing = [c for c in BAR_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{source}: missing columns {missing}")
    if len(df) == 0:
        raise DataError(f"{source}: no bars")
    values = df[list(BAR_COLUMNS)].to_numpy(dtype=np.float64)
    o, h, lo, c, v = values.T

    def fail(mask: Any, rule: str) -> None:
        i = int(np.flatnonzero(mask)[0])
        raise DataError(f"{source}: row {i} ({df.index[i]}): {rule}; values {values[i].tolist()}")

    nan = np.isnan(values).any(axis=1)
    if nan.any():
        fail(nan, "NaN in OHLCV")
    ts = pd.DatetimeIndex(df.index).asi8
    if len(ts) > 1 and not (np.diff(ts) > 0).all():
        i = int(np.flatnonzero(np.diff(ts) <= 0)[0]) + 1
        raise DataError(f"{source}: row {i} ({df.index[i]}): timestamps not strictly increasing")
    for mask, rule in (
        ((values[:, :4] <= 0).any(axis=1), "non-positive price"),
        (v < 0, "negative volume"),
        (lo > np.minimum(o, c), "low above open or close"),
        (h < np.maximum(o, c), "high below open or close"),
    ):
        if mask.any():
            fail(mask, rule)
    return df


def load_minute_bars(
    path: str | Path,
    *,
    session: str = "regular",
    start: str | None = None,
    end: str | None = None,
) -> pd.DataFrame:
    """Load 1-minute bars from ``data/intraday/*_1min.csv``.

    The file's ``bar_end_utc`` is the bar's UTC end stamp; the returned index is the
    bar start (end - 1 min), UTC, like Alpaca's bar ``t``.

    Parameters
    ----------
    path : str or Path
        CSV with columns ``bar_end_utc,bar_start_et,open,high,low,close,volume``.
    session : {"regular", "all"}
        ``"regular"`` keeps bars starting in 09:30 <= t < 16:00 New York time.
    start, end : str, optional
        Inclusive New York calendar dates (``"2011-01-03"``) bounding the result.

    Returns
    -------
    DataFrame
        Index ``ts`` (datetime64[ns, UTC], bar start); float64 OHLCV columns.

    Raises
    ------
    DataError
        If a column is missing, a value does not parse, or :func:`validate_bars` fails.
    ValueError
        If ``session`` is not ``"regular"`` or ``"all"``.
    """
    if session not in ("regular", "all"):
        raise ValueError(f"session must be 'regular' or 'all', got {session!r}")
    try:
        raw = pd.read_csv(path)
        end_utc = pd.to_datetime(raw["bar_end_utc"], utc=True, format="ISO8601")
    except (KeyError, ValueError) as e:
        raise DataError(f"{path}: cannot parse minute bars: {e}") from e
    ts = (end_utc - pd.Timedelta(minutes=1)).astype("datetime64[ns, UTC]")
    df = raw[list(BAR_COLUMNS)].astype(np.float64)
    df.index = pd.DatetimeIndex(ts, name="ts")
    local = df.index.tz_convert(NEW_YORK)
    keep = np.ones(len(df), dtype=bool)
    if session == "regular":
        minute = local.hour * 60 + local.minute
        keep &= (minute >= 9 * 60 + 30) & (minute < 16 * 60)
    day = local.normalize().tz_localize(None)
    if start is not None:
        keep &= day >= pd.Timestamp(start)
    if end is not None:
        keep &= day <= pd.Timestamp(end)
    out = df[keep]
    if len(out) == 0:
        raise DataError(f"{path}: no bars for session={session} start={start} end={end}")
    return validate_bars(out, str(path))


def load_daily_csv(path: str | Path, *, adjusted: bool = False) -> pd.DataFrame:
    """Load Quandl WIKI daily bars from ``data/daily/*_daily_quandl_wiki.csv``.

    Parameters
    ----------
    path : str or Path
        CSV with columns ``Date,Open,High,Low,Close,Volume,AdjClose``.
    adjusted : bool
        If true, scale OHLC by ``AdjClose / Close`` (split and dividend adjusted) and
        volume by the inverse, as the Quandl WIKI documentation defines it.

    Returns
    -------
    DataFrame
        Index ``ts``: the session date at 00:00 UTC; float64 OHLCV.

    Raises
    ------
    DataError
        If the file does not parse or fails :func:`validate_bars`.
    """
    try:
        raw = pd.read_csv(path)
        ts = pd.to_datetime(raw["Date"], format="%Y-%m-%d").dt.tz_localize("UTC")
        df = raw[["Open", "High", "Low", "Close", "Volume"]].astype(np.float64)
        factor = (raw["AdjClose"] / raw["Close"]).to_numpy() if adjusted else None
    except (KeyError, ValueError) as e:
        raise DataError(f"{path}: cannot parse daily bars: {e}") from e
    df.columns = list(BAR_COLUMNS)
    if factor is not None:
        df[["open", "high", "low", "close"]] = df[["open", "high", "low", "close"]].mul(
            factor, axis=0
        )
        df["volume"] = df["volume"] / factor
    df.index = pd.DatetimeIndex(ts.astype("datetime64[ns, UTC]"), name="ts")
    return validate_bars(df, str(path))


def load_lobster(message_path: str | Path, book_path: str | Path, date: str) -> pd.DataFrame:
    """Load a LOBSTER message file with its level-1 order book file.

    Parameters
    ----------
    message_path, book_path : str or Path
        LOBSTER ``*_message_*.csv`` and the matching ``*_orderbook_*.csv``; row i of the
        book is the book *after* message i.
    date : str
        The trading date (``"2012-06-21"``); LOBSTER times are seconds after midnight
        New York time.

    Returns
    -------
    DataFrame
        Index ``ts`` (UTC, ns). Columns ``type`` (int8, 1..7), ``order_id`` (int64),
        ``size`` (shares, int64), ``price`` (USD float64), ``direction`` (int8, +1 buy
        limit order / -1 sell), ``ask_price``, ``bid_price`` (USD, NaN for an empty
        level), ``ask_size``, ``bid_size`` (shares).

    Raises
    ------
    DataError
        If the files differ in length, time decreases, or a book is crossed.
    """
    msg = pd.read_csv(
        message_path, header=None, names=["time", "type", "order_id", "size", "price", "direction"]
    )
    book = pd.read_csv(book_path, header=None, usecols=[0, 1, 2, 3])
    book.columns = ["ask_price", "ask_size", "bid_price", "bid_size"]
    if len(msg) != len(book):
        raise DataError(f"{message_path}: {len(msg)} messages but {len(book)} book rows")
    secs = msg["time"].to_numpy(dtype=np.float64)
    if (np.diff(secs) < 0).any():
        i = int(np.flatnonzero(np.diff(secs) < 0)[0]) + 1
        raise DataError(f"{message_path}: row {i}: time decreases")
    midnight = pd.Timestamp(date, tz=NEW_YORK)
    ts = midnight + pd.to_timedelta(np.round(secs * 1e9).astype(np.int64), unit="ns")
    out = pd.DataFrame(
        {
            "type": msg["type"].astype(np.int8).to_numpy(),
            "order_id": msg["order_id"].astype(np.int64).to_numpy(),
            "size": msg["size"].astype(np.int64).to_numpy(),
            "price": msg["price"].to_numpy(dtype=np.float64) / LOBSTER_PRICE_SCALE,
            "direction": msg["direction"].astype(np.int8).to_numpy(),
        },
        index=pd.DatetimeIndex(ts.tz_convert("UTC").astype("datetime64[ns, UTC]"), name="ts"),
    )
    ask = book["ask_price"].to_numpy(dtype=np.float64)
    bid = book["bid_price"].to_numpy(dtype=np.float64)
    out["ask_price"] = np.where(ask >= LOBSTER_EMPTY_ASK, np.nan, ask / LOBSTER_PRICE_SCALE)
    out["bid_price"] = np.where(bid <= LOBSTER_EMPTY_BID, np.nan, bid / LOBSTER_PRICE_SCALE)
    out["ask_size"] = book["ask_size"].to_numpy(dtype=np.int64)
    out["bid_size"] = book["bid_size"].to_numpy(dtype=np.int64)
    crossed = out["bid_price"].to_numpy() >= out["ask_price"].to_numpy()
    if crossed.any():
        i = int(np.flatnonzero(crossed)[0])
        raise DataError(f"{book_path}: row {i}: crossed book")
    return out


def to_bar_array(df: pd.DataFrame) -> np.ndarray:
    """Convert a bar DataFrame to a :data:`~trader.data.dtypes.BAR_DTYPE` record array.

    Returns
    -------
    ndarray
        Shape (n_bars,), dtype ``BAR_DTYPE``; ``ts_event`` = index as int64 ns UTC,
        ``ts_recv`` = 0.
    """
    out = np.zeros(len(df), dtype=BAR_DTYPE)
    out["ts_event"] = pd.DatetimeIndex(df.index).as_unit("ns").asi8
    for col in BAR_COLUMNS:
        out[col] = df[col].to_numpy(dtype=np.float64)
    return out
