"""Strategy kernels: one step per bar, called by the backtester AND the live engine.

A step kernel has the signature ``step_nb(state, params, close, signal) -> target`` where
``state`` is a float64 work array owned by the caller (pre-allocated, mutated in place),
``params`` a float64 parameter vector, ``close`` the bar's close (USD), ``signal`` an
external input computed outside numba for the same bar (a model's output; NaN for rule
strategies, which ignore it) and ``target`` the desired position in shares.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from trader.indicators.nb import ema_update_nb, rsi_update_nb

# -- EMA crossover filtered by RSI ------------------------------------------------------
# params layout
P_FAST = 0
P_SLOW = 1
P_RSI_WINDOW = 2
P_RSI_OVERBOUGHT = 3
P_QTY = 4
N_PARAMS = 5
# state layout: ema_fast[0:2], ema_slow[2:4], rsi[4:8], target[8]
STATE_SIZE = 9


@njit(cache=True)
def ema_rsi_step_nb(state: np.ndarray, params: np.ndarray, close: float, signal: float) -> float:
    """One bar of the EMA-crossover strategy with an RSI entry filter.

    Rules (evaluated on the bar's close, acted on at the next bar's open):

    * long ``params[P_QTY]`` shares when ``EMA(fast) > EMA(slow)`` and
      ``RSI < params[P_RSI_OVERBOUGHT]`` (do not buy into an overbought market);
    * flat when ``EMA(fast) <= EMA(slow)``;
    * otherwise keep the previous target (an overbought up-trend is held, not entered).

    No signal until all indicators are warm (``max(slow, rsi_window + 1)`` bars).

    Parameters
    ----------
    state : ndarray, shape (STATE_SIZE,), float64
        Zeros at the start; mutated in place.
    params : ndarray, shape (N_PARAMS,), float64
        ``[fast, slow, rsi_window, rsi_overbought, qty]`` (bars, bars, bars, RSI points,
        shares).
    close : float
        The bar's close, USD.
    signal : float
        Ignored (this is a rule strategy); part of the common step signature.

    Returns
    -------
    float
        Target position, shares (0 or ``qty``).
    """
    fast = ema_update_nb(state[0:2], close, int(params[P_FAST]))
    slow = ema_update_nb(state[2:4], close, int(params[P_SLOW]))
    r = rsi_update_nb(state[4:8], close, int(params[P_RSI_WINDOW]))
    target = state[8]
    if not (np.isnan(fast) or np.isnan(slow) or np.isnan(r)):
        if fast <= slow:
            target = 0.0
        elif r < params[P_RSI_OVERBOUGHT]:
            target = params[P_QTY]
    state[8] = target
    return target


# -- target position from the external signal --------------------------------------------
SIGNAL_STATE_SIZE = 1  # state: the last target


@njit(cache=True)
def signal_target_step_nb(
    state: np.ndarray, params: np.ndarray, close: float, signal: float
) -> float:
    """Hold ``params[0] * signal`` shares: the external signal is the target position
    (a model's output in units, or a scripted schedule); NaN keeps the last target.

    Parameters
    ----------
    state : ndarray, shape (SIGNAL_STATE_SIZE,), float64
        Zeros at the start; mutated in place.
    params : ndarray, shape (1,), float64
        ``[qty]``: shares per unit of signal.
    close : float
        Ignored (USD); part of the common step signature.
    signal : float
        Target in units of ``qty``.

    Returns
    -------
    float
        Target position, shares.
    """
    if not np.isnan(signal):
        state[0] = params[0] * signal
    return state[0]


@njit(cache=True)
def order_qty_nb(target: float, position: float, pending: float) -> float:
    """Signed order quantity (shares) that moves ``position + pending`` to ``target``.

    ``pending`` is the signed quantity of orders sent but not yet filled, so a target is
    never ordered twice while its first order is in flight.
    """
    return target - (position + pending)


# -- Model probability with entry/exit thresholds --------------------------------------
# params layout
P_ML_ENTER = 0
P_ML_EXIT = 1
P_ML_QTY = 2
N_ML_PARAMS = 3
# state layout: target[0]
ML_STATE_SIZE = 1


@njit(cache=True)
def ml_threshold_step_nb(
    state: np.ndarray, params: np.ndarray, close: float, signal: float
) -> float:
    """One bar of the long/flat strategy driven by a model's probability of an up move.

    Rules (on the bar's close, acted on at the next bar's open):

    * long ``params[P_ML_QTY]`` shares when ``signal >= params[P_ML_ENTER]``;
    * flat when ``signal <= params[P_ML_EXIT]``;
    * otherwise (between the thresholds, or ``signal`` NaN while the features warm up)
      keep the previous target, starting flat. The hysteresis band keeps a probability
      hovering around one level from trading every bar.

    Parameters
    ----------
    state : ndarray, shape (ML_STATE_SIZE,), float64
        Zeros at the start; mutated in place.
    params : ndarray, shape (N_ML_PARAMS,), float64
        ``[enter, exit, qty]``: probabilities in [0, 1] (``exit < enter``), shares.
    close : float
        The bar's close, USD (unused; part of the common step signature).
    signal : float
        The model's P(up) for this bar (:mod:`trader.ml`), or NaN.

    Returns
    -------
    float
        Target position, shares (0 or ``qty``).
    """
    if signal >= params[P_ML_ENTER]:
        state[0] = params[P_ML_QTY]
    elif signal <= params[P_ML_EXIT]:
        state[0] = 0.0
    return state[0]
