"""The audit writer: COPY batches, idempotent replay, spooling while Postgres is away,
acknowledgements and re-sending after a writer killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgpack
import psycopg
import pytest
import zmq

from live.audit import AckBook, AuditEmitter, AuditStore, staging_row, wire_row
from live.bus import Bus, socket
from live.db import migrate
from tests.integration.conftest import start_writer, writer_context


def _batch(n: int, start: int = 1, source: str = "engine") -> tuple[Any, list[list[Any]]]:
    rows = [
        wire_row(
            time.time_ns(),
            "intent",
            {
                "client_order_id": f"c{i}",
                "symbol": "SPY",
                "side": "buy",
                "qty": Decimal(100),
                "price": Decimal("127.01"),
                "metadata": {"i": i},
            },
        )
        for i in range(start, start + n)
    ]
    return staging_row("s1", source, start, rows), rows


def _seqs(dsn: str, source: str = "engine") -> list[int]:
    with psycopg.connect(dsn) as c:
        return [
            r[0]
            for r in c.execute(
                "SELECT source_seq FROM order_audit_trail WHERE source = %s ORDER BY id", (source,)
            )
        ]


def test_write_when_batch_replayed_then_stored_once(database: str, tmp_path: Path) -> None:
    migrate(database)
    store = AuditStore(database, tmp_path / "audit-s1.jsonl")
    batch, rows = _batch(500)
    store.write([batch])
    store.write([_batch(100, start=101)[0]])  # a replay after a lost acknowledgement
    store.close()
    assert store.written == 500
    assert _seqs(database) == list(range(1, 501))
    with psycopg.connect(database) as c:
        row = c.execute(
            "SELECT qty, price, metadata, ts FROM order_audit_trail WHERE source_seq = 7"
        ).fetchone()
    assert row is not None
    assert (str(row[0]), str(row[1]), row[2]) == ("100", "127.01", {"i": 7})
    # microsecond UTC timestamps, exactly the producer's (ns truncated to us)
    assert int(row[3].timestamp() * 1_000_000) == rows[6][0] // 1000


def test_write_when_batch_twice_in_one_write_then_stored_once(
    database: str, tmp_path: Path
) -> None:
    migrate(database)
    store = AuditStore(database, tmp_path / "audit-s1.jsonl")
    batch, _ = _batch(300)
    # a re-sent batch that reaches the writer in the same window as the original
    store.write([batch, _batch(50, start=301)[0], batch])
    store.close()
    assert (store.written, store.rejected) == (350, 0)
    assert not store.rejects.exists()
    assert _seqs(database) == list(range(1, 351))


def test_write_when_batch_refused_for_content_then_kept_aside_and_others_stored(
    database: str, tmp_path: Path
) -> None:
    migrate(database)
    store = AuditStore(database, tmp_path / "audit-s1.jsonl")
    bad = staging_row("s1", "daemon", 1, [wire_row(time.time_ns(), "no_such_event", {})])
    store.write([_batch(3)[0], bad, _batch(2, start=4)[0]])
    store.close()
    assert (store.written, store.rejected) == (5, 1)
    assert _seqs(database) == [1, 2, 3, 4, 5]
    kept = [json.loads(line) for line in store.rejects.read_text().splitlines()]
    assert [k[:4] for k in kept] == [["s1", "daemon", 1, 1]]
    assert "no_such_event" in kept[0][4]
    assert "audit_event_types" in kept[0][5]  # the database's reason


def test_write_when_postgres_unreachable_then_spooled_and_replayed_in_order(
    database: str, tmp_path: Path
) -> None:
    migrate(database)
    spool = tmp_path / "audit-s1.jsonl"
    store = AuditStore("host=127.0.0.1 port=1 user=postgres dbname=nowhere", spool)
    store.write([_batch(30)[0], _batch(10, start=31)[0]])
    assert (store.written, store.spooled) == (0, 40)
    assert len(spool.read_text().splitlines()) == 2  # one line per batch
    store.dsn = database  # Postgres is back
    store.write([_batch(5, start=41)[0]])
    store.close()
    assert not spool.exists()
    assert store.written == 45
    assert _seqs(database) == list(range(1, 46))


def _drain(emitter: AuditEmitter, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while emitter.unacked and time.monotonic() < deadline:
        emitter.service()
        time.sleep(0.02)
    assert emitter.unacked == 0, f"{emitter.unacked} events never acknowledged"


def test_writer_when_killed_mid_stream_then_nothing_lost_or_doubled(
    database: str, tmp_path: Path
) -> None:
    migrate(database)
    ctx = writer_context(database, tmp_path)
    writer = start_writer(ctx)
    emitter = AuditEmitter(ctx.bus, "s1", "engine")
    n = 0
    for round_ in range(3):
        for _ in range(2000):
            n += 1
            emitter.emit("intent", client_order_id=f"c{n}", qty=Decimal(1), symbol="SPY")
            if n % 50 == 0:
                emitter.service()
        # SIGKILL while batches are in flight, then a new writer on the same endpoints
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
        writer = start_writer(ctx)
        assert round_ < 3
    _drain(emitter)
    emitter.close()
    writer.terminate()
    writer.join(20)
    assert _seqs(database) == list(range(1, n + 1))


def test_writer_when_successor_gets_batches_above_a_lost_one_then_it_waits_for_the_resend(
    database: str, tmp_path: Path
) -> None:
    """The first writer dies holding batch 1-2 (and whatever else was in flight to it);
    its successor receives the later batches first. Its acknowledgement must not cover
    the hole (the producer would drop the lost batches): it stays below it until the
    producer, seeing a new writer, sends them again."""
    migrate(database)
    ctx = writer_context(database, tmp_path)
    zctx: zmq.Context[Any] = zmq.Context()
    writer = None
    try:
        dead = socket(zctx, zmq.PULL, ctx.bus.addr("audit"), bind=True)  # takes batch 1-2 and dies
        emitter = AuditEmitter(ctx.bus, "s1", "execution", zctx)
        for i in range(2):
            emitter.emit("intent", client_order_id=f"c{i + 1}", symbol="SPY")
        emitter.flush()
        assert dead.poll(10_000), "the first writer never got batch 1-2"
        assert msgpack.unpackb(dead.recv())[2:4] == [1, 2]
        # once the producer has seen the first writer go, later batches queue for the next
        monitor = emitter.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        dead.close(linger=0)
        assert monitor.poll(10_000), "the producer never saw the first writer go"
        emitter.sock.disable_monitor()
        monitor.close(linger=0)
        for i in range(2, 36):
            emitter.emit("intent", client_order_id=f"c{i + 1}", symbol="SPY")
            emitter.flush()  # queued for whoever binds next
        writer = start_writer(ctx)
        deadline = time.monotonic() + 120
        while 36 not in _seqs(database, "execution") and time.monotonic() < deadline:
            time.sleep(0.05)
        stored = _seqs(database, "execution")
        assert stored == list(range(3, 37))  # the hole: 1-2 died with the first writer
        _drain(emitter)  # sees the new writer: re-sends what it has not acknowledged
    finally:
        if writer is not None:
            writer.terminate()
            writer.join(20)
        zctx.destroy(linger=0)
    assert sorted(_seqs(database, "execution")) == list(range(1, 37))


def test_ackbook_when_batches_out_of_order_then_mark_never_jumps_a_hole() -> None:
    book = AckBook()
    book.add("s/e", 0, 3, 36)
    assert book.marks["s/e"] == 0
    book.add("s/e", 0, 40, 41)
    assert book.marks["s/e"] == 0
    book.add("s/e", 0, 1, 2)
    assert book.marks["s/e"] == 36  # 1-36 stored, 37-39 still missing
    book.add("s/e", 36, 37, 39)
    assert book.marks["s/e"] == 41
    book.add("s/f", 10, 11, 12)  # a predecessor acknowledged 1-10
    assert book.marks["s/f"] == 12
    book.add("s/e", 0, 5, 6)  # a re-sent batch changes nothing
    assert book.marks["s/e"] == 41


def test_writer_when_an_earlier_session_left_a_spool_then_replayed_first(
    database: str, tmp_path: Path
) -> None:
    """A daemon killed while Postgres was away leaves its session's spool; the next
    session's writer stores it."""
    migrate(database)
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    nowhere = "host=127.0.0.1 port=1 user=postgres dbname=nowhere"
    old = AuditStore(nowhere, spool_dir / "audit-s0.jsonl")
    old.write([_batch(7)[0]])
    assert old.spooled == 7
    store = AuditStore(database, spool_dir / f"audit-{uuid.uuid4().hex[:8]}.jsonl")
    assert store.spools() == [old.spool]
    store.write([_batch(3, source="daemon")[0]])
    store.close()
    assert store.spools() == []
    assert _seqs(database) == list(range(1, 8))
    assert _seqs(database, "daemon") == [1, 2, 3]


def test_emitter_unacked_when_nothing_emitted_then_zero(tmp_path: Path) -> None:
    ipc = tmp_path / "ipc"
    ipc.mkdir()
    emitter = AuditEmitter(Bus(ipc), "s1", "engine")
    assert emitter.unacked == 0
    emitter.emit("intent")
    assert emitter.unacked == 0  # recorded, not yet sent
    emitter.flush()
    assert emitter.unacked == 1
    emitter.close(timeout_s=0)


@pytest.mark.parametrize(
    "bad",
    [
        b"\x01",
        b"\x96\xa1s\xa1e\x00\x01\xa2[]\x00",  # first_seq 0
        b"\x96\xa1s\xa1e\x01\x01\x90\x00",  # events not a string
        b"\x96\xa1s\xa1e\x01\x01\xa2[]\x01",  # acked at or above first_seq
        b"\x95\xa1s\xa1e\x01\x01\xa2[]",  # no acked mark
    ],
)
def test_decode_batch_when_malformed_then_value_error(bad: bytes) -> None:
    from live.audit import decode_batch

    with pytest.raises(ValueError, match="malformed audit batch"):
        decode_batch(bad)
