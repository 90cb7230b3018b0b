"""The event-driven backtest loop (numba).

Timing convention (no look-ahead): the strategy sees bar ``i``'s close and returns a
target; the order for the difference fills at bar ``i + 1``'s open, adjusted by
slippage; an order decided on the last bar never fills.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit

from trader.strategy.nb import order_qty_nb

#: One fill of the backtester. ``bar``: index of the bar whose open filled it;
#: ``qty``: signed shares (+ buy, - sell); ``price``: USD per share after slippage;
#: ``commission``: USD.
FILL_DTYPE = np.dtype(
    [("bar", "<i8"), ("ts_event", "<i8"), ("qty", "<f8"), ("price", "<f8"), ("commission", "<f8")]
)


@njit  # not cached: with a kernel as argument the cache misses in every new process and grows
def backtest_bars_nb(
    step_nb: Callable[..., float],
    ts: np.ndarray,
    open_: np.ndarray,
    close: np.ndarray,
    signal: np.ndarray,
    params: np.ndarray,
    state: np.ndarray,
    initial_cash: float,
    commission_bps: float,
    slippage_bps: float,
    cash_out: np.ndarray,
    position_out: np.ndarray,
    equity_out: np.ndarray,
    fills_out: np.ndarray,
) -> int:
    """Run ``step_nb`` over bars, filling orders at the next bar's open.

    Fill price: ``open * (1 + slippage_bps / 1e4)`` for a buy, ``open * (1 - ...)`` for
    a sell; commission ``|qty| * price * commission_bps / 1e4`` USD. Cash moves by
    ``-qty * price - commission``. At every bar ``equity = cash + position * close``.

    Parameters
    ----------
    step_nb : numba function ``(state, params, close, signal) -> target shares``
    ts : ndarray, shape (n,), int64
        Bar start, ns since epoch UTC.
    open_, close : ndarray, shape (n,), float64
        USD per share.
    signal : ndarray, shape (n,), float64
        The strategy's external input per bar (a model output known at bar ``i``'s
        close; NaN for rule strategies).
    params, state : ndarray, float64
        The strategy's parameter vector and zeroed state (mutated).
    initial_cash : float
        USD.
    commission_bps, slippage_bps : float
        Basis points of traded notional.
    cash_out, position_out, equity_out : ndarray, shape (n,), float64
        Filled with end-of-bar cash (USD), position (shares) and equity (USD).
    fills_out : ndarray, shape (n,), FILL_DTYPE
        Receives the fills (at most one per bar).

    Returns
    -------
    int
        Number of fills written to ``fills_out``.
    """
    cash = initial_cash
    position = 0.0
    pending = 0.0
    n_fills = 0
    for i in range(close.shape[0]):
        if pending != 0.0:
            side = 1.0 if pending > 0.0 else -1.0
            price = open_[i] * (1.0 + side * slippage_bps * 1e-4)
            commission = abs(pending) * price * commission_bps * 1e-4
            cash -= pending * price + commission
            position += pending
            f = fills_out[n_fills]
            f["bar"] = i
            f["ts_event"] = ts[i]
            f["qty"] = pending
            f["price"] = price
            f["commission"] = commission
            n_fills += 1
            pending = 0.0
        target = step_nb(state, params, close[i], signal[i])
        pending = order_qty_nb(target, position, 0.0)
        cash_out[i] = cash
        position_out[i] = position
        equity_out[i] = cash + position * close[i]
    return n_fills
