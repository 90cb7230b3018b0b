"""Reconciliation with the broker: at start (before any order) and every
``[recovery] reconcile_interval_s`` during the session.

1. Orders: every local ``orders`` row not in a terminal state is looked up at the
   broker by ``client_order_id``. Not there: a row still ``pending_submit`` (a crash
   between the row and the POST) becomes ``not_sent``, any other is a break. There: its
   status is taken; at start, an order still open from an earlier session is cancelled
   (what that session's shutdown would have done). Open orders at the broker with no
   local row are breaks.
2. Fills: for each of those orders whose broker ``filled_qty`` exceeds the local one,
   the missing executions are fetched (``GET /v2/account/activities/FILL``) and applied
   once. What is missing is decided by a :class:`~live.fills.FillBook` seeded from the
   audit trail (:func:`audited_fills`): by id, and by the part of the order each fill
   covers (``cum_qty``), because an activity's id is not the stream's ``execution_id``.
3. Positions: the local ``positions`` and the broker's are compared over the union of
   symbols; a difference is a break.

Every break is audited (``reconciliation_break``) and every run ends with a
``reconciled`` event (``status`` ``ok``, ``breaks`` or ``accepted``). Breaks the
operator accepted (:meth:`Reconciler.accept`: ``--accept-breaks`` at start, ``resume``
after a break halted trading) are remembered for the session: a later report with only
those is ``accepted``; any other break is new.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

import pandas as pd
import psycopg

from live.alpaca import AlpacaREST
from live.audit import AuditEmitter
from live.fills import FillBook
from live.recovery import TERMINAL
from trader.exceptions import OrderRejected, TemporaryError

BROKER_TERMINAL = {"filled", "canceled", "expired", "rejected", "replaced", "done_for_day"}


@dataclass
class Break:
    """One disagreement between local state and the broker.

    Attributes
    ----------
    kind : str
        ``position``, ``order_missing`` (a local order the broker does not know) or
        ``order_unknown`` (a broker order with no local row).
    detail : str
        Human-readable explanation.
    """

    kind: str
    detail: str
    symbol: str | None = None
    client_order_id: str | None = None
    local: str | None = None
    broker: str | None = None

    @property
    def key(self) -> tuple[str | None, ...]:
        """What identifies the break across runs (the same disagreement found again)."""
        return (self.kind, self.symbol, self.client_order_id, self.local, self.broker)


@dataclass
class Report:
    """Outcome of one reconciliation (``ts_ns``: ns since the epoch UTC)."""

    ts_ns: int
    breaks: list[Break] = field(default_factory=list)
    fills_applied: int = 0
    orders_settled: int = 0
    accepted: bool = False

    @property
    def ok(self) -> bool:
        """True when there is no break, or the operator accepted every one."""
        return not self.breaks or self.accepted

    def to_status(self) -> dict[str, Any]:
        """The ``reconciliation`` part of the daemon's status."""
        return {
            "reconciled": self.ok,
            "at_ns": self.ts_ns,
            "breaks": [asdict(b) for b in self.breaks],
            "accepted": self.accepted,
            "fills_applied": self.fills_applied,
            "orders_settled": self.orders_settled,
        }


def ts_ns(rfc3339: str) -> int:
    """ns since the epoch UTC of an RFC 3339 timestamp."""
    return int(pd.Timestamp(rfc3339).value)


def activity_update(act: dict[str, Any], order: dict[str, Any]) -> dict[str, Any]:
    """A ``trade_updates``-shaped fill event from a FILL activity and its order."""
    return {
        "event": act.get("type", "fill"),
        "execution_id": str(act["id"]),
        "qty": act["qty"],
        "price": act["price"],
        "timestamp": act.get("transaction_time"),
        "position_qty": None,
        # The order as it stood after this execution: its cum_qty places the fill in
        # the order (live.fills.FillBook dedupes on it even if ids differ).
        "order": {
            **order,
            "status": act.get("order_status", order.get("status")),
            "filled_qty": act.get("cum_qty", order.get("filled_qty")),
        },
    }


async def missing_fills(
    rest: AlpacaREST, orders: list[dict[str, Any]], book: FillBook
) -> list[dict[str, Any]]:
    """Trade-update fill events of ``orders`` (broker order JSON) that ``book`` has not
    applied (:meth:`~live.fills.FillBook.is_new`); ``book`` is not changed.

    Reads ``GET /v2/account/activities/FILL`` from the oldest order's creation on.
    """
    if not orders:
        return []
    by_id = {o["id"]: o for o in orders}
    after = min(o["created_at"] for o in orders)
    out = []
    for act in await rest.fill_activities(after=after):
        order = by_id.get(str(act.get("order_id")))
        if order is not None and book.is_new(upd := activity_update(act, order)):
            out.append(upd)
    return out


def audited_fills(conn: psycopg.Connection[Any], order_ids: list[str]) -> FillBook:
    """The fills of broker orders ``order_ids`` that the audit trail holds, as a book.

    Each fill covers ``(cum_qty - qty, cum_qty]`` of its order: ``cum_qty`` from the
    event's metadata (recorded since execution audits it), otherwise the running sum of
    the order's earlier fills in time order.
    """
    rows = conn.execute(
        "SELECT execution_id, broker_order_id, qty, price, metadata->>'cum_qty' FROM ("
        " SELECT DISTINCT ON (execution_id) * FROM order_audit_trail"
        " WHERE event_type IN ('fill', 'partial_fill') AND broker_order_id = ANY(%s)"
        " ORDER BY execution_id, id) f ORDER BY ts, id",
        (order_ids,),
    ).fetchall()
    book = FillBook()
    running: dict[str, Decimal] = {}
    for execution_id, order_id, qty, price, cum in rows:
        running[order_id] = running.get(order_id, Decimal(0)) + qty
        filled = Decimal(cum) if cum is not None else running[order_id]
        order = {"id": order_id, "filled_qty": filled}
        book.on_stream({"execution_id": execution_id, "qty": qty, "price": price, "order": order})
    return book


class Reconciler:
    """Reconciles the local book (Postgres) with the broker.

    Parameters
    ----------
    rest : AlpacaREST
        An open client.
    dsn : str
        Postgres.
    audit : AuditEmitter
        Where breaks, settled orders and (at start) recovered fills are audited.
    """

    def __init__(self, rest: AlpacaREST, dsn: str, audit: AuditEmitter) -> None:
        self.rest = rest
        self.dsn = dsn
        self.audit = audit
        self.last: Report | None = None
        self.accepted: set[tuple[str | None, ...]] = set()  # Break.key the operator accepted

    def _sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=3) as conn:
            return conn.execute(query, params).fetchall()

    async def _settle(
        self, at_start: bool, session_id: str, report: Report
    ) -> list[dict[str, Any]]:
        """Step 1; returns the broker JSON of the local open orders found there."""
        rows = self._sql(
            "SELECT client_order_id, session_id, status, filled_qty FROM orders"
            " WHERE status <> ALL(%s) ORDER BY created_at",
            (list(TERMINAL),),
        )
        found = []
        for coid, sess, status, _filled in rows:
            if not at_start and sess == session_id:
                continue  # this session's own orders are tracked by execution
            b = await self.rest.get_order_by_client_id(coid)
            if b is None:
                if status == "pending_submit":
                    self.audit.emit(
                        "reconciled",
                        client_order_id=coid,
                        status="not_sent",
                        reason="stored before the POST, unknown to the broker: never sent",
                    )
                    report.orders_settled += 1
                else:
                    report.breaks.append(
                        Break(
                            "order_missing",
                            f"order {coid} ({status}) unknown to the broker",
                            client_order_id=coid,
                            local=status,
                        )
                    )
                continue
            if at_start and b["status"] not in BROKER_TERMINAL:
                b = await self._cancel(b)
            self.audit.emit(
                "reconciled",
                client_order_id=coid,
                broker_order_id=b["id"],
                symbol=b.get("symbol"),
                side=b.get("side"),
                qty=Decimal(b["qty"]),
                status=b["status"],
                reason="order state taken from the broker",
                metadata={"broker_filled_qty": b.get("filled_qty")},
            )
            report.orders_settled += 1
            found.append(b)
        return found

    async def _cancel(self, order: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
        with contextlib.suppress(OrderRejected):  # filled or cancelled meanwhile: read back
            await self.rest.cancel_order(order["id"])
        deadline = time.monotonic() + timeout_s
        while True:
            o = await self.rest.get_order(order["id"])
            if o["status"] in BROKER_TERMINAL or time.monotonic() > deadline:
                return o
            await asyncio.sleep(0.1)

    async def _positions(self, report: Report, attempts: int) -> None:
        for attempt in range(attempts):
            local = {s: Decimal(q) for s, q in self._sql("SELECT symbol, qty FROM positions")}
            broker = {p["symbol"]: Decimal(p["qty"]) for p in await self.rest.positions()}
            diffs = [
                (s, local.get(s, Decimal(0)), broker.get(s, Decimal(0)))
                for s in sorted(set(local) | set(broker))
                if local.get(s, Decimal(0)) != broker.get(s, Decimal(0))
            ]
            if not diffs or attempt == attempts - 1:
                break
            await asyncio.sleep(1.0)  # fills in flight during the session settle
        for s, lq, bq in diffs:
            report.breaks.append(
                Break(
                    "position",
                    f"{s}: local {lq} shares, broker {bq}",
                    symbol=s,
                    local=str(lq),
                    broker=str(bq),
                )
            )

    async def _unknown_orders(self, report: Report) -> None:
        for b in await self.rest.list_orders("open"):
            coid = b.get("client_order_id", "")
            if not self._sql("SELECT 1 FROM orders WHERE client_order_id = %s", (coid,)):
                report.breaks.append(
                    Break(
                        "order_unknown",
                        f"open broker order {b['id']} ({coid}) has no local row",
                        symbol=b.get("symbol"),
                        client_order_id=coid,
                        broker=b.get("status"),
                    )
                )

    async def run(
        self,
        session_id: str,
        *,
        at_start: bool,
        apply_fills: Callable[[list[dict[str, Any]]], Awaitable[None]] | None = None,
    ) -> Report:
        """Reconcile once (see the module docstring).

        Parameters
        ----------
        session_id : str
            The running session (its own open orders are left to execution in-session).
        at_start : bool
            Before trading: earlier sessions' open orders are cancelled first.
        apply_fills : callable, optional
            In-session: hands recovered fills (trade-update events) to execution, which
            audits them and moves the engine's book. At start (None) they are audited
            here and reach the book through ``fills``.

        Raises
        ------
        TemporaryError
            The broker is unreachable.
        psycopg.OperationalError
            Postgres is unreachable.
        """
        report = Report(time.time_ns())
        found = await self._settle(at_start, session_id, report)
        local_filled = dict(
            self._sql(
                "SELECT client_order_id, filled_qty FROM orders WHERE client_order_id = ANY(%s)",
                ([b["client_order_id"] for b in found],),
            )
        )
        behind = [
            b
            for b in found
            if Decimal(b.get("filled_qty") or 0) > local_filled.get(b["client_order_id"], 0)
        ]
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=3) as conn:
            book = audited_fills(conn, [b["id"] for b in behind])
        fills = await missing_fills(self.rest, behind, book)
        if fills and apply_fills is not None:
            await apply_fills(fills)
        else:
            for f in fills:
                if book.on_stream(f) is None:
                    continue  # the activities listed this execution twice
                o = f["order"]
                self.audit.emit(
                    f["event"],
                    ts=ts_ns(f["timestamp"]) if f.get("timestamp") else None,
                    client_order_id=o["client_order_id"],
                    broker_order_id=o["id"],
                    execution_id=f["execution_id"],
                    symbol=o["symbol"],
                    side=o["side"],
                    qty=Decimal(f["qty"]),
                    price=Decimal(f["price"]),
                    order_type=o.get("type"),
                    time_in_force=o.get("time_in_force"),
                    status=o["status"],
                    reason="recovered by reconciliation",
                    metadata={"cum_qty": str(o["filled_qty"])},
                )
        report.fills_applied = len(fills)
        await self.drain()
        await self._unknown_orders(report)
        await self._positions(report, attempts=1 if at_start else 3)
        for b in report.breaks:
            self.audit.emit(
                "reconciliation_break",
                client_order_id=b.client_order_id,
                symbol=b.symbol,
                status=b.kind,
                reason=b.detail,
                metadata={"local": b.local, "broker": b.broker},
            )
        report.accepted = bool(report.breaks) and all(b.key in self.accepted for b in report.breaks)
        self.audit.emit(
            "reconciled",
            status="ok" if not report.breaks else "accepted" if report.accepted else "breaks",
            metadata={
                "breaks": len(report.breaks),
                "fills_applied": report.fills_applied,
                "orders_settled": report.orders_settled,
                "at_start": at_start,
            },
        )
        self.audit.flush()
        self.last = report
        return report

    def accept(self, by: str) -> None:
        """The operator accepts the last report's breaks (audited); they no longer make
        a later report fail."""
        assert self.last is not None
        self.last.accepted = True
        self.accepted.update(b.key for b in self.last.breaks)
        self.audit.emit(
            "reconciled",
            status="accepted",
            reason=f"{len(self.last.breaks)} break(s) accepted by the operator",
            metadata={"by": by, "breaks": [asdict(b) for b in self.last.breaks]},
        )
        self.audit.flush()

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until the writer has stored (and projected) every event emitted so far.

        Raises
        ------
        TemporaryError
            Not acknowledged within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        self.audit.flush()
        while self.audit.unacked:
            if time.monotonic() > deadline:
                raise TemporaryError(f"audit writer did not store {self.audit.unacked} events")
            self.audit.service()
            await asyncio.sleep(0.02)
