"""Orders, fills and positions projected from the audit trail; the orders row stored
before the POST; the application role cannot rewrite the audit trail."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from live.audit import AuditStore, staging_row, wire_row
from live.db import migrate
from live.orderstore import OrderStore
from trader.exceptions import TemporaryError


def _row(source: str, seq: int, event_type: str, **fields: Any) -> tuple[Any, ...]:
    return staging_row("s1", source, seq, [wire_row(time.time_ns(), event_type, fields)])


def _record(dsn: str, coid: str, side: str = "buy", qty: str = "100") -> None:
    store = OrderStore(dsn, "s1")

    async def go() -> None:
        await store.record(
            client_order_id=coid,
            correlation_id="s1:1",
            symbol="SPY",
            side=side,
            qty=Decimal(qty),
            order_type="market",
            time_in_force="day",
        )
        await store.close()

    asyncio.run(go())


def test_projection_when_fill_reported_twice_then_applied_once(
    database: str, tmp_path: Path
) -> None:
    migrate(database)
    _record(database, "o1")
    _record(database, "o2", side="sell", qty="30")
    store = AuditStore(database, tmp_path / "spool.jsonl")
    common = {"symbol": "SPY", "side": "buy", "client_order_id": "o1"}
    store.write(
        [
            _row("execution", 1, "submitted", **common, qty=Decimal(100), status="submitted"),
            _row(
                "execution",
                2,
                "partial_fill",
                **common,
                execution_id="e1",
                qty=Decimal(40),
                price=Decimal("127.5"),
                status="partially_filled",
            ),
            _row(
                "execution",
                3,
                "fill",
                **common,
                execution_id="e2",
                qty=Decimal(60),
                price=Decimal("127.25"),
                status="filled",
            ),
            # the POST response arrives after the stream's fill: status must stay filled
            _row("execution", 4, "accepted", **common, broker_order_id="b1", status="new"),
        ]
    )
    # the same execution found again by a reconciliation (another source): stored once
    store.write(
        [
            _row(
                "recovery",
                1,
                "fill",
                **common,
                execution_id="e2",
                qty=Decimal(60),
                price=Decimal("127.25"),
                status="filled",
            ),
            _row(
                "execution",
                5,
                "fill",
                symbol="SPY",
                side="sell",
                client_order_id="o2",
                execution_id="e3",
                qty=Decimal(30),
                price=Decimal("128"),
                status="filled",
            ),
        ]
    )
    store.write(
        [
            _row(
                "execution",
                5,
                "fill",
                symbol="SPY",
                side="sell",
                client_order_id="o2",
                execution_id="e3",
                qty=Decimal(30),
                price=Decimal("128"),
                status="filled",
            )
        ]
    )
    store.close()
    with psycopg.connect(database) as c:
        fills = c.execute("SELECT execution_id, qty FROM fills ORDER BY 1").fetchall()
        pos = c.execute("SELECT symbol, qty FROM positions").fetchall()
        orders = c.execute(
            "SELECT client_order_id, status, filled_qty, broker_order_id FROM orders ORDER BY 1"
        ).fetchall()
        audit_fills = c.execute(
            "SELECT count(*) FROM order_audit_trail WHERE event_type IN ('fill', 'partial_fill')"
        ).fetchone()
    assert [(e, str(q)) for e, q in fills] == [("e1", "40"), ("e2", "60"), ("e3", "30")]
    assert [(s, str(q)) for s, q in pos] == [("SPY", "70")]
    assert [(c, s, str(q), b) for c, s, q, b in orders] == [
        ("o1", "filled", "100", "b1"),
        ("o2", "filled", "30", None),
    ]
    assert audit_fills == (3,)


def test_projection_when_fill_reported_twice_in_one_write_then_applied_once(
    database: str, tmp_path: Path
) -> None:
    migrate(database)
    _record(database, "o1")
    store = AuditStore(database, tmp_path / "spool.jsonl")
    fill = {
        "symbol": "SPY",
        "side": "buy",
        "client_order_id": "o1",
        "execution_id": "e1",
        "qty": Decimal(100),
        "price": Decimal("127.5"),
        "status": "filled",
    }
    # the stream's fill and a reconciliation's report of it reach the writer together
    store.write([_row("execution", 1, "fill", **fill), _row("recovery", 1, "fill", **fill)])
    store.close()
    with psycopg.connect(database) as c:
        audit = c.execute(
            "SELECT source FROM order_audit_trail WHERE execution_id = 'e1'"
        ).fetchall()
        fills = c.execute("SELECT execution_id, qty FROM fills").fetchall()
        pos = c.execute("SELECT qty FROM positions WHERE symbol = 'SPY'").fetchone()
        order = c.execute("SELECT status, filled_qty FROM orders").fetchone()
    assert (store.written, store.rejected) == (1, 0)
    assert audit == [("execution",)]
    assert [(e, str(q)) for e, q in fills] == [("e1", "100")]
    assert pos is not None
    assert str(pos[0]) == "100"
    assert order is not None
    assert (order[0], str(order[1])) == ("filled", "100")


def test_orderstore_when_postgres_unreachable_then_temporary_error() -> None:
    with pytest.raises(TemporaryError, match="o9 not recorded"):
        _record("host=127.0.0.1 port=1 user=postgres dbname=nowhere connect_timeout=1", "o9")


def test_orders_row_when_recorded_then_pending_submit(database: str) -> None:
    migrate(database)
    _record(database, "o1")
    with psycopg.connect(database) as c:
        row = c.execute("SELECT status, qty, session_id FROM orders").fetchone()
    assert row is not None
    assert (row[0], str(row[1]), row[2]) == ("pending_submit", "100", "s1")


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE order_audit_trail SET reason = 'edited'",
        "DELETE FROM order_audit_trail",
        "TRUNCATE order_audit_trail",
    ],
)
def test_app_role_when_rewriting_audit_trail_then_permission_denied(
    database: str, statement: str
) -> None:
    migrate(database)
    with psycopg.connect(database, autocommit=True) as c:
        c.execute("SET ROLE trader_app")
        c.execute(  # the application role may append...
            "INSERT INTO order_audit_trail (ts, session_id, source, source_seq, event_type)"
            " VALUES (now(), 's', 'engine', 1, 'reconciliation_break')"
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            c.execute(statement)  # type: ignore[arg-type]
        c.execute("RESET ROLE")
        row = c.execute("SELECT count(*), max(reason) FROM order_audit_trail").fetchone()
    assert row == (1, None)
