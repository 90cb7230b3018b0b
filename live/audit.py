"""The order audit trail: producers emit events over ZeroMQ, one writer process stores
them in Postgres ``order_audit_trail`` in batches, off the hot path.

Producers (:class:`AuditEmitter`) number their events (``session_id``, ``source``,
``source_seq``). :meth:`AuditEmitter.emit` only appends to a list (the hot-path cost);
:meth:`AuditEmitter.flush`, called after the hot path, sends the events as one batch: a
msgpack array ``[session_id, source, first_seq, rows]`` whose rows follow
:data:`WIRE_FIELDS`. A batch stays in the producer's memory until the writer
acknowledges it (``audit_ack`` endpoint: the highest ``source_seq`` stored per
producer); batches not acknowledged within :data:`RESEND_AFTER_S` are sent again, so a
writer killed mid-batch loses nothing.

The writer stages each batch with a binary ``COPY`` into a temporary table and inserts
it with ``ON CONFLICT DO NOTHING`` (a re-sent event is never written twice), projecting
orders, fills and positions in the same transaction (:mod:`live.projection`). While
Postgres is unreachable, batches are appended to an fsynced spool file
(``.var/spool/audit-<session>.jsonl``) and replayed, in order, when it returns.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgpack
import psycopg
import zmq

from live.bus import Bus, pack, socket
from live.context import ComponentContext
from live.logs import setup_logging
from live.projection import PROJECT_SQL, STAGING_COLUMNS, STAGING_TYPES
from live.supervise import die_with_parent

#: Fields of one event on the wire, in order (``source_seq`` is implicit: the batch's
#: ``first_seq`` plus the row's index). ``ts`` is ns since the epoch UTC; ``qty`` and
#: ``price`` are decimal strings (stored as NUMERIC, never through a float); ``metadata``
#: is a JSON string.
WIRE_FIELDS = (
    "ts",
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
_FIELDS = WIRE_FIELDS[2:]
RESEND_AFTER_S = 2.0
_STAGING_DDL = ", ".join(f"{c} {t}" for c, t in zip(STAGING_COLUMNS, STAGING_TYPES, strict=True))
_COPY_SQL = f"COPY audit_in ({', '.join(STAGING_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
BATCH_ROWS = 20_000
BATCH_WAIT_S = 0.02


def wire_row(ts: int, event_type: str, fields: dict[str, Any]) -> tuple[Any, ...]:
    """One event as a wire row (:data:`WIRE_FIELDS`); ``fields`` as for ``emit``."""
    row: list[Any] = [ts, event_type]
    for k in _FIELDS:
        v = fields.get(k)
        if v is not None:
            if k in ("qty", "price"):
                v = str(v)
            elif k == "metadata":
                v = json.dumps(v, default=str)
        row.append(v)
    return tuple(row)


class AuditEmitter:
    """Producer side: number audit events, batch them and send them to the writer until
    it acknowledges them.

    Parameters
    ----------
    bus : Bus
        The session's endpoints (``audit`` PUSH, ``audit_ack`` SUB are connected here).
    session_id, source : str
        Identify this producer; ``source_seq`` counts from 1 per producer and session.
    zctx : zmq.Context, optional
        A synchronous context (default: the process-wide instance).
    """

    def __init__(
        self, bus: Bus, session_id: str, source: str, zctx: zmq.Context[Any] | None = None
    ) -> None:
        zctx = zctx or zmq.Context.instance()
        self.sock = socket(zctx, zmq.PUSH, bus.addr("audit"))
        self.ack = socket(zctx, zmq.SUB, bus.addr("audit_ack"), subscribe=b"")
        self.session_id = session_id
        self.source = source
        self.key = f"{session_id}/{source}"
        self.seq = 0
        self.acked = 0
        self._pending: list[tuple[int, str, dict[str, Any]]] = []
        self._unacked: deque[tuple[int, bytes]] = deque()  # (last_seq, payload)
        self._sent_at = 0.0

    def emit(self, event_type: str, ts: int | None = None, **fields: Any) -> None:
        """Record one event for the next :meth:`flush` (no I/O here).

        Parameters
        ----------
        event_type : str
            A row of ``audit_event_types``.
        ts : int, optional
            When it happened, ns since the epoch UTC (default: now).
        **fields
            Columns of :data:`WIRE_FIELDS`: Decimal ``qty``/``price`` (shares, USD),
            ``metadata`` a JSON-serialisable dict.
        """
        self.seq += 1
        self._pending.append((ts or time.time_ns(), event_type, fields))

    def flush(self) -> None:
        """Send the recorded events as one batch (no-op when there are none)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        first = self.seq - len(pending) + 1
        rows = [wire_row(ts, et, f) for ts, et, f in pending]
        payload = msgpack.packb([self.session_id, self.source, first, rows])
        if not self._unacked:
            self._sent_at = time.monotonic()
        self._unacked.append((self.seq, payload))
        self.sock.send(payload)

    def service(self) -> None:
        """Flush, read the writer's acknowledgements, and re-send what it has not stored
        within :data:`RESEND_AFTER_S` (a writer restarted after a crash)."""
        self.flush()
        while True:
            try:
                acks = msgpack.unpackb(self.ack.recv(zmq.NOBLOCK))
            except zmq.Again:
                break
            seq = acks.get(self.key, 0)
            if seq > self.acked:
                self.acked = seq
                self._sent_at = time.monotonic()
        while self._unacked and self._unacked[0][0] <= self.acked:
            self._unacked.popleft()
        if self._unacked and time.monotonic() - self._sent_at > RESEND_AFTER_S:
            for _, payload in self._unacked:
                self.sock.send(payload)
            self._sent_at = time.monotonic()

    @property
    def unacked(self) -> int:
        """Events sent but not yet acknowledged as stored (or spooled) by the writer."""
        return self.seq - len(self._pending) - self.acked

    def close(self, timeout_s: float = 5.0) -> None:
        """Flush and wait up to ``timeout_s`` for the writer to acknowledge everything."""
        deadline = time.monotonic() + timeout_s
        self.flush()
        while self._unacked and time.monotonic() < deadline:
            if self.ack.poll(100):
                self.service()
        self.sock.close()
        self.ack.close()


def decode_batch(payload: bytes) -> list[tuple[Any, ...]]:
    """Decode one wire batch into staging rows (:data:`~live.projection.STAGING_COLUMNS`).

    Raises
    ------
    ValueError
        If ``payload`` is not ``[session_id, source, first_seq, rows]`` with rows of
        ``len(WIRE_FIELDS)`` fields.
    """
    try:
        session_id, source, first, rows = msgpack.unpackb(payload)
        out = [(r[0], session_id, source, first + i, *r[1:]) for i, r in enumerate(rows)]
    except Exception as e:
        raise ValueError(f"malformed audit batch ({len(payload)} bytes): {e}") from e
    if any(len(r) != len(STAGING_COLUMNS) for r in out):
        raise ValueError(f"malformed audit batch: rows must have {len(WIRE_FIELDS)} fields")
    return out


class AuditStore:
    """Writes batches of staging rows to Postgres (projection included), spooling to disk
    when it is unreachable.

    Parameters
    ----------
    dsn : str
        libpq connection string.
    spool : Path
        JSON-lines spool file (created only while Postgres is unreachable).
    """

    def __init__(self, dsn: str, spool: Path) -> None:
        self.dsn = dsn
        self.spool = spool
        self.conn: psycopg.Connection[Any] | None = None
        self.written = 0
        self.spooled = 0

    def _connect(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.dsn, connect_timeout=3)
            self.conn.execute(f"CREATE TEMP TABLE audit_in ({_STAGING_DDL}) ON COMMIT DELETE ROWS")
            self.conn.commit()
        return self.conn

    def _insert(self, rows: Iterable[tuple[Any, ...]]) -> int:
        conn = self._connect()
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(_COPY_SQL) as copy:
                copy.set_types(list(STAGING_TYPES))
                for r in rows:
                    copy.write_row(r)
            row = cur.execute(PROJECT_SQL).fetchone()
            return int(row[0]) if row else 0

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        """Store ``rows`` (after any spooled ones), or append them to the fsynced spool."""
        try:
            if self.spool.exists():
                self._replay_spool()
            if rows:
                self.written += self._insert(rows)
        except psycopg.Error:
            self.close()
            with open(self.spool, "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
                f.flush()
                os.fsync(f.fileno())
            self.spooled += len(rows)

    def close(self) -> None:
        """Close the database connection (reopened by the next write)."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _replay_spool(self) -> None:
        lines = self.spool.read_text().splitlines()
        self.written += self._insert(tuple(json.loads(line)) for line in lines if line)
        self.spool.unlink()


def run_writer(ctx: ComponentContext) -> None:
    """Process entry point of the audit writer: drain the ``audit`` socket into Postgres
    in batches (up to :data:`BATCH_ROWS` rows or :data:`BATCH_WAIT_S`), acknowledge what
    is stored or spooled on ``audit_ack``, until SIGTERM, then drain what is queued."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    log = setup_logging("audit", ctx.var_dir)
    stopping = False

    def _stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    zctx = zmq.Context()
    pull = socket(zctx, zmq.PULL, ctx.bus.addr("audit"), bind=True)
    acks_pub = socket(zctx, zmq.PUB, ctx.bus.addr("audit_ack"), bind=True)
    status = socket(zctx, zmq.PUSH, ctx.bus.addr("status"))
    spool_dir = ctx.var_dir / "spool"
    spool_dir.mkdir(parents=True, exist_ok=True)
    store = AuditStore(ctx.dsn, spool_dir / f"audit-{ctx.session_id}.jsonl")
    acks: dict[str, int] = {}
    writer_id = uuid.uuid4().hex[:8]
    poller = zmq.Poller()
    poller.register(pull, zmq.POLLIN)
    idle_since = time.monotonic()
    last_status = 0.0
    while True:
        rows: list[tuple[Any, ...]] = []
        seen: dict[str, int] = {}
        deadline = time.monotonic() + BATCH_WAIT_S
        while len(rows) < BATCH_ROWS and poller.poll(
            max(0, int((deadline - time.monotonic()) * 1000))
        ):
            try:
                batch = decode_batch(pull.recv())
            except ValueError as e:
                log.error("malformed_audit_batch", error=str(e))
                continue
            if batch:
                rows.extend(batch)
                last = batch[-1]
                seen[f"{last[1]}/{last[2]}"] = last[3]
        if rows or store.spool.exists():
            store.write(rows)
            idle_since = time.monotonic()
            for k, seq in seen.items():
                acks[k] = max(acks.get(k, 0), seq)
            if seen:
                acks_pub.send(msgpack.packb(acks))
        now = time.monotonic()
        if now - last_status > 0.25 or stopping:
            acks_pub.send(msgpack.packb(acks))
            status.send(
                pack(
                    {
                        "component": "audit",
                        "writer_id": writer_id,
                        "pid": os.getpid(),
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
    for s in (pull, acks_pub, status):
        s.close()
    zctx.term()
