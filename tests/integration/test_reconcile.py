"""Start-up reconciliation against the real simulator and Postgres: an order stored but
never sent, an order sent whose fills were never audited (execution killed), a foreign
order, and the audit-trail replay."""

from __future__ import annotations

import asyncio
import time
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from live.alpaca import AlpacaREST, trade_updates
from live.audit import AuditEmitter
from live.context import ComponentContext
from live.orderstore import OrderStore
from live.reconcile import Reconciler
from live.recovery import compare_with_broker, ledger_from_audit, restore
from live.sim import SimConfig, SimServer

pytestmark = pytest.mark.integration


def _order(coid: str, qty: str = "10") -> dict[str, Any]:
    return {
        "symbol": "SPY",
        "qty": qty,
        "side": "buy",
        "type": "market",
        "time_in_force": "day",
        "client_order_id": coid,
    }


async def _filled(rest: AlpacaREST, coid: str) -> dict[str, Any]:
    for _ in range(500):
        o = await rest.get_order_by_client_id(coid)
        if o is not None and o["status"] == "filled":
            return o
        await asyncio.sleep(0.02)
    raise AssertionError(f"{coid} never filled")


async def _scenario(ctx: ComponentContext) -> dict[str, Any]:
    sim = SimServer(
        SimConfig(start=date(2011, 1, 3), end=date(2011, 1, 3), speed=600.0, autostart=True)
    )
    await sim.start()
    store = OrderStore(ctx.dsn, "s1")
    out: dict[str, Any] = {}
    try:
        async with AlpacaREST(sim.url, "PKTEST", "SKTEST") as rest:
            common = {"correlation_id": "s1:1", "symbol": "SPY", "side": "buy"}
            kw = {"order_type": "market", "time_in_force": "day", **common}
            # o1: stored, POSTed, filled; execution died before auditing anything
            await store.record(client_order_id="o1", qty=Decimal(10), **kw)
            await rest.submit_order_idempotent(_order("o1"))
            # o2: stored, then the process died before the POST
            await store.record(client_order_id="o2", qty=Decimal(5), **kw)
            o1 = await _filled(rest, "o1")
            rec = Reconciler(rest, ctx.dsn, AuditEmitter(ctx.bus, "s2", "daemon"))
            out["first"] = await rec.run("s2", at_start=True)
            out["again"] = await rec.run("s2", at_start=True)
            # an order placed on the account by something else
            await rest.submit_order_idempotent(_order("foreign-1", "3"))
            await _filled(rest, "foreign-1")
            out["foreign"] = await rec.run("s2", at_start=True)
            await rec.drain()
            rec.audit.close()
            out["broker_positions"] = await rest.positions()
            out["activities"] = await rest.fill_activities()
            out["o1"] = o1
    finally:
        await store.close()
        await sim.stop()
    return out


def test_reconcile_at_start_settles_orders_applies_missed_fills_once_and_audits_breaks(
    audit_writer: ComponentContext,
) -> None:
    out = _scenario_sync(audit_writer)
    first, again, foreign = out["first"], out["again"], out["foreign"]
    assert (first.breaks, first.fills_applied, first.orders_settled) == ([], 1, 2)
    assert (again.breaks, again.fills_applied, again.orders_settled) == ([], 0, 0)
    assert [(b.kind, b.symbol, b.local, b.broker) for b in foreign.breaks] == [
        ("position", "SPY", "10", "13")
    ]
    assert not foreign.ok
    assert foreign.to_status()["reconciled"] is False
    dsn = audit_writer.dsn
    with psycopg.connect(dsn) as c:
        orders = c.execute(
            "SELECT client_order_id, status, filled_qty, broker_order_id FROM orders ORDER BY 1"
        ).fetchall()
        fills = c.execute("SELECT execution_id, qty, price FROM fills").fetchall()
        events = c.execute(
            "SELECT event_type, status FROM order_audit_trail WHERE event_type IN"
            " ('reconciliation_break', 'reconciled') AND client_order_id IS NULL ORDER BY id"
        ).fetchall()
    o1_acts = [a for a in out["activities"] if a["order_id"] == out["o1"]["id"]]
    assert [(c, s, str(q), b) for c, s, q, b in orders] == [
        ("o1", "filled", "10", out["o1"]["id"]),
        ("o2", "not_sent", "0", None),
    ]
    assert [(e, str(q), str(p)) for e, q, p in fills] == [
        (a["id"], a["qty"], a["price"]) for a in o1_acts
    ]
    assert events == [
        ("reconciled", "ok"),
        ("reconciled", "ok"),
        ("reconciliation_break", "position"),
        ("reconciled", "breaks"),
    ]
    # the audit trail alone rebuilds the book the fills table holds
    book = ledger_from_audit(dsn)
    assert book.positions["SPY"].qty == restore(dsn).ledger.positions["SPY"].qty == 10
    rows = compare_with_broker(book, out["broker_positions"])
    assert [(r["symbol"], r["audit_qty"], r["broker_qty"], r["match"]) for r in rows] == [
        ("SPY", "10", "13", False)
    ]


def _scenario_sync(ctx: ComponentContext) -> dict[str, Any]:
    return asyncio.run(_scenario(ctx))


async def _partial_scenario(ctx: ComponentContext) -> dict[str, Any]:
    """An order bigger than a bar's volume fills in several executions; execution audits
    the first one from the stream and dies; the rest happen while it is down."""
    sim = SimServer(
        SimConfig(
            start=date(2011, 1, 3),
            end=date(2011, 1, 3),
            speed=600.0,
            autostart=True,
            initial_cash=Decimal("1000000000"),
        )
    )
    await sim.start()
    store = OrderStore(ctx.dsn, "s1")
    audit = AuditEmitter(ctx.bus, "s1", "execution")
    qty = "4000000"  # every SPY minute of the day traded less than 3.1M shares
    try:
        async with AlpacaREST(sim.url, "PKTEST", "SKTEST") as rest:
            connected = asyncio.Event()
            stream = trade_updates(sim.url.replace("http", "ws") + "/stream", "PK", "SK", connected)
            first = asyncio.ensure_future(anext(stream))
            await asyncio.wait_for(connected.wait(), 30)
            kw = {"order_type": "market", "time_in_force": "day", "correlation_id": "s1:1"}
            await store.record(
                client_order_id="big", qty=Decimal(qty), symbol="SPY", side="buy", **kw
            )
            await rest.submit_order_idempotent(_order("big", qty))
            upd = await asyncio.wait_for(first, 30)
            while upd["event"] != "partial_fill":
                upd = await asyncio.wait_for(anext(stream), 30)
            await stream.aclose()  # execution dies after auditing this execution
            o = upd["order"]
            audit.emit(
                "partial_fill",
                client_order_id="big",
                broker_order_id=o["id"],
                execution_id=upd["execution_id"],
                symbol="SPY",
                side="buy",
                qty=Decimal(upd["qty"]),
                price=Decimal(upd["price"]),
                status=o["status"],
                metadata={"cum_qty": o["filled_qty"]},
            )
            deadline = time.monotonic() + 60  # stored before the restart's reconciliation
            while audit.unacked and time.monotonic() < deadline:
                audit.service()
                await asyncio.sleep(0.02)
            assert audit.unacked == 0, "the writer never stored the stream's fill"
            audit.close()
            await _filled(rest, "big")
            rec = Reconciler(rest, ctx.dsn, AuditEmitter(ctx.bus, "s2", "daemon"))
            out: dict[str, Any] = {"report": await rec.run("s2", at_start=True)}
            await rec.drain()
            rec.audit.close()
            out["activities"] = await rest.fill_activities()
            out["broker_positions"] = await rest.positions()
            out["stream_fill"] = upd
    finally:
        await store.close()
        await sim.stop()
    return out


def test_reconcile_at_start_when_an_order_was_partly_audited_then_only_the_rest_is_applied(
    audit_writer: ComponentContext,
) -> None:
    """The broker's FILL activities carry their own ids, not the stream's execution_id:
    the execution audited from the stream must be recognised by the part of the order it
    covers, or the position would count it twice."""
    out = asyncio.run(_partial_scenario(audit_writer))
    acts = out["activities"]
    assert len(acts) >= 2
    assert out["stream_fill"]["execution_id"] not in {a["id"] for a in acts}
    report = out["report"]
    assert report.breaks == []
    assert report.fills_applied == len(acts) - 1
    with psycopg.connect(audit_writer.dsn) as c:
        fills = c.execute("SELECT qty FROM fills").fetchall()
        (position,) = c.execute("SELECT qty FROM positions WHERE symbol = 'SPY'").fetchone()
    assert len(fills) == len(acts)
    assert sum(q for (q,) in fills) == position == Decimal(4_000_000)
    assert [p["qty"] for p in out["broker_positions"]] == ["4000000"]
