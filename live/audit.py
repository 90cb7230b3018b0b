"""The order audit trail: producers emit events over ZeroMQ, one writer process stores
them in Postgres ``order_audit_trail`` in batches, off the hot path.

Producers (:class:`AuditEmitter`) number their events (``session_id``, ``source``,
``source_seq``). :meth:`AuditEmitter.emit` only appends to a list (the hot-path cost);
:meth:`AuditEmitter.flush`, called after the hot path, sends the events as one batch:
a msgpack array ``[session_id, source, first_seq, n_events, events, acked]``, ``events``
a JSON array of :data:`WIRE_FIELDS` arrays (encoded once, by the producer, off the hot
path), ``acked`` the producer's acknowledged mark when it sent the batch. A batch stays
in the producer's memory until the writer acknowledges it (``audit_ack`` endpoint: the
writer's id and, per producer, the ``source_seq`` up to which *every* event is stored or
spooled, after every write and every 0.25 s; :class:`AckBook`). An acknowledgement never
jumps a gap: a writer killed with batches in its memory leaves a hole that its successor
does not cover by acknowledging the later batches it receives, so the producer still
holds the lost ones, and it sends every batch not yet acknowledged again as soon as it
sees a new writer (a restart after a crash). As a last resort a batch is also re-sent
after :data:`RESEND_AFTER_S` without any acknowledgement progress.

The writer stages the batches with a binary ``COPY`` into a temporary table (one row per
batch: it never touches an event in Python) and inserts the events not stored yet (a
re-sent event is never written twice: the primary key ``session_id, source,
source_seq`` refuses it), projecting orders, fills and positions in the same transaction
(:mod:`live.projection`). While
Postgres is unreachable, batches are appended to an fsynced spool file
(``.var/spool/audit-<session>.jsonl``) and replayed, in order, when it returns; a writer
also replays the spool files that earlier sessions left behind (a daemon killed during an
outage), before its own. A batch
Postgres refuses for its content (a bug: an unknown event type, a malformed field) is
kept, with the error, in ``.var/spool/rejected-<session>.jsonl`` and logged, never
dropped, and does not hold back the others.
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
import msgspec
import numpy as np
import psycopg
import zmq

from live.bus import Bus, pack, socket
from live.context import ComponentContext
from live.logs import setup_logging
from live.projection import PROJECT_SQL, PROJECT_SQL_TOLERANT, STAGING_COLUMNS, STAGING_TYPES
from live.supervise import die_with_parent

#: Fields of one event on the wire, in order (``source_seq`` is implicit: the batch's
#: ``first_seq`` plus the event's index). ``ts`` is ns since the epoch UTC; ``qty`` and
#: ``price`` are decimal strings (stored as NUMERIC, never through a float); ``metadata``
#: is a JSON object.
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
RESEND_AFTER_S = 30.0
_STAGING_DDL = ", ".join(f"{c} {t}" for c, t in zip(STAGING_COLUMNS, STAGING_TYPES, strict=True))
_COPY_SQL = f"COPY audit_in ({', '.join(STAGING_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
BATCH_ROWS = 20_000
BATCH_WAIT_S = 0.02
#: ``work_mem`` of the writer's connection: a write of :data:`BATCH_ROWS` events sorts
#: and hashes ~20 MB in memory instead of spilling to disk (the default is 4 MB).
WORK_MEM = "64MB"


def wire_row(ts: int, event_type: str, fields: dict[str, Any]) -> list[Any]:
    """One event as a wire row (:data:`WIRE_FIELDS`); ``fields`` as for ``emit``
    (``Decimal`` quantities and prices stay ``Decimal``: :func:`staging_row` encodes
    them as JSON strings, exactly)."""
    return [ts, event_type, *map(fields.get, _FIELDS)]


class AckBook:
    """The writer's acknowledgement marks: per producer, the highest ``source_seq`` up to
    which every event has been stored or spooled.

    Batches may arrive out of order or with a hole (the batches a killed writer had
    received and not stored). A batch above the mark is remembered, and the mark moves
    over it only once the hole below is filled, so an acknowledgement never covers a
    lost event. ``base`` is what the producer knew as acknowledged when it sent the batch
    (by this writer or a predecessor): everything up to it is already stored.
    """

    def __init__(self) -> None:
        self.marks: dict[str, int] = {}
        self._above: dict[str, list[tuple[int, int]]] = {}

    def add(self, key: str, base: int, first: int, last: int) -> None:
        """Record that events ``first..last`` of producer ``key`` are stored."""
        mark = max(self.marks.get(key, 0), base)
        held = sorted([*self._above.get(key, []), (first, last)])
        self._above[key] = []
        for lo, hi in held:
            if lo <= mark + 1:
                mark = max(mark, hi)
            elif hi > mark:
                self._above[key].append((lo, hi))
        self.marks[key] = mark


def _json_default(v: Any) -> Any:
    """numpy scalars as the Python number they hold, anything else JSON does not know
    as its ``str()``."""
    return v.item() if isinstance(v, np.generic) else str(v)


#: JSON encoder of the events: ``Decimal`` as a string ("127.05", never through a float),
#: NaN as null (JSON has no NaN), others by :func:`_json_default`. msgspec, not
#: ``json.dumps``: a few times cheaper per event for the producer (``bench/audit.py``).
_encode_json = msgspec.json.Encoder(enc_hook=_json_default, decimal_format="string").encode


def staging_row(
    session_id: str, source: str, first_seq: int, rows: list[list[Any]]
) -> tuple[str, str, int, int, str]:
    """A batch as one staging row (:data:`~live.projection.STAGING_COLUMNS`)."""
    return session_id, source, first_seq, len(rows), _encode_json(rows).decode()


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
        self._writer = ""

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
        payload = msgpack.packb(
            [*staging_row(self.session_id, self.source, first, rows), self.acked]
        )
        if not self._unacked:
            self._sent_at = time.monotonic()
        self._unacked.append((self.seq, payload))
        self.sock.send(payload)

    def service(self) -> None:
        """Flush, read the writer's acknowledgements, and re-send what a new writer (a
        restart after a crash) has not stored."""
        self.flush()
        resend = False
        while True:
            try:
                writer, acks = msgpack.unpackb(self.ack.recv(zmq.NOBLOCK))
            except zmq.Again:
                break
            seq = acks.get(self.key, 0)
            if seq > self.acked:
                self.acked = seq
                self._sent_at = time.monotonic()
            if writer != self._writer:
                self._writer, resend = writer, True
        while self._unacked and self._unacked[0][0] <= self.acked:
            self._unacked.popleft()
        if self._unacked and (resend or time.monotonic() - self._sent_at > RESEND_AFTER_S):
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


def decode_batch(payload: bytes) -> tuple[tuple[str, str, int, int, str], int]:
    """Decode one wire batch into its staging row (the events stay JSON text) and the
    producer's acknowledged mark when it sent it.

    Raises
    ------
    ValueError
        If ``payload`` is not ``[session_id, source, first_seq, n_events, events, acked]``
        with the types of :data:`~live.projection.STAGING_TYPES` (``acked`` an int),
        ``first_seq >= 1`` and ``0 <= acked < first_seq``.
    """
    try:
        session_id, source, first, n, events, acked = msgpack.unpackb(payload)
    except Exception as e:
        raise ValueError(f"malformed audit batch ({len(payload)} bytes): {e}") from e
    types = (str, str, int, int, str, int)
    got = (session_id, source, first, n, events, acked)
    if (
        not all(isinstance(v, t) for v, t in zip(got, types, strict=True))
        or first < 1
        or not 0 <= acked < first
    ):
        raise ValueError(f"malformed audit batch: header {(*got[:4], acked)!r}")
    return (session_id, source, first, n, events), acked


class AuditStore:
    """Writes batches (staging rows) to Postgres (projection included), spooling to disk
    when it is unreachable.

    Parameters
    ----------
    dsn : str
        libpq connection string.
    spool : Path
        JSON-lines spool file (created only while Postgres is unreachable); batches
        Postgres refuses for their content go to ``rejected-*`` next to it.
    """

    def __init__(self, dsn: str, spool: Path) -> None:
        self.dsn = dsn
        self.spool = spool
        self.rejects = spool.with_name(spool.name.replace("audit-", "rejected-", 1))
        self.rejected = 0
        self.conn: psycopg.Connection[Any] | None = None
        self.written = 0
        self.spooled = 0

    def _connect(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.dsn, connect_timeout=3)
            # JIT-compiling the projection costs ~200 ms per batch for nothing
            self.conn.execute("SET jit = off")
            self.conn.execute(f"SET work_mem = '{WORK_MEM}'")
            self.conn.execute(f"CREATE TEMP TABLE audit_in ({_STAGING_DDL}) ON COMMIT DELETE ROWS")
            self.conn.commit()
        return self.conn

    def _insert(self, rows: Iterable[tuple[Any, ...]], sql: str = PROJECT_SQL) -> int:
        conn = self._connect()
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(_COPY_SQL) as copy:
                copy.set_types(list(STAGING_TYPES))
                for r in rows:
                    copy.write_row(r)
            row = cur.execute(sql).fetchone()
            return int(row[0]) if row else 0

    def spools(self) -> list[Path]:
        """Spool files waiting to be replayed: those earlier sessions left behind (oldest
        first), then this one's."""
        others = [p for p in self.spool.parent.glob("audit-*.jsonl") if p != self.spool]
        mine = [self.spool] if self.spool.exists() else []
        return sorted(others, key=lambda p: p.stat().st_mtime) + mine

    def write(self, batches: list[tuple[Any, ...]]) -> None:
        """Store ``batches`` (after any spooled ones), or append them to the fsynced spool
        while Postgres is unreachable."""
        try:
            for path in self.spools():
                self._replay_spool(path)
            if batches:
                self.written += self._insert_or_reject(batches)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            self.close()
            self._append(self.spool, batches)
            self.spooled += sum(b[3] for b in batches)

    def _insert_or_reject(self, batches: list[tuple[Any, ...]]) -> int:
        try:
            return self._insert(batches)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            raise
        except psycopg.Error:
            # a duplicate the fast path's filter could not see (a concurrent writer, an
            # event twice in one write), or a batch refused for its content: batch by
            # batch, duplicates skipped, the culprit(s) kept aside
            written = 0
            for b in batches:
                try:
                    written += self._insert([b], PROJECT_SQL_TOLERANT)
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    raise
                except psycopg.Error as e:
                    self._append(self.rejects, [(*b, str(e))])
                    self.rejected += b[3]
            return written

    @staticmethod
    def _append(path: Path, batches: list[tuple[Any, ...]]) -> None:
        with open(path, "a") as f:
            f.writelines(json.dumps(b) + "\n" for b in batches)
            f.flush()
            os.fsync(f.fileno())

    def close(self) -> None:
        """Close the database connection (reopened by the next write)."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _replay_spool(self, path: Path) -> None:
        lines = path.read_text().splitlines()
        self.written += self._insert_or_reject([tuple(json.loads(ln)) for ln in lines if ln])
        path.unlink()


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
    acks = AckBook()
    writer_id = uuid.uuid4().hex[:8]
    poller = zmq.Poller()
    poller.register(pull, zmq.POLLIN)
    idle_since = time.monotonic()
    last_status = 0.0
    while True:
        batches: list[tuple[Any, ...]] = []
        n_events = 0
        received: list[tuple[str, int, int, int]] = []  # (producer, base, first, last)
        deadline = time.monotonic() + BATCH_WAIT_S
        while n_events < BATCH_ROWS and poller.poll(
            max(0, int((deadline - time.monotonic()) * 1000))
        ):
            try:
                b, base = decode_batch(pull.recv())
            except ValueError as e:
                log.error("malformed_audit_batch", error=str(e))
                continue
            batches.append(b)
            n_events += b[3]
            received.append((f"{b[0]}/{b[1]}", base, b[2], b[2] + b[3] - 1))
        if batches or store.spools():
            rejected = store.rejected
            store.write(batches)
            if store.rejected > rejected:
                log.error(
                    "audit_batch_rejected",
                    events=store.rejected - rejected,
                    kept_in=str(store.rejects),
                )
            idle_since = time.monotonic()
            for key, base, first, last in received:
                acks.add(key, base, first, last)
            if received:
                acks_pub.send(msgpack.packb([writer_id, acks.marks]))
        now = time.monotonic()
        if now - last_status > 0.25 or stopping:
            acks_pub.send(msgpack.packb([writer_id, acks.marks]))
            status.send(
                pack(
                    {
                        "component": "audit",
                        "writer_id": writer_id,
                        "pid": os.getpid(),
                        "written": store.written,
                        "spooled": store.spooled,
                        "rejected": store.rejected,
                        "spool_pending": bool(store.spools()),
                    }
                )
            )
            last_status = now
        # after SIGTERM keep draining until 0.5 s without events and nothing spooled
        if stopping and now - idle_since > 0.5 and not store.spools():
            break
    store.close()
    log.info("stopped", written=store.written, spooled=store.spooled)
    for s in (pull, acks_pub, status):
        s.close()
    zctx.term()
