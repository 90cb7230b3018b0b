"""Order types, times in force and order statuses of the backtester.

The integer values are what the numba kernels (:mod:`trader.backtest.nb`) store in the
``type``, ``tif`` and ``status`` fields of :data:`ORDER_DTYPE` records.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class OrderType(IntEnum):
    """How an order is priced (Alpaca's ``type``)."""

    MARKET = 0
    """Fills at the first price available after arrival (a bar's open, the touch)."""
    LIMIT = 1
    """Fills at the limit price or better."""
    STOP = 2
    """Becomes a market order once the stop price trades (a buy stop at or above it)."""
    STOP_LIMIT = 3
    """Becomes a limit order once the stop price trades."""


class TimeInForce(IntEnum):
    """How long an order works (Alpaca's ``time_in_force``)."""

    DAY = 0
    """Until the end of the New York session day it arrived in."""
    GTC = 1
    """Until filled or replaced."""
    IOC = 2
    """The first bar or quote after arrival only; the rest is cancelled."""


class OrderStatus(IntEnum):
    """Life cycle of an order record."""

    PENDING = 0
    """Decided, not yet arrived (latency)."""
    WORKING = 1
    """Arrived, may fill (``filled > 0`` means partially filled)."""
    FILLED = 2
    CANCELLED = 3
    """Replaced by a newer order, IOC remainder, or nothing left to do on arrival."""
    EXPIRED = 4
    """A DAY order at the end of its session."""


#: One order of the backtester, created when the strategy's target changes.
#: ``id``: index in the order array; ``symbol``: column of the panel; ``bar``: bar (or
#: event) index of the decision; ``ts_decision``/``ts_arrival``/``ts_done``: ns since
#: epoch UTC (``ts_done`` -1 while live); ``side``: +1 buy / -1 sell; ``target``: the
#: position it works towards, shares; ``qty``: shares ordered on arrival (> 0, 0 if
#: cancelled on arrival); ``limit``/``stop``: USD (NaN when unused); ``filled``: shares;
#: ``avg_price``: USD per share of the fills (NaN before the first); ``triggered``: 1 once
#: a stop or stop-limit has triggered.
ORDER_DTYPE = np.dtype(
    [
        ("id", "<i8"),
        ("symbol", "<i8"),
        ("bar", "<i8"),
        ("ts_decision", "<i8"),
        ("ts_arrival", "<i8"),
        ("ts_done", "<i8"),
        ("side", "<i8"),
        ("type", "<i8"),
        ("tif", "<i8"),
        ("status", "<i8"),
        ("triggered", "<i8"),
        ("day", "<i8"),
        ("target", "<f8"),
        ("qty", "<f8"),
        ("limit", "<f8"),
        ("stop", "<f8"),
        ("filled", "<f8"),
        ("avg_price", "<f8"),
    ]
)

#: One fill. ``order_id``: index into the orders; ``bar``: bar (or event) index that
#: filled it; ``ts_event``: that bar's start (or the event time), ns UTC; ``qty``: signed
#: shares (+ buy, - sell); ``price``: USD per share including slippage; ``commission``:
#: USD; ``slippage``: USD paid against the unslipped price (>= 0).
FILL_DTYPE = np.dtype(
    [
        ("order_id", "<i8"),
        ("symbol", "<i8"),
        ("bar", "<i8"),
        ("ts_event", "<i8"),
        ("qty", "<f8"),
        ("price", "<f8"),
        ("commission", "<f8"),
        ("slippage", "<f8"),
    ]
)

__all__ = ["FILL_DTYPE", "ORDER_DTYPE", "OrderStatus", "OrderType", "TimeInForce"]
