"""The risk gate's kernel: every pre-trade control in one numba call (no Python objects,
no exceptions), returning a control code; :class:`live.risk.RiskGate` names it.

Comparisons are in float64 on USD and shares; exact amounts stay in the Decimal ledger.
The code names the first control that denies, in the order of :data:`CONTROLS`. An
order that reduces the absolute position ("reducing") passes the exposure, open-order
and loss controls: exits are never blocked by them (SEC Rule 15c3-5 asks for controls
that prevent *new* risk, not ones that trap a position).
"""

from __future__ import annotations

import numpy as np
from numba import njit

APPROVED = 0
KILL_SWITCH = 1
MAX_ORDER_QTY = 2
MAX_ORDER_NOTIONAL = 3
MIN_ORDER_VALUE = 4
ORDER_RATE = 5
MAX_POSITION_QTY = 6
MAX_POSITION_NOTIONAL = 7
MAX_OPEN_ORDERS = 8
DAILY_LOSS_LIMIT = 9
MAX_INTRADAY_DRAWDOWN = 10
#: Control names by code (index).
CONTROLS = (
    "approved",
    "kill_switch",
    "max_order_qty",
    "max_order_notional",
    "min_order_value",
    "max_orders_per_minute",
    "max_position_qty",
    "max_position_notional",
    "max_open_orders",
    "daily_loss_limit",
    "max_intraday_drawdown",
)

# limits layout
L_MAX_ORDER_QTY = 0
L_MAX_ORDER_NOTIONAL = 1
L_MIN_ORDER_VALUE = 2
L_MAX_ORDERS_PER_MINUTE = 3
L_MAX_POSITION_QTY = 4
L_MAX_POSITION_NOTIONAL = 5
L_MAX_OPEN_ORDERS = 6
L_DAILY_LOSS_LIMIT = 7
L_MAX_INTRADAY_DRAWDOWN = 8
N_LIMITS = 9
MINUTE_NS = 60_000_000_000


@njit(cache=True)
def orders_last_minute_nb(recent: np.ndarray, now_ns: int) -> int:
    """Count the approvals stamped in ``recent`` (int64 ns, 0 = empty) within the last 60 s."""
    n = 0
    for t in recent:
        if t > 0 and now_ns - t < MINUTE_NS:
            n += 1
    return n


@njit(cache=True)
def record_order_nb(recent: np.ndarray, now_ns: int) -> None:
    """Stamp one approval in the ring ``recent``, overwriting its oldest entry."""
    recent[np.argmin(recent)] = now_ns


@njit(cache=True)
def check_nb(
    limits: np.ndarray,
    halted: bool,
    qty: float,
    price: float,
    position: float,
    pending: float,
    open_orders: int,
    day_pnl: float,
    day_peak_pnl: float,
    recent: np.ndarray,
    now_ns: int,
) -> int:
    """Evaluate the pre-trade controls for one intent.

    Parameters
    ----------
    limits : ndarray, shape (N_LIMITS,), float64
        See the ``L_*`` layout: shares, USD, USD, orders/min, shares, USD, orders, USD
        (> 0), USD (> 0).
    halted : bool
        Kill switch engaged.
    qty : float
        Signed order quantity, shares (+ buy, - sell).
    price : float
        Expected fill price (last price), USD/share.
    position, pending : float
        Signed shares held and in open orders for the symbol.
    open_orders : int
        Orders sent and not yet terminal.
    day_pnl, day_peak_pnl : float
        Realized + unrealized P&L since the session open, and its highest value so far
        today (>= 0), USD.
    recent : ndarray, shape (k,), int64
        Wall-clock ns of the last approvals (see :func:`record_order_nb`), k >= the
        per-minute limit.
    now_ns : int
        Wall clock, ns since epoch UTC.

    Returns
    -------
    int
        ``APPROVED`` (0) or the code of the first denying control.
    """
    if halted:
        return KILL_SWITCH
    size = abs(qty)
    if size > limits[L_MAX_ORDER_QTY]:
        return MAX_ORDER_QTY
    value = size * price
    if value > limits[L_MAX_ORDER_NOTIONAL]:
        return MAX_ORDER_NOTIONAL
    if value < limits[L_MIN_ORDER_VALUE]:
        return MIN_ORDER_VALUE
    if orders_last_minute_nb(recent, now_ns) >= limits[L_MAX_ORDERS_PER_MINUTE]:
        return ORDER_RATE
    before = abs(position + pending)
    after = abs(position + pending + qty)
    if after < before:  # reducing: exposure and loss controls do not apply
        return APPROVED
    if after > limits[L_MAX_POSITION_QTY]:
        return MAX_POSITION_QTY
    if after * price > limits[L_MAX_POSITION_NOTIONAL]:
        return MAX_POSITION_NOTIONAL
    if open_orders >= limits[L_MAX_OPEN_ORDERS]:
        return MAX_OPEN_ORDERS
    if day_pnl <= -limits[L_DAILY_LOSS_LIMIT]:
        return DAILY_LOSS_LIMIT
    if day_peak_pnl - day_pnl >= limits[L_MAX_INTRADAY_DRAWDOWN]:
        return MAX_INTRADAY_DRAWDOWN
    return APPROVED
