"""Technical indicators: numba kernels (``nb``) and pandas-facing wrappers.

Every wrapper takes float Series sharing one index and returns a float64 Series or
DataFrame on that same index; the numbers are exactly those of the array kernels in
:mod:`trader.indicators.nb` (which equal the streaming kernels the live engine runs).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trader.data.loaders import NEW_YORK
from trader.indicators import nb

_NS_PER_DAY = 86_400 * 10**9


def _f64(x: pd.Series) -> np.ndarray:
    return np.ascontiguousarray(x.to_numpy(np.float64))


def ema(close: pd.Series, window: int) -> pd.Series:
    """Exponential moving average of ``close`` (see :func:`trader.indicators.nb.ema_update_nb`).

    Returns
    -------
    Series
        float64, same index as ``close``; NaN for the first ``window - 1`` bars.
    """
    return pd.Series(nb.ema_nb(close.to_numpy(np.float64), window), index=close.index)


def rsi(close: pd.Series, window: int = 14) -> pd.Series:
    """Wilder's RSI of ``close`` (see :func:`trader.indicators.nb.rsi_update_nb`).

    Returns
    -------
    Series
        float64 in [0, 100], same index as ``close``; NaN for the first ``window`` bars.
    """
    return pd.Series(nb.rsi_nb(close.to_numpy(np.float64), window), index=close.index)


def sma(close: pd.Series, window: int) -> pd.Series:
    """Simple moving average of ``close`` (see :func:`trader.indicators.nb.sma_update_nb`).

    Returns
    -------
    Series
        float64, same index as ``close``; NaN for the first ``window - 1`` bars.
    """
    return pd.Series(nb.sma_nb(_f64(close), window), index=close.index)


def rolling_std(close: pd.Series, window: int, ddof: int = 0) -> pd.Series:
    """Rolling std of ``close`` (see :func:`trader.indicators.nb.std_update_nb`).

    ``ddof=0`` (population std, as :func:`bollinger`) by default.

    Returns
    -------
    Series
        float64, same index as ``close``; NaN for the first ``window - 1`` bars.
    """
    return pd.Series(nb.std_nb(_f64(close), window, ddof), index=close.index)


def macd(close: pd.Series, fast: int = 12, slow: int = 26, signal: int = 9) -> pd.DataFrame:
    """Appel's MACD of ``close`` (see :func:`trader.indicators.nb.macd_update_nb`).

    Returns
    -------
    DataFrame
        Columns ``macd, signal, hist`` (USD), same index as ``close``; ``macd`` NaN for
        the first ``max(fast, slow) - 1`` bars, ``signal``/``hist`` for the first
        ``max(fast, slow) + signal - 2``.
    """
    out = nb.macd_nb(_f64(close), fast, slow, signal)
    return pd.DataFrame(out, index=close.index, columns=["macd", "signal", "hist"])


def bollinger(close: pd.Series, window: int = 20, k: float = 2.0, ddof: int = 0) -> pd.DataFrame:
    """Bollinger Bands of ``close`` (see :func:`trader.indicators.nb.bollinger_update_nb`).

    ``ddof=0`` (population std) is Bollinger's own definition and the default.

    Returns
    -------
    DataFrame
        Columns ``middle, upper, lower`` (unit of ``close``), same index as ``close``;
        NaN for the first ``window - 1`` bars.
    """
    out = nb.bollinger_nb(_f64(close), window, float(k), ddof)
    return pd.DataFrame(out, index=close.index, columns=["middle", "upper", "lower"])


def atr(high: pd.Series, low: pd.Series, close: pd.Series, window: int = 14) -> pd.Series:
    """Wilder's Average True Range (see :func:`trader.indicators.nb.atr_update_nb`).

    Returns
    -------
    Series
        float64 (USD), same index as ``close``; NaN for the first ``window`` bars.
    """
    return pd.Series(nb.atr_nb(_f64(high), _f64(low), _f64(close), window), index=close.index)


def volatility(
    close: pd.Series, window: int, periods_per_year: float | None = None, ddof: int = 1
) -> pd.Series:
    """Rolling std of log returns (see :func:`trader.indicators.nb.volatility_update_nb`).

    Parameters
    ----------
    close : Series
        Prices (> 0).
    window : int
        Number of returns per window.
    periods_per_year : float, optional
        Bars per year to annualise with (``252 * 390`` for regular-session minute bars,
        ``252`` for daily bars); None gives the per-bar volatility.
    ddof : int
        1 (sample std, Hull's estimator) by default.

    Returns
    -------
    Series
        float64 fraction, same index as ``close``; NaN for the first ``window`` bars.
    """
    ppy = 1.0 if periods_per_year is None else float(periods_per_year)
    return pd.Series(nb.volatility_nb(_f64(close), window, ddof, ppy), index=close.index)


def zscore(close: pd.Series, window: int, ddof: int = 0) -> pd.Series:
    """Rolling z-score of ``close`` (see :func:`trader.indicators.nb.zscore_update_nb`).

    ``ddof=0`` by default, as :func:`bollinger`.

    Returns
    -------
    Series
        float64, same index as ``close``; NaN for the first ``window - 1`` bars and
        where the window is constant (zero std).
    """
    return pd.Series(nb.zscore_nb(_f64(close), window, ddof), index=close.index)


def session_ids(index: pd.Index) -> np.ndarray:
    """New York calendar date of each timestamp as int64 days since 1970-01-01.

    A tz-aware ``DatetimeIndex`` is converted to New York time; a naive one is taken as
    New York local time already.

    Raises
    ------
    TypeError
        If ``index`` is not a ``DatetimeIndex``.
    """
    if not isinstance(index, pd.DatetimeIndex):
        raise TypeError(f"session_ids needs a DatetimeIndex, got {type(index).__name__}")
    local = index.tz_convert(NEW_YORK).tz_localize(None) if index.tz is not None else index
    return np.asarray(local.normalize().asi8 // _NS_PER_DAY, dtype=np.int64)


def vwap(
    high: pd.Series,
    low: pd.Series,
    close: pd.Series,
    volume: pd.Series,
    session: pd.Series | np.ndarray | None = None,
) -> pd.Series:
    """Session VWAP of typical prices (see :func:`trader.indicators.nb.vwap_update_nb`).

    Parameters
    ----------
    high, low, close, volume : Series
        Bars sharing one index (USD, shares).
    session : Series or ndarray of int, optional
        Session id per bar; by default the New York date of the index
        (:func:`session_ids`), so the VWAP restarts every trading day.

    Returns
    -------
    Series
        float64 (USD), same index as ``close``; NaN while a session has no volume.
    """
    ids = session_ids(close.index) if session is None else np.asarray(session, dtype=np.int64)
    out = nb.vwap_nb(_f64(high), _f64(low), _f64(close), _f64(volume), ids)
    return pd.Series(out, index=close.index)


__all__ = [
    "atr",
    "bollinger",
    "ema",
    "macd",
    "nb",
    "rolling_std",
    "rsi",
    "session_ids",
    "sma",
    "volatility",
    "vwap",
    "zscore",
]
