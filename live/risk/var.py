"""One-day return scenarios for the gate's historical-simulation VaR (``[var] history``).

Read once when the limits are loaded or changed, never on the hot path.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from trader import REPO_ROOT
from trader.data.loaders import load_daily_csv, load_minute_bars
from trader.exceptions import ConfigurationError

#: Regular-session minutes per day: the square-root-of-time factor for minute returns.
MINUTES_PER_DAY = 390


def _returns(path: Path) -> tuple[str, pd.Series]:
    """Return ``(kind, one-day returns)`` of one history file (kind "daily"/"minute")."""
    with path.open() as f:
        head = f.readline()
    if head.startswith("Date,"):
        close = load_daily_csv(path, adjusted=True)["close"]
        return "daily", close.pct_change().dropna()
    bars = load_minute_bars(path)["close"]
    day = pd.DatetimeIndex(bars.index).tz_convert("America/New_York").normalize()
    minute = bars.groupby(day).pct_change().dropna()  # no overnight gaps
    return "minute", minute * math.sqrt(MINUTES_PER_DAY)


@lru_cache(maxsize=8)
def _scenarios(
    files: tuple[tuple[str, str], ...], symbols: tuple[str, ...], lookback: int
) -> np.ndarray:
    by_symbol = dict(files)
    series, kinds = [], set()
    for sym in symbols:
        if sym not in by_symbol:
            raise ConfigurationError(f"[var] history: no return history for symbol {sym!r}")
        path = Path(by_symbol[sym])
        path = path if path.is_absolute() else REPO_ROOT / path
        if not path.exists():
            raise ConfigurationError(f"[var] history.{sym}: file {path} not found")
        kind, r = _returns(path)
        kinds.add(kind)
        series.append(r.rename(sym))
    if len(kinds) > 1:
        raise ConfigurationError("[var] history: mixes daily and minute files")
    joined = pd.concat(series, axis=1, join="inner").tail(lookback)
    if len(joined) < 100:
        raise ConfigurationError(
            f"[var] history: only {len(joined)} common return dates for {list(symbols)} "
            "(need >= 100)"
        )
    out = np.ascontiguousarray(joined.to_numpy(dtype=np.float64))
    out.setflags(write=False)
    return out


def return_scenarios(
    history: dict[str, Path], symbols: tuple[str, ...], lookback: int
) -> np.ndarray:
    """One-day simple-return scenarios of ``symbols``, aligned by date.

    Daily files (``Date,...,AdjClose``) give split/dividend-adjusted close-to-close
    returns; 1-minute files give regular-session minute returns (no overnight gap)
    scaled by ``sqrt(390)`` to one day (the square-root-of-time rule; Jorion, *Value at
    Risk*, 3rd ed.: exact for i.i.d. returns, an approximation otherwise).

    Parameters
    ----------
    history : dict of str to Path
        Symbol -> price file (relative paths are from the repository root).
    symbols : tuple of str
        Column order of the result.
    lookback : int
        Keep the most recent ``lookback`` common dates.

    Returns
    -------
    ndarray, shape (T, len(symbols)), float64, read-only
        T = min(lookback, common dates) >= 100.

    Raises
    ------
    ConfigurationError
        A symbol without history, a missing file, daily and minute files mixed, or fewer
        than 100 common dates.
    """
    files = tuple(sorted((k, str(v)) for k, v in history.items()))
    return _scenarios(files, tuple(symbols), lookback)
