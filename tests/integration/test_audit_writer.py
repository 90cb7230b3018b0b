"""The audit store: COPY batches, idempotent replay, spooling while Postgres is away."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg

from live.audit import AuditStore
from live.db import migrate


def _events(n: int, start: int = 1) -> list[dict]:
    return [
        {
            "ts": time.time_ns(),
            "session_id": "s1",
            "source": "engine",
            "source_seq": i,
            "event_type": "intent",
            "client_order_id": f"c{i}",
            "symbol": "SPY",
            "side": "buy",
            "qty": "100",
            "price": "127.01",
            "metadata": {"i": i},
        }
        for i in range(start, start + n)
    ]


def _count(dsn: str) -> int:
    with psycopg.connect(dsn) as c:
        row = c.execute("SELECT count(*) FROM order_audit_trail").fetchone()
    assert row is not None
    return int(row[0])


def test_write_when_batch_replayed_then_stored_once(database: str, tmp_path: Path) -> None:
    migrate(database)
    store = AuditStore(database, tmp_path / "spool.jsonl")
    batch = _events(500)
    store.write(batch)
    store.write(batch[100:200])  # a replay after a lost acknowledgement
    store.close()
    assert store.written == 500
    assert _count(database) == 500
    with psycopg.connect(database) as c:
        row = c.execute(
            "SELECT qty, price, metadata FROM order_audit_trail WHERE source_seq = 7"
        ).fetchone()
    assert row is not None
    assert (str(row[0]), str(row[1]), row[2]) == ("100", "127.01", {"i": 7})


def test_write_when_postgres_unreachable_then_spooled_and_replayed_in_order(
    database: str, tmp_path: Path
) -> None:
    migrate(database)
    spool = tmp_path / "spool.jsonl"
    store = AuditStore("host=127.0.0.1 port=1 user=postgres dbname=nowhere", spool)
    store.write(_events(30))
    assert (store.written, store.spooled) == (0, 30)
    assert len(spool.read_text().splitlines()) == 30
    store.dsn = database  # Postgres is back
    store.write(_events(5, start=31))
    store.close()
    assert not spool.exists()
    assert store.written == 35
    with psycopg.connect(database) as c:
        seqs = [r[0] for r in c.execute("SELECT source_seq FROM order_audit_trail ORDER BY id")]
    assert seqs == list(range(1, 36))
