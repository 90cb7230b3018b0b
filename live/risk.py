"""The pre-trade risk gate: small named controls evaluated for every order intent.

A denial is an event (:class:`RiskDecision` with ``approved=False``), not an exception:
the engine writes it to the audit trail with the control's name, limit and the
offending value. Only approved intents are signed (:func:`live.bus.sign_intent`) and
only signed intents are accepted by the execution process.

Controls, in evaluation order:

``kill_switch``       no order at all while the kill switch is engaged.
``max_order_qty``     ``|qty| <= limit`` shares.
``max_order_notional`` ``|qty| * price <= limit`` USD.
``max_position_qty``  ``|position + pending + qty| <= limit`` shares, unless the order
                      reduces the absolute exposure.
``daily_loss_limit``  while the day's realized + unrealized P&L is at or below
                      ``-limit`` USD, only exposure-reducing orders pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from live.config import RiskLimits


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


APPROVED = RiskDecision(True)


class RiskGate:
    """Evaluates the controls for one intent; holds the kill-switch flag.

    Parameters
    ----------
    limits : RiskLimits
    halted : bool
        Initial kill-switch state (persisted across restarts by the daemon).
    """

    def __init__(self, limits: RiskLimits, *, halted: bool = False) -> None:
        self.limits = limits
        self.halted = halted

    def check(
        self,
        qty: Decimal,
        price: Decimal,
        position: Decimal,
        pending: Decimal,
        day_pnl: Decimal,
    ) -> RiskDecision:
        """Check one order intent.

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

        Returns
        -------
        RiskDecision
        """
        lim = self.limits
        if self.halted:
            return RiskDecision(False, "kill_switch", "engaged", "order")
        if abs(qty) > lim.max_order_qty:
            return RiskDecision(False, "max_order_qty", str(lim.max_order_qty), str(abs(qty)))
        notional = abs(qty) * price
        if notional > lim.max_order_notional:
            return RiskDecision(
                False, "max_order_notional", str(lim.max_order_notional), f"{notional:.2f}"
            )
        before = abs(position + pending)
        after = abs(position + pending + qty)
        reduces = after < before
        if after > lim.max_position_qty and not reduces:
            return RiskDecision(False, "max_position_qty", str(lim.max_position_qty), str(after))
        if day_pnl <= -lim.daily_loss_limit and not reduces:
            return RiskDecision(
                False, "daily_loss_limit", str(-lim.daily_loss_limit), f"{day_pnl:.2f}"
            )
        return APPROVED
