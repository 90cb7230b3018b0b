"""The risk gate's kernel: every pre-trade control in one numba call (no Python objects,
no exceptions), returning a control code; :class:`live.risk.RiskGate` names it.

Comparisons are in float64 on USD and shares; exact amounts stay in the Decimal ledger.
A code names the first control that denies, in this order.
"""

from __future__ import annotations

import numpy as np
from numba import njit

APPROVED = 0
KILL_SWITCH = 1
MAX_ORDER_QTY = 2
MAX_ORDER_NOTIONAL = 3
MAX_POSITION_QTY = 4
DAILY_LOSS_LIMIT = 5
#: Control names by code (index).
CONTROLS = ("approved", "kill_switch", "max_order_qty", "max_order_notional",
            "max_position_qty", "daily_loss_limit")  # fmt: skip

# limits layout
L_MAX_ORDER_QTY = 0
L_MAX_ORDER_NOTIONAL = 1
L_MAX_POSITION_QTY = 2
L_DAILY_LOSS_LIMIT = 3
N_LIMITS = 4


@njit(cache=True)
def check_nb(
    limits: np.ndarray,
    halted: bool,
    qty: float,
    price: float,
    position: float,
    pending: float,
    day_pnl: float,
) -> int:
    """Evaluate the pre-trade controls for one intent.

    Parameters
    ----------
    limits : ndarray, shape (N_LIMITS,), float64
        ``[max_order_qty (shares), max_order_notional (USD), max_position_qty (shares),
        daily_loss_limit (USD, > 0)]``.
    halted : bool
        Kill switch engaged.
    qty : float
        Signed order quantity, shares (+ buy, - sell).
    price : float
        Expected fill price (last price), USD/share.
    position, pending : float
        Signed shares held and in open orders for the symbol.
    day_pnl : float
        Realized + unrealized P&L since the session open, USD.

    Returns
    -------
    int
        ``APPROVED`` (0) or the code of the first denying control. An order that reduces
        the absolute exposure passes the position and daily-loss controls.
    """
    if halted:
        return KILL_SWITCH
    size = abs(qty)
    if size > limits[L_MAX_ORDER_QTY]:
        return MAX_ORDER_QTY
    if size * price > limits[L_MAX_ORDER_NOTIONAL]:
        return MAX_ORDER_NOTIONAL
    before = abs(position + pending)
    after = abs(position + pending + qty)
    reduces = after < before
    if after > limits[L_MAX_POSITION_QTY] and not reduces:
        return MAX_POSITION_QTY
    if day_pnl <= -limits[L_DAILY_LOSS_LIMIT] and not reduces:
        return DAILY_LOSS_LIMIT
    return APPROVED
