"""Fills applied exactly once.

Alpaca reports each execution on the ``trade_updates`` stream as a ``fill`` or
``partial_fill`` event with its own ``execution_id``, ``qty`` and ``price`` and the
order's cumulative ``filled_qty`` (alpaca.md §4, §7). Streams drop; after a reconnect
execution reads the missed executions over REST (the FILL account activities, each
with its ``cum_qty``: :func:`live.reconcile.missing_fills`) and feeds them through the
same :class:`FillBook`:

* each fill covers the part ``(cum_qty - qty, cum_qty]`` of its order's quantity;
* a fill is new only if its id was never seen *and* its part is not covered yet, so a
  redelivered event, or a stream event that a backfilled activity already stood in for,
  is dropped. Ids alone could not do it: a real FILL activity's id has the form
  ``20210127144930176::ddc0a142-...`` (a time stamp, ``::``, a UUID; Alpaca-API issue
  #170), the stream's ``execution_id`` is a bare UUID, and whether that UUID is the
  execution's is not documented.

The same book, seeded from the audit trail (:func:`live.reconcile.audited_fills`),
decides at a restart which of the broker's activities are missing.

Quantities and prices are :class:`~decimal.Decimal` (shares, USD/share).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

ZERO = Decimal(0)


@dataclass(frozen=True)
class Fill:
    """One execution of an order.

    Attributes
    ----------
    execution_id : str
        Alpaca's ``execution_id`` (stream) or activity id (REST backfill).
    order_id, client_order_id, symbol, side : str
    qty : Decimal
        Shares of this execution (> 0).
    price : Decimal
        USD/share of this execution.
    cum_qty : Decimal
        The order's filled quantity after this execution, shares.
    order_status : str
        The order's status after it (``partially_filled`` or ``filled``).
    timestamp : str or None
        Broker time (RFC 3339).
    position_qty : str or None
        The broker's position after it (stream only).
    """

    execution_id: str
    order_id: str
    client_order_id: str
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    cum_qty: Decimal
    order_status: str
    timestamp: str | None = None
    position_qty: str | None = None


@dataclass
class _OrderFills:
    """The parts ``(lo, hi]`` of an order's quantity that have been applied (disjoint,
    sorted, merged) and their notional, USD."""

    covered: list[tuple[Decimal, Decimal]]
    notional: Decimal = ZERO

    @property
    def cum_qty(self) -> Decimal:
        return sum((hi - lo for lo, hi in self.covered), ZERO)

    def contains(self, lo: Decimal, hi: Decimal) -> bool:
        return any(a <= lo and hi <= b for a, b in self.covered)

    def add(self, lo: Decimal, hi: Decimal) -> None:
        merged: list[tuple[Decimal, Decimal]] = []
        for a, b in sorted([*self.covered, (lo, hi)]):
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        self.covered = merged


class FillBook:
    """What has been filled, per broker order; see the module docstring for the rules."""

    def __init__(self) -> None:
        self._orders: dict[str, _OrderFills] = {}
        self._executions: set[str] = set()
        #: Events dropped as already applied (redelivered, or covered by a backfill).
        self.duplicates = 0

    def filled_qty(self, order_id: str) -> Decimal:
        """Shares of ``order_id`` applied so far."""
        known = self._orders.get(order_id)
        return known.cum_qty if known else ZERO

    def is_new(self, update: dict[str, Any]) -> bool:
        """Whether :meth:`on_stream` would apply this ``fill``/``partial_fill`` update
        (nothing is recorded).

        Raises
        ------
        ValueError
            As :meth:`on_stream`.
        """
        exec_id, order_id, qty, _price, cum = _parse(update)
        return self._is_new(exec_id, order_id, qty, cum)

    def _is_new(self, exec_id: str, order_id: str, qty: Decimal, cum: Decimal) -> bool:
        known = self._orders.get(order_id)
        return exec_id not in self._executions and not (known and known.contains(cum - qty, cum))

    def on_stream(self, update: dict[str, Any]) -> Fill | None:
        """Apply a ``fill``/``partial_fill`` trade update once.

        Returns
        -------
        Fill or None
            The fill to apply, or None if it was applied already.

        Raises
        ------
        ValueError
            The event lacks ``execution_id``, ``qty``, ``price`` or the order's
            ``id``/``filled_qty``, or they are not positive numbers, or ``qty`` exceeds
            ``filled_qty``.
        """
        exec_id, order_id, qty, price, cum = _parse(update)
        if not self._is_new(exec_id, order_id, qty, cum):
            self._executions.add(exec_id)
            self.duplicates += 1
            return None
        known = self._orders.setdefault(order_id, _OrderFills([]))
        self._executions.add(exec_id)
        known.add(cum - qty, cum)
        known.notional += qty * price
        order = update["order"]
        position = update.get("position_qty")
        return Fill(
            execution_id=exec_id,
            order_id=order_id,
            client_order_id=str(order.get("client_order_id", "")),
            symbol=str(order.get("symbol", "")),
            side=str(order.get("side", "")),
            qty=qty,
            price=price,
            cum_qty=cum,
            order_status=str(order.get("status", "")),
            timestamp=update.get("timestamp"),
            position_qty=None if position is None else str(position),
        )


def _parse(update: dict[str, Any]) -> tuple[str, str, Decimal, Decimal, Decimal]:
    """``(execution_id, order_id, qty, price, cum_qty)`` of a fill update, validated."""
    try:
        order = update["order"]
        exec_id = str(update["execution_id"])
        qty, price = _positive(update["qty"]), _positive(update["price"])
        cum = _positive(order["filled_qty"])
        order_id = str(order["id"])
    except (KeyError, TypeError, ArithmeticError) as e:
        what = update.get("execution_id")
        raise ValueError(f"fill event {what!r} is malformed: {e!r}") from e
    if cum < qty:
        raise ValueError(f"fill event {exec_id}: qty {qty} exceeds filled_qty {cum}")
    return exec_id, order_id, qty, price, cum


def _positive(value: object) -> Decimal:
    d = Decimal(str(value))
    if not d.is_finite() or d <= 0:
        raise ArithmeticError(f"{value!r} is not a positive number")
    return d
