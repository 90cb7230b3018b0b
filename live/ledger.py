"""Positions and P&L from fills, in exact decimal arithmetic.

FIFO lot accounting: a fill that adds to a position opens a lot at its price; a fill
that reduces it closes the oldest lots first and realises
``(fill_price - lot_price) * closed_qty`` (sign-adjusted for shorts); a fill that crosses
zero closes every lot and opens the remainder at the fill price. Every amount is a sum
of products of Decimals, so realized + unrealized P&L equals the cash flows exactly
(no division is involved; the average entry price is derived for display only).
Money in USD, quantities in shares (``Decimal``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

ZERO = Decimal(0)


@dataclass
class Position:
    """One symbol's position: open ``lots`` as (signed shares, USD/share), oldest first;
    ``realized_pnl`` USD; ``last_price`` USD/share (mark)."""

    symbol: str
    lots: deque[tuple[Decimal, Decimal]] = field(default_factory=deque)
    realized_pnl: Decimal = ZERO
    last_price: Decimal | None = None

    @property
    def qty(self) -> Decimal:
        """Signed shares held."""
        return sum((q for q, _ in self.lots), ZERO)

    @property
    def cost_basis(self) -> Decimal:
        """Signed USD paid for the open lots (``sum(qty * price)``)."""
        return sum((q * p for q, p in self.lots), ZERO)

    @property
    def avg_price(self) -> Decimal:
        """Average entry price of the open lots, USD/share (0 when flat); display only."""
        qty = self.qty
        return self.cost_basis / qty if qty else ZERO

    @property
    def unrealized_pnl(self) -> Decimal:
        """``last_price * qty - cost_basis`` USD (0 without a mark)."""
        if self.last_price is None or not self.lots:
            return ZERO
        return self.last_price * self.qty - self.cost_basis


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
        remaining = qty
        while remaining and p.lots and (p.lots[0][0] > 0) != (remaining > 0):
            lot_qty, lot_price = p.lots[0]
            closed = min(abs(remaining), abs(lot_qty)) * (1 if lot_qty > 0 else -1)
            p.realized_pnl += (price - lot_price) * closed
            remaining += closed
            if closed == lot_qty:
                p.lots.popleft()
            else:
                p.lots[0] = (lot_qty - closed, lot_price)
        if remaining:
            p.lots.append((remaining, price))
        if p.last_price is None:
            p.last_price = price
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
