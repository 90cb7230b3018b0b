"""Feature and label kernels of the ML strategy (numba).

The 16 features are built from the streaming indicator kernels of
:mod:`trader.indicators.nb`, one bar at a time: :func:`features_update_nb` is what the
live engine calls per bar, and :func:`features_nb` (research) is a loop over it, so both
compute bit-identical features. Every feature uses bar ``i`` and earlier only.

=====  ================  ===========================================================
col    name              definition (``c`` = close)
=====  ================  ===========================================================
0-3    ret_1..ret_30     log return ``ln(c_t / c_{t-k})`` over k = 1, 5, 15, 30 bars
4      ema12_gap         ``c / EMA_12 - 1``
5      ema26_gap         ``c / EMA_26 - 1``
6      macd              MACD(12, 26, 9) line ``/ c``
7      macd_hist         MACD histogram ``/ c``
8      rsi14             Wilder RSI(14) ``/ 100``
9      bb_pctb           Bollinger %B ``(c - lower) / (upper - lower)``, 20 bars, k = 2
10     sma60_gap         ``c / SMA_60 - 1``
11     atr14             Wilder ATR(14) ``/ c``
12     vol20             std of 1-bar log returns over 20 bars (per bar, not annualised)
13     vol60             the same over 60 bars
14     volume_z20        z-score of ``ln(1 + volume)`` against its last 20 bars
15     vwap_gap          ``c / VWAP - 1``, VWAP anchored at the UTC day's first bar
=====  ================  ===========================================================

A session starts wherever the UTC day (``ts_event // 86400e9``) changes: for regular
session US minute bars that is the New York trading day, and for daily bars every bar
(VWAP is then the bar's typical price).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from trader.indicators.nb import (
    ROLL_HEADER,
    atr_update_nb,
    bollinger_update_nb,
    ema_update_nb,
    macd_update_nb,
    rsi_update_nb,
    sma_update_nb,
    volatility_update_nb,
    vwap_update_nb,
    zscore_update_nb,
)

FEATURE_NAMES = (
    "ret_1",
    "ret_5",
    "ret_15",
    "ret_30",
    "ema12_gap",
    "ema26_gap",
    "macd",
    "macd_hist",
    "rsi14",
    "bb_pctb",
    "sma60_gap",
    "atr14",
    "vol20",
    "vol60",
    "volume_z20",
    "vwap_gap",
)
N_FEATURES = len(FEATURE_NAMES)
DAY_NS = 86_400_000_000_000

# Windows (bars)
RET_LAGS = (1, 5, 15, 30)
RING = 31  # closes kept for the longest return
EMA_FAST, EMA_SLOW, MACD_SIGNAL = 12, 26, 9
RSI_WINDOW = 14
BB_WINDOW, BB_K = 20, 2.0
SMA_WINDOW = 60
ATR_WINDOW = 14
VOL_SHORT, VOL_LONG = 20, 60
VOLUME_Z_WINDOW = 20

# State layout (offsets into one float64 vector; all zeros is the fresh state)
S_DAY = 0  # UTC day number of the last bar
S_RING_N = 1  # closes pushed into the ring
S_RING = 2  # ring of the last RING closes
S_EMA_FAST = S_RING + RING
S_EMA_SLOW = S_EMA_FAST + 2
S_MACD = S_EMA_SLOW + 2
S_RSI = S_MACD + 6
S_BB = S_RSI + 4
S_SMA = S_BB + ROLL_HEADER + BB_WINDOW
S_ATR = S_SMA + ROLL_HEADER + SMA_WINDOW
S_VOL_SHORT = S_ATR + 3
S_VOL_LONG = S_VOL_SHORT + 2 + ROLL_HEADER + VOL_SHORT
S_VOLUME_Z = S_VOL_LONG + 2 + ROLL_HEADER + VOL_LONG
S_VWAP = S_VOLUME_Z + ROLL_HEADER + VOLUME_Z_WINDOW
S_SCRATCH = S_VWAP + 2  # 3 slots for the MACD / Bollinger outputs
FEATURE_STATE_SIZE = S_SCRATCH + 3
#: Bars before every feature is defined (the 60-return volatility needs 61 closes).
WARMUP_BARS = VOL_LONG + 1


@njit(cache=True)
def feature_state_nb() -> np.ndarray:
    """Return a fresh feature state, shape (FEATURE_STATE_SIZE,) float64 (zeros)."""
    return np.zeros(FEATURE_STATE_SIZE)


@njit(cache=True)
def features_update_nb(
    state: np.ndarray,
    ts_event: int,
    high: float,
    low: float,
    close: float,
    volume: float,
    out: np.ndarray,
) -> bool:
    """Advance every feature by one bar and write them to ``out``.

    Definitions in the module docstring; each indicator is the streaming kernel of
    :mod:`trader.indicators.nb` cited there (EMA, MACD after Appel, RSI and ATR after
    Wilder, Bollinger, SMA, Hull's historical volatility, z-score, session VWAP).

    Parameters
    ----------
    state : ndarray, shape (FEATURE_STATE_SIZE,), float64
        Zeros at the start (:func:`feature_state_nb`); mutated in place.
    ts_event : int
        Bar start, ns since epoch UTC (decides the VWAP session).
    high, low, close : float
        USD per share (> 0).
    volume : float
        Shares (>= 0).
    out : ndarray, shape (N_FEATURES,), float64 or float32
        Receives the features (NaN while an indicator warms up).

    Returns
    -------
    bool
        True when every feature is finite (the row may be fed to the model).
    """
    day = float(ts_event // DAY_NS)
    new_session = day != state[S_DAY]
    state[S_DAY] = day
    # returns over RET_LAGS from a ring of closes
    n = int(state[S_RING_N])
    state[S_RING + n % RING] = close
    state[S_RING_N] = n + 1.0
    for j in range(len(RET_LAGS)):
        k = RET_LAGS[j]
        if n >= k:
            out[j] = np.log(close / state[S_RING + (n - k) % RING])
        else:
            out[j] = np.nan
    out[4] = close / ema_update_nb(state[S_EMA_FAST : S_EMA_FAST + 2], close, EMA_FAST) - 1.0
    out[5] = close / ema_update_nb(state[S_EMA_SLOW : S_EMA_SLOW + 2], close, EMA_SLOW) - 1.0
    scratch = state[S_SCRATCH : S_SCRATCH + 3]
    macd_update_nb(state[S_MACD : S_MACD + 6], close, EMA_FAST, EMA_SLOW, MACD_SIGNAL, scratch)
    out[6] = scratch[0] / close
    out[7] = scratch[2] / close
    out[8] = rsi_update_nb(state[S_RSI : S_RSI + 4], close, RSI_WINDOW) / 100.0
    bollinger_update_nb(state[S_BB:S_SMA], close, BB_WINDOW, BB_K, 0, scratch)
    width = scratch[1] - scratch[2]
    out[9] = (close - scratch[2]) / width if width > 0.0 else np.nan
    out[10] = close / sma_update_nb(state[S_SMA:S_ATR], close, SMA_WINDOW) - 1.0
    out[11] = atr_update_nb(state[S_ATR : S_ATR + 3], high, low, close, ATR_WINDOW) / close
    out[12] = volatility_update_nb(state[S_VOL_SHORT:S_VOL_LONG], close, VOL_SHORT, 1, 1.0)
    out[13] = volatility_update_nb(state[S_VOL_LONG:S_VOLUME_Z], close, VOL_LONG, 1, 1.0)
    out[14] = zscore_update_nb(state[S_VOLUME_Z:S_VWAP], np.log1p(volume), VOLUME_Z_WINDOW, 0)
    out[15] = (
        close / vwap_update_nb(state[S_VWAP : S_VWAP + 2], high, low, close, volume, new_session)
        - 1.0
    )
    ready = True
    for j in range(N_FEATURES):
        if not np.isfinite(out[j]):
            ready = False
    return ready


@njit(cache=True)
def features_nb(
    ts: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Array form of :func:`features_update_nb` (the same loop the live engine runs).

    Parameters
    ----------
    ts : ndarray, shape (n,), int64
        Bar starts, ns since epoch UTC.
    high, low, close, volume : ndarray, shape (n,), float64
        USD per share; shares.

    Returns
    -------
    X : ndarray, shape (n, N_FEATURES), float64
    ready : ndarray, shape (n,), bool
        Rows where every feature is finite.
    """
    n = close.shape[0]
    x = np.empty((n, N_FEATURES))
    ready = np.empty(n, dtype=np.bool_)
    state = feature_state_nb()
    for i in range(n):
        ready[i] = features_update_nb(state, ts[i], high[i], low[i], close[i], volume[i], x[i])
    return x, ready


@njit(cache=True)
def forward_label_nb(close: np.ndarray, horizon: int) -> np.ndarray:
    """Sign label of the forward return over ``horizon`` bars.

    ``y_t = 1`` if ``close_{t+horizon} > close_t`` else ``0`` (a flat move is 0); NaN for
    the last ``horizon`` bars, whose future is unknown. The label of bar ``t`` uses bars
    up to ``t + horizon``, so a training set must end ``horizon`` bars before the first
    test bar (the purge gap of :func:`trader.ml.validation.walk_forward_splits`).

    Parameters
    ----------
    close : ndarray, shape (n,), float64
        USD per share.
    horizon : int
        Bars ahead (>= 1).

    Returns
    -------
    ndarray, shape (n,), float64
        1.0, 0.0 or NaN.
    """
    n = close.shape[0]
    y = np.full(n, np.nan)
    for i in range(n - horizon):
        y[i] = 1.0 if close[i + horizon] > close[i] else 0.0
    return y
