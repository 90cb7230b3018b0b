"""The pre-trade risk gate: named controls evaluated for every order intent.

A denial is an event (:class:`RiskDecision` with ``approved=False``), not an exception:
the engine writes it to the audit trail with the control's name, limit and the
offending value. Only approved intents carry the gate's MAC
(:func:`live.bus.encode_intent`) and only those are accepted by the execution process.

The controls, their order and the exemption of exposure-reducing orders are documented
in :mod:`live.risk.nb`; each limit is a key of ``config/risk.toml``
(:class:`live.config.RiskLimits`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from live.config import RiskLimits
from live.risk import nb


@dataclass(frozen=True)
class RiskDecision:
    """Outcome of the gate for one intent (``control``/``limit``/``value`` set on denial)."""

    approved: bool
    control: str = ""
    limit: str = ""
    value: str = ""

    @property
    def reason(self) -> str:
        """Human-readable denial reason ("" when approved)."""
        if self.approved:
            return ""
        return f"{self.control}: value {self.value} breaches limit {self.limit}"


class RiskGate:
    """The controls' limits, the kill-switch flag and the order-rate window.

    Parameters
    ----------
    limits : RiskLimits
    halted : bool
        Initial kill-switch state (persisted across restarts by the daemon).
    """

    def __init__(self, limits: RiskLimits, *, halted: bool = False) -> None:
        self.limits = limits
        self.halted = halted
        self.limits_array = np.zeros(nb.N_LIMITS)
        for index, name in (
            (nb.L_MAX_ORDER_QTY, "max_order_qty"),
            (nb.L_MAX_ORDER_NOTIONAL, "max_order_notional"),
            (nb.L_MIN_ORDER_VALUE, "min_order_value"),
            (nb.L_MAX_ORDERS_PER_MINUTE, "max_orders_per_minute"),
            (nb.L_MAX_POSITION_QTY, "max_position_qty"),
            (nb.L_MAX_POSITION_NOTIONAL, "max_position_notional"),
            (nb.L_MAX_OPEN_ORDERS, "max_open_orders"),
            (nb.L_DAILY_LOSS_LIMIT, "daily_loss_limit"),
            (nb.L_MAX_INTRADAY_DRAWDOWN, "max_intraday_drawdown"),
        ):
            self.limits_array[index] = float(getattr(limits, name))
        self.recent = np.zeros(limits.max_orders_per_minute, dtype=np.int64)
        self.check_code(1.0, 1.0, 0.0, 0.0, 0, 0.0, 0.0, 0)  # compile before trading

    def check_code(
        self,
        qty: float,
        price: float,
        position: float,
        pending: float,
        open_orders: int,
        day_pnl: float,
        day_peak_pnl: float,
        now_ns: int,
    ) -> int:
        """Run the controls (hot path); 0 if approved, else a :mod:`live.risk.nb` code.
        Arguments as in :func:`live.risk.nb.check_nb`."""
        return int(
            nb.check_nb(
                self.limits_array,
                self.halted,
                qty,
                price,
                position,
                pending,
                open_orders,
                day_pnl,
                day_peak_pnl,
                self.recent,
                now_ns,
            )
        )

    def record(self, now_ns: int) -> None:
        """Count one approved order in the per-minute window (call after sending it)."""
        nb.record_order_nb(self.recent, now_ns)

    def explain(
        self,
        code: int,
        qty: float,
        price: float,
        position: float,
        pending: float,
        open_orders: int,
        day_pnl: float,
        day_peak_pnl: float,
        now_ns: int,
    ) -> RiskDecision:
        """Describe the outcome ``code`` of :meth:`check_code` for the same inputs."""
        control = nb.CONTROLS[code]
        if code == nb.APPROVED:
            return RiskDecision(True)
        after = abs(position + pending + qty)
        value = {
            nb.KILL_SWITCH: "order",
            nb.MAX_ORDER_QTY: f"{abs(qty):g}",
            nb.MAX_ORDER_NOTIONAL: f"{abs(qty) * price:.2f}",
            nb.MIN_ORDER_VALUE: f"{abs(qty) * price:.2f}",
            nb.ORDER_RATE: str(nb.orders_last_minute_nb(self.recent, now_ns)),
            nb.MAX_POSITION_QTY: f"{after:g}",
            nb.MAX_POSITION_NOTIONAL: f"{after * price:.2f}",
            nb.MAX_OPEN_ORDERS: str(open_orders),
            nb.DAILY_LOSS_LIMIT: f"{day_pnl:.2f}",
            nb.MAX_INTRADAY_DRAWDOWN: f"{day_peak_pnl - day_pnl:.2f}",
        }[code]
        if code == nb.KILL_SWITCH:
            limit = "engaged"
        elif code == nb.DAILY_LOSS_LIMIT:
            limit = str(-self.limits.daily_loss_limit)
        else:
            limit = str(getattr(self.limits, control))
        return RiskDecision(False, control, limit, value)

    def check(
        self,
        qty: Decimal,
        price: Decimal,
        position: Decimal,
        pending: Decimal,
        day_pnl: Decimal,
        *,
        open_orders: int = 0,
        day_peak_pnl: Decimal | None = None,
        now_ns: int | None = None,
    ) -> RiskDecision:
        """Check one intent and describe the outcome (Decimal convenience form).

        Parameters
        ----------
        qty : Decimal
            Signed order quantity, shares (+ buy, - sell); non-zero.
        price : Decimal
            Expected fill price (the last price), USD per share.
        position, pending : Decimal
            Signed shares held, and in open orders, for the intent's symbol.
        day_pnl : Decimal
            Realized + unrealized P&L since the session open, USD.
        open_orders : int
            Orders sent and not yet terminal.
        day_peak_pnl : Decimal, optional
            The day's highest P&L so far, USD (default ``max(0, day_pnl)``).
        now_ns : int, optional
            Wall clock, ns since epoch UTC (default now).
        """
        peak = max(Decimal(0), day_pnl) if day_peak_pnl is None else day_peak_pnl
        args = (
            float(qty),
            float(price),
            float(position),
            float(pending),
            open_orders,
            float(day_pnl),
            float(peak),
            time.time_ns() if now_ns is None else now_ns,
        )
        return self.explain(self.check_code(*args), *args)
