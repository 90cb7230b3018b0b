"""Positions and P&L from fills, in exact decimal arithmetic.

Average-cost accounting: a fill that increases a position moves the average entry price
to the quantity-weighted mean; a fill that reduces it realises
``(fill_price - avg_price) * closed_qty`` (sign-adjusted for shorts); a fill that
crosses zero closes the old position and opens the remainder at the fill price.
Money in USD, quantities in shares (``Decimal``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

ZERO = Decimal(0)


@dataclass
class Position:
    """One symbol's position: ``qty`` signed shares, ``avg_price`` USD/share,
    ``realized_pnl`` USD, ``last_price`` USD/share (mark)."""

    symbol: str
    qty: Decimal = ZERO
    avg_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    last_price: Decimal | None = None

    @property
    def unrealized_pnl(self) -> Decimal:
        """``(last_price - avg_price) * qty`` USD (0 without a mark)."""
        if self.last_price is None or self.qty == 0:
            return ZERO
        return (self.last_price - self.avg_price) * self.qty


@dataclass
class Ledger:
    """Positions by symbol and the set of executions already applied.

    Fills are keyed by ``execution_id``: applying the same execution twice is a no-op,
    so a replayed or duplicated fill event never moves a position twice.
    """

    positions: dict[str, Position] = field(default_factory=dict)
    executions: set[str] = field(default_factory=set)

    def position(self, symbol: str) -> Position:
        """Return (creating if needed) the position of ``symbol``."""
        if symbol not in self.positions:
            self.positions[symbol] = Position(symbol)
        return self.positions[symbol]

    def apply_fill(self, execution_id: str, symbol: str, qty: Decimal, price: Decimal) -> bool:
        """Apply one execution.

        Parameters
        ----------
        execution_id : str
            The broker's unique id of this execution.
        symbol : str
        qty : Decimal
            Signed shares: positive bought, negative sold.
        price : Decimal
            USD per share of this execution.

        Returns
        -------
        bool
            False if this ``execution_id`` was already applied (nothing changed).

        Raises
        ------
        ValueError
            If ``qty`` is zero or ``price`` is not positive.
        """
        if execution_id in self.executions:
            return False
        if qty == 0 or not price > 0:
            raise ValueError(f"fill {execution_id}: invalid qty {qty} or price {price}")
        self.executions.add(execution_id)
        p = self.position(symbol)
        if p.qty == 0 or (p.qty > 0) == (qty > 0):
            new_qty = p.qty + qty
            p.avg_price = (p.avg_price * p.qty + price * qty) / new_qty
            p.qty = new_qty
        else:
            closed = min(abs(qty), abs(p.qty))
            direction = 1 if p.qty > 0 else -1
            p.realized_pnl += (price - p.avg_price) * closed * direction
            p.qty += qty
            if p.qty == 0:
                p.avg_price = ZERO
            elif (p.qty > 0) != (direction > 0):  # crossed zero: remainder opened at price
                p.avg_price = price
        p.last_price = price if p.last_price is None else p.last_price
        return True

    def mark(self, symbol: str, price: Decimal) -> None:
        """Set the mark price (USD/share) of ``symbol`` for unrealized P&L."""
        self.position(symbol).last_price = price

    @property
    def realized_pnl(self) -> Decimal:
        """Total realized P&L, USD."""
        return sum((p.realized_pnl for p in self.positions.values()), ZERO)

    @property
    def unrealized_pnl(self) -> Decimal:
        """Total unrealized P&L at the marks, USD."""
        return sum((p.unrealized_pnl for p in self.positions.values()), ZERO)
