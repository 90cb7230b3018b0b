"""The event-driven backtest kernels (numba): order life cycle, fill rules, costs.

Timing (no look-ahead)
----------------------
At each bar ``i`` (or quote event ``i``) the engine, in this order:

1. activates the orders whose arrival time ``ts_arrival <= ts[i]`` (bar start, or the
   event time): an arriving order first cancels the symbol's working order, then
   orders ``target - position`` shares (cancelled at once if that is 0 or of the other
   side than decided);
2. tries to fill each working order on bar ``i`` (rules below);
3. marks positions to bar ``i``'s close and calls the strategy's step kernel with that
   close and the bar's external signal; when the returned target differs from the last
   one sent (or nothing is working and the position is off target, e.g. after an
   expired or IOC order), it decides a new order that arrives at
   ``ts[i] + bar_ns + latency_ns``: the bar's end (the earliest moment its close is
   known) plus the latency. With ``latency_ns = 0`` on contiguous bars that is the next
   bar's open.

A decision made at bar ``i`` can therefore only fill at bar ``i + 1`` or later, and
nothing at bar ``i`` reads data of a later bar.

Fill rules on bars (the intrabar path)
--------------------------------------
Within a bar the price is taken to travel ``open -> nearer extreme -> farther extreme
-> close`` in straight lines (the extreme nearer to the open first; on a tie the low
first). This is the convention of e.g. backtrader's and Zipline's OHLC fill simulation
made explicit: it decides whether a stop or a limit is touched first and at which price.

* market: the open of the first bar after arrival;
* limit (buy ``L``): the open if ``open <= L`` (a gap through the limit), else ``L`` if
  the path reaches ``L``; sells mirrored;
* stop (buy ``S``): triggers where the path first reaches ``S`` (at the open on a gap
  above ``S``) and fills there as a market order;
* stop-limit: after the trigger the order is a limit order for the rest of the path
  (and later bars): it fills at the trigger price if that is at or better than the
  limit, else at the limit if the rest of the path reaches it.

Market and stop fills pay slippage ``slippage_bps + spread_bps / 2`` against the
trader; limit fills pay none. At most ``floor(max_participation * volume)`` shares fill
per bar per symbol; the rest works on later bars (market orders at their opens). With
``cash_check`` a buy fills only as many whole shares as cash pays for, commission
included. DAY orders expire at the first bar of a later New York session; IOC orders
are cancelled after their first bar.

Fill rules on quotes (level 1)
------------------------------
A buy meets the ask, a sell the bid, of the first book at or after arrival (never the
book the decision saw), for at most the displayed size at the touch less what this
backtest already took at that price (the memory resets when the touch price changes);
the rest stays working. Limits fill when the touch is at or better than the limit, at
the touch; stops trigger when the touch reaches the stop. Only ``slippage_bps`` is
added (the spread is in the touch already). Queue position of resting limit orders is
not modelled: a limit order fills only when it is marketable against the touch.

Costs (every fill of ``q`` shares at ``p`` USD)
-----------------------------------------------
``commission = max(commission_min, q * commission_per_share + q * p * commission_bps
/ 1e4)`` USD; cash moves by ``-side * q * p - commission``. At every bar
``equity = cash + sum(position * last close)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit, prange

from trader.backtest.config import (
    C_BAR_NS,
    C_CASH_CHECK,
    C_COMMISSION_BPS,
    C_COMMISSION_MIN,
    C_COMMISSION_PER_SHARE,
    C_LATENCY_NS,
    C_LIMIT_OFFSET_BPS,
    C_ORDER_TYPE,
    C_PARTICIPATION,
    C_SLIPPAGE_BPS,
    C_SPREAD_BPS,
    C_STOP_OFFSET_BPS,
    C_TIF,
)
from trader.backtest.enums import FILL_DTYPE, ORDER_DTYPE

# The IntEnum values of trader.backtest.enums as plain constants for the kernels.
MARKET, LIMIT, STOP, STOP_LIMIT = 0, 1, 2, 3
DAY, GTC, IOC = 0, 1, 2
PENDING, WORKING, FILLED, CANCELLED, EXPIRED = 0, 1, 2, 3, 4

#: Columns of the per-parameter-set statistics returned by :func:`sweep_bars_nb`.
SWEEP_STATS = (
    "total_return",
    "final_equity",
    "max_drawdown",
    "sharpe",
    "n_fills",
    "commission",
    "exposure",
)


@njit(cache=True)
def round_to_tick_nb(price: float) -> float:
    """Round a USD price to the venue's tick: 0.01 at or above 1 USD, else 0.0001."""
    tick = 0.01 if price >= 1.0 else 0.0001
    return np.round(price / tick) * tick


@njit(cache=True)
def commission_nb(qty: float, price: float, fc: np.ndarray) -> float:
    """Commission of one fill, USD: ``max(min, qty * per_share + qty * price * bps / 1e4)``.

    ``qty`` in shares (> 0), ``price`` in USD; ``fc`` the config vector
    (:meth:`~trader.backtest.config.ExecutionConfig.to_array`).
    """
    c = qty * fc[C_COMMISSION_PER_SHARE] + qty * price * fc[C_COMMISSION_BPS] * 1e-4
    return max(c, fc[C_COMMISSION_MIN])


@njit(cache=True)
def affordable_qty_nb(cash: float, price: float, fc: np.ndarray) -> float:
    """Whole shares a buy at ``price`` USD may take so that cash stays >= 0 after the
    commission (an upper bound of :func:`commission_nb` is used: per share + bps + min)."""
    unit = price * (1.0 + fc[C_COMMISSION_BPS] * 1e-4) + fc[C_COMMISSION_PER_SHARE]
    room = cash - fc[C_COMMISSION_MIN]
    if room <= 0.0 or unit <= 0.0:
        return 0.0
    return np.floor(room / unit)


@njit(cache=True)
def _path_point(k: int, o: float, e1: float, e2: float, c: float) -> float:
    if k == 0:
        return o
    if k == 1:
        return e1
    if k == 2:
        return e2
    return c


@njit(cache=True)
def bar_fill_price_nb(
    side: int,
    order_type: int,
    limit: float,
    stop: float,
    triggered: int,
    o: float,
    h: float,
    lo: float,
    c: float,
) -> tuple[float, int, bool]:
    """Where a working order fills on one bar under the intrabar path convention.

    Parameters
    ----------
    side : int
        +1 buy, -1 sell.
    order_type : int
        :class:`~trader.backtest.enums.OrderType` value.
    limit, stop : float
        USD (ignored by types that do not use them).
    triggered : int
        1 if a stop(-limit) order already triggered on an earlier bar.
    o, h, lo, c : float
        The bar's open, high, low, close, USD.

    Returns
    -------
    (price, triggered, market_like) : (float, int, bool)
        Fill price in USD before slippage (NaN: no fill on this bar), the trigger state
        after the bar, and whether the fill is market-like (pays slippage).
    """
    if order_type == MARKET:
        return o, triggered, True
    if h - o < o - lo:
        e1, e2 = h, lo
    else:
        e1, e2 = lo, h
    p = o  # price where the limit phase starts
    k = 1  # next path point after p
    if order_type in (STOP, STOP_LIMIT) and triggered == 0:
        if side * (o - stop) >= 0.0:
            p, k = o, 1
        else:
            k = 0
            for j in range(1, 4):
                if side * (_path_point(j, o, e1, e2, c) - stop) >= 0.0:
                    k = j
                    break
            if k == 0:
                return np.nan, 0, False
            p = stop
        triggered = 1
        if order_type == STOP:
            return p, 1, True
    elif order_type == STOP:  # triggered on an earlier bar: a market order now
        return o, 1, True
    # limit phase: from p along the points k..3
    if side * (p - limit) <= 0.0:
        return p, triggered, False
    for j in range(k, 4):
        if side * (_path_point(j, o, e1, e2, c) - limit) <= 0.0:
            return limit, triggered, False
    return np.nan, triggered, False


@njit(cache=True)
def _order_prices(side: int, ref: float, fc: np.ndarray) -> tuple[float, float]:
    """(limit, stop) USD of a new order of ``side`` decided at reference price ``ref``."""
    order_type = int(fc[C_ORDER_TYPE])
    limit, stop = np.nan, np.nan
    if side == 0:
        return limit, stop
    if order_type in (STOP, STOP_LIMIT):
        stop = round_to_tick_nb(ref * (1.0 + side * fc[C_STOP_OFFSET_BPS] * 1e-4))
    if order_type == LIMIT:
        limit = round_to_tick_nb(ref * (1.0 - side * fc[C_LIMIT_OFFSET_BPS] * 1e-4))
    elif order_type == STOP_LIMIT:
        limit = round_to_tick_nb(stop * (1.0 + side * fc[C_LIMIT_OFFSET_BPS] * 1e-4))
    return limit, stop


@njit(cache=True)
def _new_order(
    orders: np.ndarray,
    n_orders: int,
    k: int,
    i: int,
    ts_decision: int,
    ts_arrival: int,
    target: float,
    position: float,
    ref: float,
    fc: np.ndarray,
) -> None:
    side = 0
    if target > position:
        side = 1
    elif target < position:
        side = -1
    limit, stop = _order_prices(side, ref, fc)
    r = orders[n_orders]
    r["id"] = n_orders
    r["symbol"] = k
    r["bar"] = i
    r["ts_decision"] = ts_decision
    r["ts_arrival"] = ts_arrival
    r["ts_done"] = -1
    r["side"] = side
    r["type"] = int(fc[C_ORDER_TYPE])
    r["tif"] = int(fc[C_TIF])
    r["status"] = PENDING
    r["triggered"] = 0
    r["day"] = -1
    r["target"] = target
    r["qty"] = 0.0
    r["limit"] = limit
    r["stop"] = stop
    r["filled"] = 0.0
    r["avg_price"] = np.nan


@njit(cache=True)
def _arrive(
    orders: np.ndarray, o: int, position: np.ndarray, active: np.ndarray, day: int, t: int
) -> None:
    """Order ``o`` arrives at ``t``: cancel the symbol's working order, size this one."""
    r = orders[o]
    k = r["symbol"]
    a = active[k]
    if a >= 0:
        orders[a]["status"] = CANCELLED
        orders[a]["ts_done"] = t
        active[k] = -1
    q = r["target"] - position[k]
    r["day"] = day
    if r["side"] == 0 or q * r["side"] <= 0.0:
        r["status"] = CANCELLED
        r["ts_done"] = t
        return
    r["qty"] = abs(q)
    r["status"] = WORKING
    active[k] = o


@njit(cache=True)
def _fill(
    orders: np.ndarray,
    a: int,
    fills: np.ndarray,
    n_fills: int,
    i: int,
    t: int,
    qty: float,
    price: float,
    slippage: float,
    fc: np.ndarray,
) -> tuple[float, float]:
    """Record a fill of ``qty`` shares of order ``a`` at ``price`` (slippage included);
    return (cash delta USD, signed shares)."""
    r = orders[a]
    side = r["side"]
    comm = commission_nb(qty, price, fc)
    f = fills[n_fills]
    f["order_id"] = a
    f["symbol"] = r["symbol"]
    f["bar"] = i
    f["ts_event"] = t
    f["qty"] = side * qty
    f["price"] = price
    f["commission"] = comm
    f["slippage"] = qty * abs(slippage)
    done = r["filled"]
    if done == 0.0:
        r["avg_price"] = price
    else:
        r["avg_price"] = (r["avg_price"] * done + price * qty) / (done + qty)
    r["filled"] = done + qty
    if r["filled"] >= r["qty"]:
        r["status"] = FILLED
        r["ts_done"] = t
    return -side * qty * price - comm, side * qty


@njit(cache=True)
def _decide(
    target: float,
    k: int,
    sent: np.ndarray,
    active: np.ndarray,
    inflight: np.ndarray,
    position: np.ndarray,
) -> bool:
    """Whether the step's ``target`` for symbol ``k`` needs a new order."""
    if np.isnan(target):
        return False
    if target != sent[k]:
        return True
    return active[k] < 0 and inflight[k] == 0 and position[k] != target


@njit  # not cached: with a kernel as argument the cache misses in every new process and grows
def simulate_bars_nb(
    step_nb: Callable[..., float],
    ts: np.ndarray,
    day: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    signal: np.ndarray,
    params: np.ndarray,
    states: np.ndarray,
    fc: np.ndarray,
    initial_cash: float,
    orders: np.ndarray,
    fills: np.ndarray,
    cash_out: np.ndarray,
    equity_out: np.ndarray,
    position_out: np.ndarray,
) -> tuple[int, int]:
    """Run ``step_nb`` over a panel of bars with the full order, fill and cost model.

    Parameters
    ----------
    step_nb : numba function ``(state, params, close, signal) -> target shares``
    ts : ndarray, shape (n,), int64
        Bar start, ns since epoch UTC, strictly increasing.
    day : ndarray, shape (n,), int64
        New York session day of each bar (any integer that changes between sessions).
    open_, high, low, close, volume : ndarray, shape (n, m), float64
        USD per share and shares; NaN in ``close`` marks a missing bar of a symbol.
    signal : ndarray, shape (n, m), float64
        External input of the step per bar and symbol (NaN for rule strategies).
    params : ndarray, shape (m, n_params), float64
        The strategy's parameter vector per symbol.
    states : ndarray, shape (m, state_size), float64
        Zeroed step states, mutated.
    fc : ndarray, shape (N_CONFIG,), float64
        :meth:`~trader.backtest.config.ExecutionConfig.to_array`.
    initial_cash : float
        USD.
    orders, fills : ndarray, ORDER_DTYPE / FILL_DTYPE
        Output buffers (``n * m`` records each always suffice).
    cash_out, equity_out : ndarray, shape (n,), float64
        End-of-bar cash and equity, USD.
    position_out : ndarray, shape (n, m), float64
        End-of-bar positions, shares.

    Returns
    -------
    (n_orders, n_fills) : (int, int)
        Records written, or (-1, -1) if a buffer was too small.
    """
    n, m = close.shape
    position = np.zeros(m)
    last_close = np.full(m, np.nan)
    sent = np.zeros(m)
    active = np.full(m, -1, dtype=np.int64)
    inflight = np.zeros(m, dtype=np.int64)
    delay = np.int64(fc[C_BAR_NS]) + np.int64(fc[C_LATENCY_NS])
    tif = int(fc[C_TIF])
    slip = (fc[C_SLIPPAGE_BPS] + 0.5 * fc[C_SPREAD_BPS]) * 1e-4
    part = fc[C_PARTICIPATION]
    cash_check = fc[C_CASH_CHECK] != 0.0
    cash = initial_cash
    n_orders = 0
    n_fills = 0
    next_arrival = 0
    for i in range(n):
        t = ts[i]
        while next_arrival < n_orders and orders[next_arrival]["ts_arrival"] <= t:
            inflight[orders[next_arrival]["symbol"]] -= 1
            _arrive(orders, next_arrival, position, active, day[i], t)
            next_arrival += 1
        for k in range(m):
            a = active[k]
            if a < 0 or np.isnan(close[i, k]):
                continue
            r = orders[a]
            if tif == DAY and r["day"] != day[i]:
                r["status"] = EXPIRED
                r["ts_done"] = t
                active[k] = -1
                continue
            side = r["side"]
            price, trig, market_like = bar_fill_price_nb(
                side,
                r["type"],
                r["limit"],
                r["stop"],
                r["triggered"],
                open_[i, k],
                high[i, k],
                low[i, k],
                close[i, k],
            )
            r["triggered"] = trig
            if not np.isnan(price):
                slippage = side * price * slip if market_like else 0.0
                px = price + slippage
                q = min(r["qty"] - r["filled"], np.floor(part * volume[i, k]))
                if cash_check and side > 0:
                    q = min(q, affordable_qty_nb(cash, px, fc))
                if q > 0.0:
                    if n_fills >= fills.shape[0]:
                        return -1, -1
                    dcash, dpos = _fill(orders, a, fills, n_fills, i, t, q, px, slippage, fc)
                    n_fills += 1
                    cash += dcash
                    position[k] += dpos
                    if r["status"] == FILLED:
                        active[k] = -1
            if active[k] >= 0 and tif == IOC:
                r["status"] = CANCELLED
                r["ts_done"] = t
                active[k] = -1
        equity = cash
        for k in range(m):
            c = close[i, k]
            if not np.isnan(c):
                last_close[k] = c
                target = step_nb(states[k], params[k], c, signal[i, k])
                if _decide(target, k, sent, active, inflight, position):
                    if n_orders >= orders.shape[0]:
                        return -1, -1
                    _new_order(
                        orders,
                        n_orders,
                        k,
                        i,
                        t + np.int64(fc[C_BAR_NS]),
                        t + delay,
                        target,
                        position[k],
                        c,
                        fc,
                    )
                    n_orders += 1
                    inflight[k] += 1
                    sent[k] = target
            if position[k] != 0.0:
                equity += position[k] * last_close[k]
            position_out[i, k] = position[k]
        cash_out[i] = cash
        equity_out[i] = equity
    return n_orders, n_fills


@njit  # not cached, as simulate_bars_nb
def simulate_quotes_nb(
    step_nb: Callable[..., float],
    ts: np.ndarray,
    bid: np.ndarray,
    ask: np.ndarray,
    bid_size: np.ndarray,
    ask_size: np.ndarray,
    signal: np.ndarray,
    params: np.ndarray,
    state: np.ndarray,
    fc: np.ndarray,
    initial_cash: float,
    orders: np.ndarray,
    fills: np.ndarray,
    cash_out: np.ndarray,
    equity_out: np.ndarray,
    position_out: np.ndarray,
) -> tuple[int, int]:
    """Run ``step_nb`` over level-1 quote events of one symbol, filling at the touch.

    The step sees the mid ``(bid + ask) / 2`` of each event's book; positions are
    marked to it. Orders arrive ``latency_ns`` after the event that decided them
    (``bar_ns`` is not used); fills follow the quote rules of this module.

    Parameters
    ----------
    ts : ndarray, shape (n,), int64
        Event time, ns since epoch UTC, non-decreasing.
    bid, ask : ndarray, shape (n,), float64
        Touch prices after each event, USD (NaN: empty side, no fill, no step).
    bid_size, ask_size : ndarray, shape (n,), float64
        Displayed shares at the touch.
    signal : ndarray, shape (n,), float64
    params, state : ndarray, float64
        One symbol's parameter vector and zeroed step state.
    fc, initial_cash, orders, fills, cash_out, equity_out
        As :func:`simulate_bars_nb`.
    position_out : ndarray, shape (n,), float64

    Returns
    -------
    (n_orders, n_fills) : (int, int)
        Records written, or (-1, -1) if a buffer was too small.
    """
    n = ts.shape[0]
    position = np.zeros(1)
    sent = np.zeros(1)
    active = np.full(1, -1, dtype=np.int64)
    inflight = np.zeros(1, dtype=np.int64)
    delay = np.int64(fc[C_LATENCY_NS])
    tif = int(fc[C_TIF])
    slip = fc[C_SLIPPAGE_BPS] * 1e-4
    cash_check = fc[C_CASH_CHECK] != 0.0
    cash = initial_cash
    n_orders = 0
    n_fills = 0
    next_arrival = 0
    taken_px = np.full(2, np.nan)  # [buy side (ask), sell side (bid)]
    taken_qty = np.zeros(2)
    mid = np.nan
    for i in range(n):
        t = ts[i]
        while next_arrival < n_orders and orders[next_arrival]["ts_arrival"] <= t:
            inflight[0] -= 1
            _arrive(orders, next_arrival, position, active, 0, t)
            next_arrival += 1
        a = active[0]
        if a >= 0:
            r = orders[a]
            side = r["side"]
            s = 0 if side > 0 else 1
            px = ask[i] if side > 0 else bid[i]
            size = ask_size[i] if side > 0 else bid_size[i]
            if not np.isnan(px):
                if px != taken_px[s]:
                    taken_px[s] = px
                    taken_qty[s] = 0.0
                avail = size - taken_qty[s]
                otype = r["type"]
                if otype in (STOP, STOP_LIMIT) and side * (px - r["stop"]) >= 0.0:
                    r["triggered"] = 1
                marketable = otype == MARKET or (otype == STOP and r["triggered"] == 1)
                limit_ok = (otype == LIMIT or (otype == STOP_LIMIT and r["triggered"] == 1)) and (
                    side * (px - r["limit"]) <= 0.0
                )
                if (marketable or limit_ok) and avail > 0.0:
                    slippage = side * px * slip if marketable else 0.0
                    fpx = px + slippage
                    q = min(r["qty"] - r["filled"], avail)
                    if cash_check and side > 0:
                        q = min(q, affordable_qty_nb(cash, fpx, fc))
                    if q > 0.0:
                        if n_fills >= fills.shape[0]:
                            return -1, -1
                        dcash, dpos = _fill(orders, a, fills, n_fills, i, t, q, fpx, slippage, fc)
                        n_fills += 1
                        taken_qty[s] += q
                        cash += dcash
                        position[0] += dpos
                        if r["status"] == FILLED:
                            active[0] = -1
            if active[0] >= 0 and tif == IOC:
                r["status"] = CANCELLED
                r["ts_done"] = t
                active[0] = -1
        if not (np.isnan(bid[i]) or np.isnan(ask[i])):
            mid = 0.5 * (bid[i] + ask[i])
            target = step_nb(state, params, mid, signal[i])
            if _decide(target, 0, sent, active, inflight, position):
                if n_orders >= orders.shape[0]:
                    return -1, -1
                _new_order(orders, n_orders, 0, i, t, t + delay, target, position[0], mid, fc)
                n_orders += 1
                inflight[0] += 1
                sent[0] = target
        cash_out[i] = cash
        equity_out[i] = cash + (position[0] * mid if position[0] != 0.0 else 0.0)
        position_out[i] = position[0]
    return n_orders, n_fills


@njit(cache=True)
def equity_stats_nb(
    equity: np.ndarray, day: np.ndarray, initial_cash: float, periods_per_year: float
) -> tuple[float, float, float]:
    """(total return, max drawdown, Sharpe) of an equity curve, as in :mod:`trader.metrics`.

    Total return ``equity[-1] / initial_cash - 1``; max drawdown the largest fall from
    a running peak that starts at ``initial_cash`` (positive fraction); Sharpe
    ``mean / std(ddof=1) * sqrt(periods_per_year)`` of daily close-to-close returns, the
    first day measured from its first value (``trader.metrics.daily_returns``); NaN
    with fewer than two days or zero volatility.
    """
    n = equity.shape[0]
    peak = initial_cash
    mdd = 0.0
    for i in range(n):
        if equity[i] > peak:
            peak = equity[i]
        dd = (peak - equity[i]) / peak
        if dd > mdd:
            mdd = dd
    # daily returns: Welford's running mean / variance
    prev = equity[0]
    cnt = 0
    mean = 0.0
    m2 = 0.0
    for i in range(n):
        if i == n - 1 or day[i + 1] != day[i]:
            ret = equity[i] / prev - 1.0
            prev = equity[i]
            cnt += 1
            d = ret - mean
            mean += d / cnt
            m2 += d * (ret - mean)
    sharpe = np.nan
    if cnt >= 2:
        sd = np.sqrt(m2 / (cnt - 1))
        if sd > 0.0:
            sharpe = mean / sd * np.sqrt(periods_per_year)
    return equity[n - 1] / initial_cash - 1.0, mdd, sharpe


@njit(parallel=True)  # not cached, as simulate_bars_nb
def sweep_bars_nb(
    step_nb: Callable[..., float],
    ts: np.ndarray,
    day: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    signal: np.ndarray,
    grid: np.ndarray,
    state_size: int,
    fc: np.ndarray,
    initial_cash: float,
    periods_per_year: float,
) -> np.ndarray:
    """Backtest every parameter vector of ``grid`` on one symbol's bars, in parallel.

    Parameters
    ----------
    grid : ndarray, shape (g, n_params), float64
        One strategy parameter vector per row.
    state_size : int
        Length of the step state.
    periods_per_year : float
        Annualisation of the daily Sharpe ratio (252).
    ts, day, open_ ... signal, fc, initial_cash
        As :func:`simulate_bars_nb` with ``m = 1``.

    Returns
    -------
    ndarray, shape (g, len(SWEEP_STATS)), float64
        Per row: total return, final equity (USD), max drawdown, daily Sharpe, fills,
        commission (USD), exposure (fraction of bars with a position).
    """
    n = close.shape[0]
    g = grid.shape[0]
    out = np.empty((g, len(SWEEP_STATS)))
    for s in prange(g):
        orders = np.empty(n, dtype=ORDER_DTYPE)
        fills = np.empty(n, dtype=FILL_DTYPE)
        cash = np.empty(n)
        equity = np.empty(n)
        position = np.empty((n, 1))
        states = np.zeros((1, state_size))
        params = grid[s : s + 1]
        _, n_fills = simulate_bars_nb(
            step_nb,
            ts,
            day,
            open_,
            high,
            low,
            close,
            volume,
            signal,
            params,
            states,
            fc,
            initial_cash,
            orders,
            fills,
            cash,
            equity,
            position,
        )
        total, mdd, sharpe = equity_stats_nb(equity, day, initial_cash, periods_per_year)
        comm = 0.0
        for f in range(n_fills):
            comm += fills[f]["commission"]
        held = 0
        for i in range(n):
            if position[i, 0] != 0.0:
                held += 1
        out[s, 0] = total
        out[s, 1] = equity[n - 1]
        out[s, 2] = mdd
        out[s, 3] = sharpe
        out[s, 4] = n_fills
        out[s, 5] = comm
        out[s, 6] = held / n
    return out
