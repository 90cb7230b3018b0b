"""The order audit trail: producers emit events over ZeroMQ, one writer process stores
them in Postgres ``order_audit_trail`` in batches, off the hot path.

Producers (:class:`AuditEmitter`) number their events (``source``, ``source_seq``); the
writer stages each batch with ``COPY`` into a temporary table and inserts it with
``ON CONFLICT DO NOTHING``, so a batch replayed after a failure is never written twice.
While Postgres is unreachable batches are appended to an fsynced spool file
(``.var/spool/audit-<session>.jsonl``) and replayed, in order, when it returns.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import zmq

from live.bus import pack, socket, unpack
from live.context import ComponentContext
from live.logs import setup_logging

COLUMNS = (
    "ts",
    "session_id",
    "source",
    "source_seq",
    "event_type",
    "correlation_id",
    "client_order_id",
    "broker_order_id",
    "execution_id",
    "symbol",
    "side",
    "qty",
    "price",
    "order_type",
    "time_in_force",
    "status",
    "reason",
    "metadata",
)


class AuditEmitter:
    """Producer side: build numbered audit events and push them to the writer.

    Parameters
    ----------
    sock : zmq.Socket
        A PUSH socket connected to the ``audit`` endpoint.
    session_id, source : str
        Identify this producer; ``source_seq`` counts from 1 per producer and session.
    """

    def __init__(self, sock: zmq.Socket[Any], session_id: str, source: str) -> None:
        self.sock = sock
        self.session_id = session_id
        self.source = source
        self.seq = 0

    def emit(self, event_type: str, **fields: Any) -> None:
        """Send one event; ``fields`` are columns of :data:`COLUMNS` (``metadata`` a dict).

        Decimal quantities and prices are sent as strings and stored as NUMERIC.
        """
        self.seq += 1
        fields.setdefault("ts", time.time_ns())
        event = {
            k: (str(v) if k in ("qty", "price") and v is not None else v) for k, v in fields.items()
        }
        event.update(
            session_id=self.session_id,
            source=self.source,
            source_seq=self.seq,
            event_type=event_type,
        )
        self.sock.send(pack(event))


def _row(ev: dict[str, Any]) -> tuple[Any, ...]:
    out = []
    for c in COLUMNS:
        v = ev.get(c)
        if c == "ts":
            v = datetime.fromtimestamp(int(v or 0) / 1e9, tz=UTC)
        elif c == "metadata" and v is not None:
            v = json.dumps(v)
        out.append(v)
    return tuple(out)


class AuditStore:
    """Writes batches of events to Postgres, spooling to disk when it is unreachable."""

    def __init__(self, dsn: str, spool: Path) -> None:
        self.dsn = dsn
        self.spool = spool
        self.conn: psycopg.Connection[Any] | None = None
        self.written = 0
        self.spooled = 0

    def _connect(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.dsn, connect_timeout=3)
            self.conn.execute(
                "CREATE TEMP TABLE audit_in (LIKE order_audit_trail INCLUDING DEFAULTS)"
                " ON COMMIT DELETE ROWS"
            )
            self.conn.commit()
        return self.conn

    def _insert(self, events: Iterable[dict[str, Any]]) -> int:
        conn = self._connect()
        cols = ", ".join(COLUMNS)
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(f"COPY audit_in ({cols}) FROM STDIN") as copy:
                for ev in events:
                    copy.write_row(_row(ev))
            cur.execute(
                f"INSERT INTO order_audit_trail ({cols}) SELECT {cols} FROM audit_in"
                " ORDER BY source, source_seq ON CONFLICT DO NOTHING"
            )
            return cur.rowcount

    def write(self, batch: list[dict[str, Any]]) -> None:
        """Store ``batch`` (after any spooled events), or append it to the spool."""
        try:
            if self.spool.exists():
                self._replay_spool()
            if batch:
                self.written += self._insert(batch)
        except psycopg.Error:
            self.close()
            with open(self.spool, "a") as f:
                for ev in batch:
                    f.write(json.dumps(ev) + "\n")
                f.flush()
                os.fsync(f.fileno())
            self.spooled += len(batch)

    def close(self) -> None:
        """Close the database connection (reopened by the next write)."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _replay_spool(self) -> None:
        lines = self.spool.read_text().splitlines()
        self.written += self._insert(json.loads(line) for line in lines if line)
        self.spool.unlink()


def run_writer(ctx: ComponentContext) -> None:
    """Process entry point of the audit writer: drain the ``audit`` socket into Postgres
    in batches (up to 5,000 events or 50 ms) until SIGTERM, then drain what is queued."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    log = setup_logging("audit", ctx.var_dir)
    stopping = False

    def _stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    zctx = zmq.Context()
    pull = socket(zctx, zmq.PULL, ctx.bus.addr("audit"), bind=True)
    status = socket(zctx, zmq.PUSH, ctx.bus.addr("status"))
    spool_dir = ctx.var_dir / "spool"
    spool_dir.mkdir(parents=True, exist_ok=True)
    store = AuditStore(ctx.dsn, spool_dir / f"audit-{ctx.session_id}.jsonl")
    poller = zmq.Poller()
    poller.register(pull, zmq.POLLIN)
    idle_since = time.monotonic()
    last_status = 0.0
    while True:
        batch: list[dict[str, Any]] = []
        deadline = time.monotonic() + 0.05
        while len(batch) < 5000 and poller.poll(max(0, int((deadline - time.monotonic()) * 1000))):
            try:
                batch.append(unpack(pull.recv()))
            except ValueError as e:
                log.error("malformed_audit_event", error=str(e))
        if batch or store.spool.exists():
            store.write(batch)
            idle_since = time.monotonic()
        now = time.monotonic()
        if now - last_status > 0.25 or stopping:
            status.send(
                pack(
                    {
                        "component": "audit",
                        "written": store.written,
                        "spooled": store.spooled,
                        "spool_pending": store.spool.exists(),
                    }
                )
            )
            last_status = now
        # after SIGTERM keep draining until 0.5 s without events and nothing spooled
        if stopping and now - idle_since > 0.5 and not store.spool.exists():
            break
    store.close()
    log.info("stopped", written=store.written, spooled=store.spooled)
    pull.close()
    status.close()
    zctx.term()
