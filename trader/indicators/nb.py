"""Numba indicator kernels: a streaming form (O(1) state, one value per new bar) and an
array form built on it, so research (array) and live (streaming) agree exactly.

Kernel contract: only NumPy arrays and scalars in and out; no Python objects, no
exceptions; float64 throughout; NaN marks "not enough data yet".
"""

from __future__ import annotations

import numpy as np
from numba import njit

# -- EMA --------------------------------------------------------------------------------
# State layout: [value, count]


@njit(cache=True)
def ema_alpha_nb(window: int) -> float:
    """Smoothing factor of an EMA with span ``window``: ``2 / (window + 1)``."""
    return 2.0 / (window + 1.0)


@njit(cache=True)
def ema_update_nb(state: np.ndarray, x: float, window: int) -> float:
    """Advance an exponential moving average by one observation.

    ``EMA_t = EMA_{t-1} + alpha * (x_t - EMA_{t-1})`` with ``alpha = 2 / (window + 1)``,
    seeded with the first observation: identical to pandas
    ``Series.ewm(span=window, adjust=False).mean()`` (pandas docs, "Exponentially
    weighted window", ``adjust=False``). Values before ``window`` observations are NaN.

    Parameters
    ----------
    state : ndarray, shape (2,), float64
        ``[ema, n_seen]``; initialise with :func:`ema_state_nb`. Updated in place.
    x : float
        New observation (e.g. a close in USD).
    window : int
        Span, in bars (>= 1).

    Returns
    -------
    float
        The EMA after ``x``, or NaN while fewer than ``window`` observations were seen.
    """
    if state[1] == 0.0:
        state[0] = x
    else:
        state[0] += ema_alpha_nb(window) * (x - state[0])
    state[1] += 1.0
    return state[0] if state[1] >= window else np.nan


@njit(cache=True)
def ema_state_nb() -> np.ndarray:
    """Return a fresh EMA state, shape (2,) float64."""
    return np.zeros(2)


@njit(cache=True)
def ema_nb(x: np.ndarray, window: int) -> np.ndarray:
    """Array form of :func:`ema_update_nb`.

    Parameters
    ----------
    x : ndarray, shape (n,), float64
    window : int

    Returns
    -------
    ndarray, shape (n,), float64
        NaN for the first ``window - 1`` values.
    """
    out = np.empty(x.shape[0])
    state = ema_state_nb()
    for i in range(x.shape[0]):
        out[i] = ema_update_nb(state, x[i], window)
    return out


# -- RSI (Wilder) -----------------------------------------------------------------------
# State layout: [prev_x, avg_gain, avg_loss, n_seen]


@njit(cache=True)
def rsi_state_nb() -> np.ndarray:
    """Return a fresh RSI state, shape (4,) float64."""
    return np.zeros(4)


@njit(cache=True)
def rsi_update_nb(state: np.ndarray, x: float, window: int) -> float:
    """Advance Wilder's Relative Strength Index by one observation.

    Source: J. W. Wilder, *New Concepts in Technical Trading Systems* (1978): the first
    average gain/loss is the simple mean of the first ``window`` changes; after that
    ``avg_t = (avg_{t-1} * (window - 1) + change_t) / window``.
    ``RSI = 100 - 100 / (1 + avg_gain / avg_loss)`` (100 when ``avg_loss == 0``).

    Parameters
    ----------
    state : ndarray, shape (4,), float64
        ``[prev_x, avg_gain, avg_loss, n_seen]``; initialise with :func:`rsi_state_nb`.
    x : float
        New observation (a close, USD).
    window : int
        Look-back in bars (>= 1).

    Returns
    -------
    float
        RSI in [0, 100], or NaN until ``window`` changes (``window + 1`` observations)
        were seen.
    """
    n = state[3]
    if n > 0.0:
        change = x - state[0]
        gain = change if change > 0.0 else 0.0
        loss = -change if change < 0.0 else 0.0
        if n <= window:  # accumulate the seed: simple mean of the first `window` changes
            state[1] += gain / window
            state[2] += loss / window
        else:
            state[1] = (state[1] * (window - 1) + gain) / window
            state[2] = (state[2] * (window - 1) + loss) / window
    state[0] = x
    state[3] = n + 1.0
    if state[3] <= window:
        return np.nan
    if state[2] == 0.0:
        return 100.0
    return 100.0 - 100.0 / (1.0 + state[1] / state[2])


@njit(cache=True)
def rsi_nb(x: np.ndarray, window: int) -> np.ndarray:
    """Array form of :func:`rsi_update_nb`.

    Parameters
    ----------
    x : ndarray, shape (n,), float64
    window : int

    Returns
    -------
    ndarray, shape (n,), float64
        NaN for the first ``window`` values.
    """
    out = np.empty(x.shape[0])
    state = rsi_state_nb()
    for i in range(x.shape[0]):
        out[i] = rsi_update_nb(state, x[i], window)
    return out


# -- Rolling window moments (shared by SMA, Bollinger, z-score, volatility) -------------
# State layout: [n_seen, shift, s1, c1, s2, c2, run, since_rebase, buf_0 .. buf_{w-1}]
#   n_seen        observations pushed so far (the ring-buffer head is n_seen % w)
#   shift         K, subtracted from every value before it enters the sums
#   s1, c1        Neumaier-compensated sum of (x - K) over the window (sum, compensation)
#   s2, c2        Neumaier-compensated sum of (x - K)**2 over the window
#   run           length of the current run of identical consecutive values
#   since_rebase  pushes since K and the sums were last recomputed from the buffer
# All zeros is a valid empty state (strategies embed it in a zeroed work array).
ROLL_HEADER = 8
#: Recompute the sums when the variance falls below this fraction of ``s2``.
REBASE_RATIO = 1e-3


@njit(cache=True)
def _neumaier_add_nb(state: np.ndarray, i: int, x: float) -> None:
    """Add ``x`` to the compensated sum ``(state[i], state[i + 1])`` in place.

    Source: A. Neumaier, "Rundungsfehleranalyse einiger Verfahren zur Summation endlicher
    Summen", ZAMM 54 (1974): Kahan's compensated summation, still compensating when the addend
    is larger than the running sum (which happens here when values leave the window).
    """
    s = state[i]
    t = s + x
    if abs(s) >= abs(x):
        state[i + 1] += (s - t) + x
    else:
        state[i + 1] += (x - t) + s
    state[i] = t


@njit(cache=True)
def _roll_rebase_nb(state: np.ndarray, window: int) -> None:
    """Recompute the shift and both sums from the ring buffer (full window only).

    Two passes (Chan, Golub & LeVeque, "Algorithms for computing the sample variance",
    Am. Stat. 37(3), 1983): the shift becomes the window mean, then the sums of
    deviations and squared deviations are summed afresh, which discards any rounding
    accumulated by the add/remove updates and keeps ``shift`` close to current prices so
    that ``s2 - s1**2 / n`` does not cancel catastrophically.
    """
    state[2] = 0.0
    state[3] = 0.0
    for j in range(window):
        _neumaier_add_nb(state, 2, state[ROLL_HEADER + j])
    shift = (state[2] + state[3]) / window
    state[1] = shift
    state[2] = 0.0
    state[3] = 0.0
    state[4] = 0.0
    state[5] = 0.0
    for j in range(window):
        d = state[ROLL_HEADER + j] - shift
        _neumaier_add_nb(state, 2, d)
        _neumaier_add_nb(state, 4, d * d)
    state[7] = 0.0


@njit(cache=True)
def _roll_push_nb(state: np.ndarray, x: float, window: int) -> None:
    """Push ``x`` into the rolling window, evicting the value ``window`` bars old.

    O(1) per call, plus an O(window) :func:`_roll_rebase_nb` every ``window`` calls
    (amortised O(1)) and whenever the shifted sums would lose more than about three
    significant digits to cancellation in ``s2 - s1**2 / n`` (the window's spread is
    tiny next to its distance from the shift, e.g. a run of nearly equal returns):
    the relative rounding error of the variance is about ``eps * s2 / (s2 - s1**2 / n)``,
    so recomputing when that ratio exceeds ``1 / REBASE_RATIO`` keeps it near 1e-13.
    """
    n = int(state[0])
    head = ROLL_HEADER + n % window
    if n == 0:
        state[1] = x  # first shift: the first value
        state[6] = 1.0
    else:
        prev = state[ROLL_HEADER + (n - 1) % window]
        state[6] = state[6] + 1.0 if x == prev else 1.0
    if n >= window:  # evict the oldest value, which sits where x goes
        d_old = state[head] - state[1]
        _neumaier_add_nb(state, 2, -d_old)
        _neumaier_add_nb(state, 4, -(d_old * d_old))
    state[head] = x
    d = x - state[1]
    _neumaier_add_nb(state, 2, d)
    _neumaier_add_nb(state, 4, d * d)
    state[0] = n + 1.0
    state[7] += 1.0
    if n + 1 < window or state[6] >= window:
        return
    if state[7] >= window:
        _roll_rebase_nb(state, window)
        return
    s1 = state[2] + state[3]
    s2 = state[4] + state[5]
    if s2 - s1 * s1 / window <= REBASE_RATIO * s2:
        _roll_rebase_nb(state, window)


@njit(cache=True)
def _roll_mean_nb(state: np.ndarray, window: int) -> float:
    """Mean of the full window (NaN until ``window`` values were pushed).

    When the last ``window`` values are identical the mean is that value exactly (as in
    pandas' ``rolling().mean()``), not ``shift + s1 / n`` with its rounding.
    """
    if state[0] < window:
        return np.nan
    if state[6] >= window:
        return state[ROLL_HEADER + (int(state[0]) - 1) % window]
    return state[1] + (state[2] + state[3]) / window


@njit(cache=True)
def _roll_var_nb(state: np.ndarray, window: int, ddof: int) -> float:
    """Variance of the full window with ``window - ddof`` degrees of freedom.

    ``(S2 - S1**2 / n) / (n - ddof)`` on the shifted sums, clipped at 0. NaN until
    ``window`` values were pushed or when ``window <= ddof``; exactly 0 when the last
    ``window`` values are identical (as pandas' ``rolling().var()``).
    """
    if state[0] < window or window <= ddof:
        return np.nan
    if state[6] >= window:
        return 0.0
    s1 = state[2] + state[3]
    ssq = (state[4] + state[5]) - s1 * s1 / window
    return ssq / (window - ddof) if ssq > 0.0 else 0.0


# -- SMA --------------------------------------------------------------------------------
# State layout: the rolling-moments layout above, shape (ROLL_HEADER + window,)


@njit(cache=True)
def sma_state_nb(window: int) -> np.ndarray:
    """Return a fresh SMA state, shape (ROLL_HEADER + window,) float64 (all zeros)."""
    return np.zeros(ROLL_HEADER + window)


@njit(cache=True)
def sma_update_nb(state: np.ndarray, x: float, window: int) -> float:
    """Advance a simple moving average by one observation.

    ``SMA_t = (x_{t-window+1} + ... + x_t) / window``, the arithmetic mean of the last
    ``window`` observations: pandas ``Series.rolling(window).mean()``. The last
    ``window`` values live in a ring buffer inside ``state``; the sum is kept as a
    Neumaier-compensated sum of ``x - shift`` and recomputed from the buffer every
    ``window`` bars, so it does not drift over long streams (a plain running sum does).

    Parameters
    ----------
    state : ndarray, shape (ROLL_HEADER + window,), float64
        Initialise with :func:`sma_state_nb`. Updated in place.
    x : float
        New observation (e.g. a close in USD).
    window : int
        Look-back in bars (>= 1).

    Returns
    -------
    float
        The SMA after ``x`` (same unit as ``x``), or NaN while fewer than ``window``
        observations were seen.
    """
    _roll_push_nb(state, x, window)
    return _roll_mean_nb(state, window)


@njit(cache=True)
def sma_nb(x: np.ndarray, window: int) -> np.ndarray:
    """Array form of :func:`sma_update_nb`.

    Parameters
    ----------
    x : ndarray, shape (n,), float64
    window : int

    Returns
    -------
    ndarray, shape (n,), float64
        NaN for the first ``window - 1`` values.
    """
    out = np.empty(x.shape[0])
    state = sma_state_nb(window)
    for i in range(x.shape[0]):
        out[i] = sma_update_nb(state, x[i], window)
    return out


# -- Rolling standard deviation ---------------------------------------------------------
# State layout: the rolling-moments layout above, shape (ROLL_HEADER + window,)


@njit(cache=True)
def std_state_nb(window: int) -> np.ndarray:
    """Return a fresh rolling-std state, shape (ROLL_HEADER + window,) float64."""
    return np.zeros(ROLL_HEADER + window)


@njit(cache=True)
def std_update_nb(state: np.ndarray, x: float, window: int, ddof: int) -> float:
    """Advance the rolling standard deviation by one observation.

    ``std_t = sqrt(sum((x_i - SMA_t)**2) / (window - ddof))`` over the last ``window``
    observations: pandas ``Series.rolling(window).std(ddof=ddof)``. ``ddof=0`` is the
    population std (Bollinger's choice, see :func:`bollinger_update_nb`), ``ddof=1`` the
    sample std. Computed from shifted, compensated sums that are recomputed from the
    ring buffer by the corrected two-pass algorithm (Chan, Golub & LeVeque 1983) every
    ``window`` bars and when cancellation threatens (see :func:`_roll_push_nb`); this is
    about 1e-12 relative from the exact value, whereas pandas' online update drifts to
    about 1e-8 over a month of minute bars.

    Parameters
    ----------
    state : ndarray, shape (ROLL_HEADER + window,), float64
        Initialise with :func:`std_state_nb`. Updated in place.
    x : float
        New observation.
    window : int
        Look-back in bars (>= 1).
    ddof : int
        Delta degrees of freedom (0 or 1).

    Returns
    -------
    float
        The std (unit of ``x``), NaN while fewer than ``window`` observations were seen
        or if ``window <= ddof``; exactly 0 when the last ``window`` values are equal.
    """
    _roll_push_nb(state, x, window)
    return np.sqrt(_roll_var_nb(state, window, ddof))


@njit(cache=True)
def std_nb(x: np.ndarray, window: int, ddof: int) -> np.ndarray:
    """Array form of :func:`std_update_nb`.

    Parameters
    ----------
    x : ndarray, shape (n,), float64
    window, ddof : int

    Returns
    -------
    ndarray, shape (n,), float64
        NaN for the first ``window - 1`` values (all if ``window <= ddof``).
    """
    out = np.empty(x.shape[0])
    state = std_state_nb(window)
    for i in range(x.shape[0]):
        out[i] = std_update_nb(state, x[i], window, ddof)
    return out


# -- MACD -------------------------------------------------------------------------------
# State layout: [fast EMA state (2), slow EMA state (2), signal EMA state (2)]
# Output layout: [macd, signal, histogram]


@njit(cache=True)
def macd_state_nb() -> np.ndarray:
    """Return a fresh MACD state, shape (6,) float64."""
    return np.zeros(6)


@njit(cache=True)
def macd_update_nb(
    state: np.ndarray, x: float, fast: int, slow: int, signal: int, out: np.ndarray
) -> None:
    """Advance the Moving Average Convergence/Divergence by one observation.

    Source: G. Appel, *Technical Analysis: Power Tools for Active Investors* (2005):
    ``MACD = EMA_fast(x) - EMA_slow(x)``, ``signal = EMA_signal(MACD)``,
    ``histogram = MACD - signal`` (classically 12, 26, 9). The EMAs are
    :func:`ema_update_nb` (pandas ``ewm(span, adjust=False)``, seeded with the first
    observation) and the signal EMA runs over the MACD from the first bar on, i.e. the
    pandas composition ``m = x.ewm(span=fast, adjust=False).mean() - x.ewm(span=slow,
    adjust=False).mean()``; ``s = m.ewm(span=signal, adjust=False).mean()``. Warm-up
    values are computed but reported as NaN: the MACD line until ``max(fast, slow)``
    observations were seen, signal and histogram until ``max(fast, slow) + signal - 1``
    (TA-Lib's MACD lookback).

    Parameters
    ----------
    state : ndarray, shape (6,), float64
        ``[ema_fast, n, ema_slow, n, ema_signal, n]``; initialise with
        :func:`macd_state_nb`. Updated in place.
    x : float
        New observation (a close, USD).
    fast, slow, signal : int
        EMA spans in bars (>= 1).
    out : ndarray, shape (3,), float64
        Receives ``[macd, signal, histogram]`` (USD), NaN while warming up.
    """
    ema_update_nb(state[0:2], x, fast)
    ema_update_nb(state[2:4], x, slow)
    m = state[0] - state[2]
    ema_update_nb(state[4:6], m, signal)
    s = state[4]
    n = state[1]
    warm = max(fast, slow)
    out[0] = m if n >= warm else np.nan
    if n >= warm + signal - 1:
        out[1] = s
        out[2] = m - s
    else:
        out[1] = np.nan
        out[2] = np.nan


@njit(cache=True)
def macd_nb(x: np.ndarray, fast: int, slow: int, signal: int) -> np.ndarray:
    """Array form of :func:`macd_update_nb`.

    Parameters
    ----------
    x : ndarray, shape (n,), float64
    fast, slow, signal : int

    Returns
    -------
    ndarray, shape (n, 3), float64
        Columns ``macd, signal, histogram``; NaN for the first ``max(fast, slow) - 1``
        rows (MACD) and ``max(fast, slow) + signal - 2`` rows (signal, histogram).
    """
    out = np.empty((x.shape[0], 3))
    state = macd_state_nb()
    for i in range(x.shape[0]):
        macd_update_nb(state, x[i], fast, slow, signal, out[i])
    return out


# -- Bollinger Bands --------------------------------------------------------------------
# State layout: the rolling-moments layout above, shape (ROLL_HEADER + window,)
# Output layout: [middle, upper, lower]


@njit(cache=True)
def bollinger_state_nb(window: int) -> np.ndarray:
    """Return a fresh Bollinger state, shape (ROLL_HEADER + window,) float64."""
    return np.zeros(ROLL_HEADER + window)


@njit(cache=True)
def bollinger_update_nb(
    state: np.ndarray, x: float, window: int, k: float, ddof: int, out: np.ndarray
) -> None:
    """Advance Bollinger Bands by one observation.

    Source: J. Bollinger, *Bollinger on Bollinger Bands* (2001): middle band = SMA over
    ``window`` bars; upper/lower = middle ± ``k`` standard deviations of the same
    ``window`` observations (classically 20 bars, k = 2). Bollinger uses the population
    standard deviation (divide by n), so pass ``ddof=0`` for his definition; ``ddof=1``
    gives the sample standard deviation. Matches pandas ``rolling(window).mean()`` ±
    ``k * rolling(window).std(ddof=ddof)``. The middle band equals :func:`sma_update_nb`
    exactly.

    Parameters
    ----------
    state : ndarray, shape (ROLL_HEADER + window,), float64
        Initialise with :func:`bollinger_state_nb`. Updated in place.
    x : float
        New observation (a close, USD).
    window : int
        Look-back in bars (>= 1).
    k : float
        Band width in standard deviations.
    ddof : int
        Delta degrees of freedom of the standard deviation (0 or 1).
    out : ndarray, shape (3,), float64
        Receives ``[middle, upper, lower]`` (unit of ``x``); NaN until ``window``
        observations were seen (always NaN if ``window <= ddof``). When the window is
        constant the std is exactly 0 and all three bands equal the price.
    """
    _roll_push_nb(state, x, window)
    mid = _roll_mean_nb(state, window)
    var = _roll_var_nb(state, window, ddof)
    if np.isnan(var):
        out[0] = np.nan
        out[1] = np.nan
        out[2] = np.nan
        return
    width = k * np.sqrt(var)
    out[0] = mid
    out[1] = mid + width
    out[2] = mid - width


@njit(cache=True)
def bollinger_nb(x: np.ndarray, window: int, k: float, ddof: int) -> np.ndarray:
    """Array form of :func:`bollinger_update_nb`.

    Parameters
    ----------
    x : ndarray, shape (n,), float64
    window : int
    k : float
    ddof : int

    Returns
    -------
    ndarray, shape (n, 3), float64
        Columns ``middle, upper, lower``; NaN for the first ``window - 1`` rows.
    """
    out = np.empty((x.shape[0], 3))
    state = bollinger_state_nb(window)
    for i in range(x.shape[0]):
        bollinger_update_nb(state, x[i], window, k, ddof, out[i])
    return out


# -- ATR (Wilder) -----------------------------------------------------------------------
# State layout: [prev_close, atr (or the seed's running sum), n_seen]


@njit(cache=True)
def atr_state_nb() -> np.ndarray:
    """Return a fresh ATR state, shape (3,) float64."""
    return np.zeros(3)


@njit(cache=True)
def atr_update_nb(state: np.ndarray, high: float, low: float, close: float, window: int) -> float:
    """Advance Wilder's Average True Range by one bar.

    Source: J. W. Wilder, *New Concepts in Technical Trading Systems* (1978): the true
    range is ``TR_t = max(high_t - low_t, |high_t - close_{t-1}|, |low_t - close_{t-1}|)``
    (so it needs a previous close: the first bar has none and yields no TR); the first
    ATR is the simple mean of the first ``window`` true ranges, after that
    ``ATR_t = (ATR_{t-1} * (window - 1) + TR_t) / window``.

    Parameters
    ----------
    state : ndarray, shape (3,), float64
        ``[prev_close, atr, n_seen]``; initialise with :func:`atr_state_nb`.
    high, low, close : float
        The bar's high, low and close (USD).
    window : int
        Look-back in bars (>= 1).

    Returns
    -------
    float
        ATR in USD, or NaN until ``window`` true ranges (``window + 1`` bars) were seen.
    """
    n = state[2]
    if n > 0.0:
        pc = state[0]
        tr = max(high - low, abs(high - pc), abs(low - pc))
        if n < window:  # accumulate the seed's sum
            state[1] += tr
        elif n == window:  # last TR of the seed: simple mean
            state[1] = (state[1] + tr) / window
        else:
            state[1] = (state[1] * (window - 1) + tr) / window
    state[0] = close
    state[2] = n + 1.0
    return state[1] if state[2] > window else np.nan


@njit(cache=True)
def atr_nb(high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int) -> np.ndarray:
    """Array form of :func:`atr_update_nb`.

    Parameters
    ----------
    high, low, close : ndarray, shape (n,), float64
    window : int

    Returns
    -------
    ndarray, shape (n,), float64
        NaN for the first ``window`` values.
    """
    out = np.empty(close.shape[0])
    state = atr_state_nb()
    for i in range(close.shape[0]):
        out[i] = atr_update_nb(state, high[i], low[i], close[i], window)
    return out


# -- Rolling volatility -----------------------------------------------------------------
# State layout: [prev_x, n_seen, rolling-moments state of the log returns (ROLL_HEADER +
# window)], shape (2 + ROLL_HEADER + window,)


@njit(cache=True)
def volatility_state_nb(window: int) -> np.ndarray:
    """Return a fresh volatility state, shape (2 + ROLL_HEADER + window,) float64."""
    return np.zeros(2 + ROLL_HEADER + window)


@njit(cache=True)
def volatility_update_nb(
    state: np.ndarray, x: float, window: int, ddof: int, periods_per_year: float
) -> float:
    """Advance the rolling volatility of log returns by one observation.

    Historical volatility (J. C. Hull, *Options, Futures, and Other Derivatives*, ch.
    "Estimating volatility from historical data"): the standard deviation of the log
    returns ``r_t = ln(x_t / x_{t-1})`` over the last ``window`` returns, times
    ``sqrt(periods_per_year)`` to annualise. Hull's estimator is the sample standard
    deviation (``ddof=1``). ``r_t`` is computed as ``log1p((x_t - x_{t-1}) / x_{t-1})``,
    which is accurate for the tiny returns of minute bars. Matches pandas
    ``r.rolling(window).std(ddof=ddof) * sqrt(periods_per_year)``.

    Parameters
    ----------
    state : ndarray, shape (2 + ROLL_HEADER + window,), float64
        ``[prev_x, n_seen, moments...]``; initialise with :func:`volatility_state_nb`.
    x : float
        New observation (a close, USD, > 0).
    window : int
        Number of returns in the window (>= 1).
    ddof : int
        Delta degrees of freedom (1: sample std, 0: population std).
    periods_per_year : float
        Bars per year for annualisation (e.g. 252 * 390 for regular-session minute
        bars); 1.0 returns the per-bar volatility.

    Returns
    -------
    float
        Volatility as a fraction (0.01 = 1 %) per ``1 / periods_per_year`` of a year,
        or NaN until ``window`` returns (``window + 1`` observations) were seen (always
        NaN if ``window <= ddof``). Exactly 0 if the last ``window`` returns are equal.
    """
    if state[1] > 0.0:
        prev = state[0]
        _roll_push_nb(state[2:], np.log1p((x - prev) / prev), window)
    state[0] = x
    state[1] += 1.0
    return np.sqrt(_roll_var_nb(state[2:], window, ddof)) * np.sqrt(periods_per_year)


@njit(cache=True)
def volatility_nb(x: np.ndarray, window: int, ddof: int, periods_per_year: float) -> np.ndarray:
    """Array form of :func:`volatility_update_nb`.

    Parameters
    ----------
    x : ndarray, shape (n,), float64
    window, ddof : int
    periods_per_year : float

    Returns
    -------
    ndarray, shape (n,), float64
        NaN for the first ``window`` values.
    """
    out = np.empty(x.shape[0])
    state = volatility_state_nb(window)
    for i in range(x.shape[0]):
        out[i] = volatility_update_nb(state, x[i], window, ddof, periods_per_year)
    return out


# -- Rolling z-score --------------------------------------------------------------------
# State layout: the rolling-moments layout above, shape (ROLL_HEADER + window,)


@njit(cache=True)
def zscore_state_nb(window: int) -> np.ndarray:
    """Return a fresh z-score state, shape (ROLL_HEADER + window,) float64."""
    return np.zeros(ROLL_HEADER + window)


@njit(cache=True)
def zscore_update_nb(state: np.ndarray, x: float, window: int, ddof: int) -> float:
    """Advance the rolling z-score by one observation.

    Standard score of ``x`` against the last ``window`` observations (including ``x``):
    ``z_t = (x_t - SMA_t) / std_t`` with the mean of :func:`sma_update_nb` and the
    standard deviation of :func:`bollinger_update_nb` (use the same ``ddof``, 0 by
    default, so that ``z = k`` exactly on the upper band). Matches pandas
    ``(x - x.rolling(w).mean()) / x.rolling(w).std(ddof=ddof)``.

    Parameters
    ----------
    state : ndarray, shape (ROLL_HEADER + window,), float64
        Initialise with :func:`zscore_state_nb`. Updated in place.
    x : float
        New observation.
    window : int
        Look-back in bars (>= 1).
    ddof : int
        Delta degrees of freedom of the standard deviation.

    Returns
    -------
    float
        Dimensionless z-score, or NaN while fewer than ``window`` observations were seen
        and whenever the std is 0 (a constant window; also always for ``window == 1``
        with ``ddof=0``): no division by zero, no ±inf.
    """
    _roll_push_nb(state, x, window)
    var = _roll_var_nb(state, window, ddof)
    if not var > 0.0:  # NaN or exactly 0
        return np.nan
    return (x - _roll_mean_nb(state, window)) / np.sqrt(var)


@njit(cache=True)
def zscore_nb(x: np.ndarray, window: int, ddof: int) -> np.ndarray:
    """Array form of :func:`zscore_update_nb`.

    Parameters
    ----------
    x : ndarray, shape (n,), float64
    window, ddof : int

    Returns
    -------
    ndarray, shape (n,), float64
        NaN for the first ``window - 1`` values and where the window is constant.
    """
    out = np.empty(x.shape[0])
    state = zscore_state_nb(window)
    for i in range(x.shape[0]):
        out[i] = zscore_update_nb(state, x[i], window, ddof)
    return out


# -- VWAP (session-anchored) ------------------------------------------------------------
# State layout: [sum(typical price * volume), sum(volume)] since the session start


@njit(cache=True)
def vwap_state_nb() -> np.ndarray:
    """Return a fresh VWAP state, shape (2,) float64."""
    return np.zeros(2)


@njit(cache=True)
def vwap_update_nb(
    state: np.ndarray,
    high: float,
    low: float,
    close: float,
    volume: float,
    new_session: bool,
) -> float:
    """Advance the session volume-weighted average price by one bar.

    Definition (S. Berkowitz, D. Logue & E. Noser, "The Total Cost of Transactions on
    the NYSE", J. Finance 43(1), 1988): ``VWAP = sum(p_i * v_i) / sum(v_i)`` over the
    session so far. With bars the price of bar ``i`` is the typical price
    ``(high + low + close) / 3``; the sums restart at every new session. Matches pandas
    ``(tp * v).groupby(day).cumsum() / v.groupby(day).cumsum()``.

    Parameters
    ----------
    state : ndarray, shape (2,), float64
        ``[sum_pv, sum_v]``; initialise with :func:`vwap_state_nb`.
    high, low, close : float
        The bar's high, low and close (USD).
    volume : float
        The bar's volume (shares, >= 0).
    new_session : bool
        True on the first bar of a session: the sums restart with this bar.

    Returns
    -------
    float
        VWAP in USD, or NaN while the session has traded no volume.
    """
    if new_session:
        state[0] = 0.0
        state[1] = 0.0
    state[0] += (high + low + close) / 3.0 * volume
    state[1] += volume
    return state[0] / state[1] if state[1] > 0.0 else np.nan


@njit(cache=True)
def vwap_nb(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    session: np.ndarray,
) -> np.ndarray:
    """Array form of :func:`vwap_update_nb`.

    Parameters
    ----------
    high, low, close, volume : ndarray, shape (n,), float64
    session : ndarray, shape (n,), int64
        Session id of each bar (e.g. the New York trading date as days since epoch); a
        new session starts at bar 0 and wherever the id changes.

    Returns
    -------
    ndarray, shape (n,), float64
        VWAP in USD; NaN where the session has traded no volume yet.
    """
    out = np.empty(close.shape[0])
    state = vwap_state_nb()
    for i in range(close.shape[0]):
        new = i == 0 or session[i] != session[i - 1]
        out[i] = vwap_update_nb(state, high[i], low[i], close[i], volume[i], new)
    return out
