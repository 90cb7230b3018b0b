"""The pre-trade risk gate: named controls evaluated for every order intent.

A denial is an event (:class:`RiskDecision` with ``approved=False``), not an exception:
the engine writes it to the audit trail with the control's name, limit and the
offending value. Only approved intents carry the gate's MAC
(:func:`live.bus.encode_intent`) and only those are accepted by the execution process.

Controls, in evaluation order (the kernel is :func:`live.risk.nb.check_nb`):

``kill_switch``        no order at all while the kill switch is engaged.
``max_order_qty``      ``|qty| <= limit`` shares.
``max_order_notional`` ``|qty| * price <= limit`` USD.
``max_position_qty``   ``|position + pending + qty| <= limit`` shares, unless the order
                       reduces the absolute exposure.
``daily_loss_limit``   while the day's realized + unrealized P&L is at or below
                       ``-limit`` USD, only exposure-reducing orders pass.
"""

from __future__ import annotations

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
    """The controls' limits and the kill-switch flag.

    Parameters
    ----------
    limits : RiskLimits
    halted : bool
        Initial kill-switch state (persisted across restarts by the daemon).
    """

    def __init__(self, limits: RiskLimits, *, halted: bool = False) -> None:
        self.limits = limits
        self.halted = halted
        self.limits_array = np.array(
            [limits.max_order_qty, limits.max_order_notional, limits.max_position_qty,
             limits.daily_loss_limit], dtype=np.float64,
        )  # fmt: skip
        nb.check_nb(self.limits_array, False, 1.0, 1.0, 0.0, 0.0, 0.0)  # compile now

    def check_code(
        self, qty: float, price: float, position: float, pending: float, day_pnl: float
    ) -> int:
        """Run the controls (hot path); 0 if approved, else a :mod:`live.risk.nb` code."""
        return int(
            nb.check_nb(self.limits_array, self.halted, qty, price, position, pending, day_pnl)
        )

    def explain(
        self, code: int, qty: float, price: float, position: float, pending: float,
        day_pnl: float,
    ) -> RiskDecision:  # fmt: skip
        """Describe the outcome ``code`` of :meth:`check_code` for these inputs."""
        lim = self.limits
        control = nb.CONTROLS[code]
        if code == nb.APPROVED:
            return RiskDecision(True)
        if code == nb.KILL_SWITCH:
            return RiskDecision(False, control, "engaged", "order")
        if code == nb.MAX_ORDER_QTY:
            return RiskDecision(False, control, str(lim.max_order_qty), f"{abs(qty):g}")
        if code == nb.MAX_ORDER_NOTIONAL:
            notional = f"{abs(qty) * price:.2f}"
            return RiskDecision(False, control, str(lim.max_order_notional), notional)
        if code == nb.MAX_POSITION_QTY:
            after = f"{abs(position + pending + qty):g}"
            return RiskDecision(False, control, str(lim.max_position_qty), after)
        return RiskDecision(False, control, str(-lim.daily_loss_limit), f"{day_pnl:.2f}")

    def check(
        self, qty: Decimal, price: Decimal, position: Decimal, pending: Decimal, day_pnl: Decimal
    ) -> RiskDecision:
        """Check one intent and describe the outcome.

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
        """
        args = (float(qty), float(price), float(position), float(pending), float(day_pnl))
        return self.explain(self.check_code(*args), *args)
