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
