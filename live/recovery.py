"""What a restarted daemon restores from Postgres before it trades: positions (FIFO
lots and realized P&L rebuilt from ``fills``), the day's P&L baseline, the kill switch,
the circuit breaker and the open orders of earlier sessions.

Positions are rebuilt by applying every stored fill, in time order, to a fresh
:class:`~live.ledger.Ledger` (the same FIFO code the engine runs), so the restored book
equals the book the engine had, to the cent, whatever it was killed by. The day's P&L
baseline and peak are the ones the engine last reported (``risk_state`` key ``day_pnl``,
with the XNYS session they belong to): a restart in the same session keeps them, the
first bar at or after a later session's open resets them. The circuit breaker is the
engine's last reported state (``risk_state`` key ``circuit_breaker``, stored by the
daemon at every transition; :meth:`live.risk.breaker.CircuitBreaker.restore`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg

from live.ledger import Ledger

KILL_KEY = "kill_switch"
DAY_KEY = "day_pnl"
BREAKER_KEY = "circuit_breaker"
TERMINAL = ("filled", "canceled", "expired", "rejected", "replaced", "not_sent")


def ledger_from_fills(rows: list[tuple[Any, ...]]) -> Ledger:
    """Apply fills ``(execution_id, symbol, side, qty, price)`` in the given order.

    Parameters
    ----------
    rows : list of tuple
        ``qty`` shares (> 0, Decimal), ``price`` USD/share (Decimal), ``side`` buy|sell.

    Returns
    -------
    Ledger
        FIFO lots and realized P&L per symbol; marks are the last fill prices.
    """
    ledger = Ledger()
    for execution_id, symbol, side, qty, price in rows:
        signed = Decimal(qty) if side == "buy" else -Decimal(qty)
        ledger.apply_fill(execution_id, symbol, signed, Decimal(price))
        ledger.mark(symbol, Decimal(price))
    return ledger


@dataclass
class RestoredState:
    """State read back from Postgres at start.

    Attributes
    ----------
    ledger : Ledger
        Positions rebuilt from every stored fill.
    halted : bool
        The persisted kill switch.
    kill : dict
        The persisted kill-switch record (reason, by, session_id), or empty.
    day : dict
        ``{"session": "YYYY-MM-DD", "open_ns": int, "day_start_pnl": str, "day_peak":
        float}`` last reported by the engine (the session's date and open, ns since the
        epoch UTC; the baseline and peak P&L in USD), or empty.
    breaker : dict
        The circuit breaker's last reported state
        (:meth:`live.risk.breaker.CircuitBreaker.describe`), or empty.
    open_orders : list of dict
        ``orders`` rows not in a terminal state (earlier sessions' orders to settle).
    """

    ledger: Ledger
    halted: bool = False
    kill: dict[str, Any] = field(default_factory=dict)
    day: dict[str, Any] = field(default_factory=dict)
    breaker: dict[str, Any] = field(default_factory=dict)
    open_orders: list[dict[str, Any]] = field(default_factory=list)

    def engine_state(self) -> dict[str, Any]:
        """The picklable part the engine starts from: lots (as strings), realized P&L
        and marks per symbol, the executions already applied, the day baseline and the
        circuit breaker."""
        return {
            "positions": {
                s: {
                    "lots": [[str(q), str(p)] for q, p in pos.lots],
                    "realized_pnl": str(pos.realized_pnl),
                    "last_price": None if pos.last_price is None else str(pos.last_price),
                }
                for s, pos in self.ledger.positions.items()
            },
            "day": self.day,
            "breaker": self.breaker,
        }


def load_fills(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """Every stored fill as ``(execution_id, symbol, side, qty, price)`` in time order."""
    return conn.execute(
        "SELECT execution_id, symbol, side, qty, price FROM fills"
        " ORDER BY ts, audit_source, audit_seq"
    ).fetchall()


def restore(dsn: str) -> RestoredState:
    """Read the restorable state from Postgres.

    Raises
    ------
    psycopg.OperationalError
        If Postgres is unreachable (the daemon does not start without its state).
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        ledger = ledger_from_fills(load_fills(conn))
        risk: dict[str, Any] = dict(conn.execute("SELECT key, value FROM risk_state").fetchall())
        cur = conn.execute(
            "SELECT client_order_id, session_id, broker_order_id, symbol, side, qty, status,"
            " filled_qty FROM orders WHERE status <> ALL(%s) ORDER BY created_at",
            (list(TERMINAL),),
        )
        cols = [d.name for d in cur.description or ()]
        open_orders = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    kill = risk.get(KILL_KEY) or {}
    return RestoredState(
        ledger=ledger,
        halted=bool(kill.get("engaged")),
        kill=kill,
        day=risk.get(DAY_KEY) or {},
        breaker=risk.get(BREAKER_KEY) or {},
        open_orders=open_orders,
    )


def persist(dsn: str, key: str, value: dict[str, Any]) -> None:
    """Upsert one ``risk_state`` entry (JSON ``value``).

    Raises
    ------
    psycopg.OperationalError
        Postgres unreachable (within 5 s).
    """
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute(
            "INSERT INTO risk_state (key, value) VALUES (%s, %s) ON CONFLICT (key) DO "
            "UPDATE SET value = EXCLUDED.value, updated_at = now()",
            (key, json.dumps(value)),
        )


def ledger_from_audit(dsn: str) -> Ledger:
    """Positions and realized P&L rebuilt from ``order_audit_trail`` alone (every
    ``fill``/``partial_fill`` event, each ``execution_id`` once, in time order)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT execution_id, symbol, side, qty, price FROM ("
            " SELECT DISTINCT ON (execution_id) execution_id, symbol, side, qty, price, ts,"
            " source, source_seq FROM order_audit_trail"
            " WHERE event_type IN ('fill', 'partial_fill') ORDER BY execution_id, id) f"
            " ORDER BY ts, source, source_seq"
        ).fetchall()
    return ledger_from_fills(rows)


def compare_with_broker(
    ledger: Ledger, broker_positions: list[dict[str, Any]]
) -> list[dict[str, str | bool]]:
    """One row per symbol on either side: audit qty, broker qty, realized P&L (audit),
    and whether the quantities match."""
    broker = {p["symbol"]: Decimal(p["qty"]) for p in broker_positions}
    out: list[dict[str, str | bool]] = []
    for s in sorted(set(ledger.positions) | set(broker)):
        pos = ledger.positions.get(s)
        qty = pos.qty if pos else Decimal(0)
        bq = broker.get(s, Decimal(0))
        out.append(
            {
                "symbol": s,
                "audit_qty": str(qty),
                "broker_qty": str(bq),
                "realized_pnl": str(pos.realized_pnl if pos else Decimal(0)),
                "match": qty == bq,
            }
        )
    return out
