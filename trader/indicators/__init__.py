"""Technical indicators: numba kernels (``nb``) and pandas-facing wrappers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from trader.indicators import nb


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


__all__ = ["ema", "nb", "rsi"]
