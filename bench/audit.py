"""Benchmark: the audit trail and recovery.

1. Sustained events per second from one producer (:class:`~live.audit.AuditEmitter`)
   through the real writer process (ZeroMQ, binary COPY, projection) into Postgres,
   timed from the first emit to the writer's acknowledgement of the last event. The
   events are whole orders (:data:`LIFECYCLE`: intent, risk decision, submitted,
   accepted, fill), so one in five is projected into ``fills`` and ``positions``.
2. Where the time of one row goes in Postgres (:func:`breakdown`): a binary ``COPY`` of
   prebuilt rows into a bare copy of ``order_audit_trail``, then with each of its
   indexes, constraints and triggers alone, the table before ``sql/050`` and now, then
   the writer's SQL. Rows/s (wall) and the Postgres backend's CPU us per row (read from
   ``/proc``, so only for a server on this machine: the CPU figure moves less than the
   wall clock when the machine is shared).
3. Single-row autocommit ``INSERT`` (what a naive writer would do).
4. The hot-path cost of one :meth:`~live.audit.AuditEmitter.emit`, p50/p99, beside the
   cost of the timer itself.
5. Recovery: a ``sim`` daemon is killed with SIGKILL, restarted, and timed until its
   control API reports ready (every process up, reconciled with the broker, the
   strategy warmed up on the broker's bar history: :mod:`live.warmup`), then until its
   engine steps the first streamed bar (trading again); the warm-up's bars and seconds
   (fetch, step) are printed beside.

Postgres: ``DATABASE_URL``, else an embedded server under ``.var/bench``. Prints figures
and the targets side by side; asserts nothing about time (the machine is shared).

Run: ``make bench BENCH=audit`` (or ``.venv/bin/python bench/audit.py [--events N]
[--no-breakdown] [--no-recovery]``).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import requests

from live.audit import (
    _COPY_SQL,
    _STAGING_DDL,
    WORK_MEM,
    AuditEmitter,
    run_writer,
    staging_row,
    wire_row,
)
from live.bus import Bus
from live.config import load_config
from live.context import ComponentContext
from live.db import SQL_DIR, EmbeddedPostgres, migrate, migrations
from live.projection import AUDIT_COLUMNS, NEW_EVENTS_CTES, PROJECT_SQL, STAGING_TYPES
from trader import REPO_ROOT
from trader.promote import GateResult, promote

SPY = REPO_ROOT / "data/intraday/SPY_2011-01_1min.csv"
#: One order's life, as the engine and execution emit it: one event in five is a fill.
LIFECYCLE = ("intent", "risk_approved", "submitted", "accepted", "fill")
FIELDS = {
    "correlation_id": "bench:1",
    "client_order_id": "ema_rsi-bench-000001",
    "symbol": "SPY",
    "side": "buy",
    "qty": Decimal(10),
    "price": Decimal("127.05"),
    "order_type": "market",
    "time_in_force": "day",
    "status": "new",
    "metadata": {"target": 10.0, "bar_ts": 1294065000000000000},
}


def events(n: int) -> list[tuple[str, dict[str, Any]]]:
    """``n`` events of :data:`LIFECYCLE` orders (``client_order_id`` per order, a unique
    ``execution_id`` per fill), as ``(event_type, fields)`` for ``emit``."""
    out = []
    for i in range(n):
        order, step = divmod(i, len(LIFECYCLE))
        f = dict(FIELDS, correlation_id=f"bench:{order}", client_order_id=f"ema_rsi-{order:08d}")
        if LIFECYCLE[step] == "fill":
            f.update(execution_id=f"x{i}", status="filled")
        out.append((LIFECYCLE[step], f))
    return out


def _database(sql_dir: Path = SQL_DIR) -> str:
    dsn = os.environ.get("DATABASE_URL")
    if not dsn:
        pg = EmbeddedPostgres(REPO_ROOT / ".var/bench", port=56599)
        pg.start()
        dsn = pg.dsn
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info["dbname"] = name
    out = psycopg.conninfo.make_conninfo(**info)
    migrate(out, sql_dir)
    return out


def _ctx(dsn: str, var: Path) -> ComponentContext:
    (var / "ipc").mkdir(parents=True)
    return ComponentContext.offline("bench", load_config(var_dir=var), Bus(var / "ipc"), dsn)


def writer_throughput(dsn: str, var: Path, n: int, batch: int) -> float:
    """Events/s from the first emit to the writer's acknowledgement of the last."""
    ctx = _ctx(dsn, var)
    p = mp.get_context("spawn").Process(target=run_writer, args=(ctx,), daemon=True)
    p.start()
    emitter = AuditEmitter(ctx.bus, "bench", "engine")
    emitter.emit("intent", **FIELDS)  # warm-up: the writer is up and connected
    while emitter.unacked or emitter.acked == 0:
        emitter.service()
        time.sleep(0.01)
    todo = events(n)
    t0 = time.perf_counter()
    for i, (event_type, fields) in enumerate(todo):
        emitter.emit(event_type, **fields)
        if i % batch == batch - 1:
            emitter.service()
    emitter.flush()
    while emitter.unacked:
        emitter.service()
        time.sleep(0.0005)
    elapsed = time.perf_counter() - t0
    emitter.close()
    p.terminate()
    p.join(30)
    with psycopg.connect(dsn) as c:
        stored = c.execute("SELECT count(*) FROM order_audit_trail").fetchone()
        fills = c.execute("SELECT count(*) FROM fills").fetchone()
    assert stored == (n + 1,), f"writer stored {stored}, expected {n + 1}"
    assert fills == (n // len(LIFECYCLE),), f"writer projected {fills} fills"
    return n / elapsed


_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) of a process on this machine, None if not visible."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(stat[11]) + int(stat[12])) / _TCK


def _bare(c: psycopg.Connection[Any], name: str) -> None:
    """A copy of ``order_audit_trail``'s columns without index, constraint or trigger
    (``id`` keeps a default from a sequence of its own, as the real table)."""
    c.execute(f"CREATE SEQUENCE {name}_seq CACHE 1000")
    c.execute(f"CREATE TABLE {name} (LIKE order_audit_trail INCLUDING DEFAULTS)")
    c.execute(f"ALTER TABLE {name} ALTER id SET DEFAULT nextval('{name}_seq')")


#: What one row costs, each alone on the bare table: (label, DDL with {t} for the table).
COSTS = (
    ("+ id from a sequence without CACHE", "ALTER SEQUENCE {t}_seq CACHE 1"),
    ("+ PRIMARY KEY (id)", "ALTER TABLE {t} ADD PRIMARY KEY (id)"),
    (
        "+ PRIMARY KEY (session_id, source, source_seq)",
        "ALTER TABLE {t} ADD PRIMARY KEY (session_id, source, source_seq)",
    ),
    ("+ b-tree (client_order_id)", "CREATE INDEX ON {t} (client_order_id)"),
    (
        "+ partial unique (execution_id) of fills",
        "CREATE UNIQUE INDEX ON {t} (execution_id) WHERE event_type IN ('fill', 'partial_fill')",
    ),
    ("+ BRIN (ts)", "CREATE INDEX ON {t} USING brin (ts)"),
    ("+ CHECK (side)", "ALTER TABLE {t} ADD CHECK (side IN ('buy', 'sell'))"),
    (
        "+ FOREIGN KEY (event_type), per row",
        "ALTER TABLE {t} ADD FOREIGN KEY (event_type) REFERENCES audit_event_types",
    ),
    (
        "+ event-type check per statement (sql/050)",
        "CREATE TRIGGER t AFTER INSERT ON {t} REFERENCING NEW TABLE AS new_rows"
        " FOR EACH STATEMENT EXECUTE FUNCTION order_audit_trail_check_event_types()",
    ),
)


def _lifecycle_sql(n: int) -> str:
    """:func:`events` ``n`` as a SELECT of :data:`~live.projection.AUDIT_COLUMNS`."""
    types = "ARRAY[" + ", ".join(f"'{t}'" for t in LIFECYCLE) + "]"
    k = len(LIFECYCLE)
    return (
        f"SELECT clock_timestamp() + i * interval '1 us', 'copy', 'engine', i::int8,"
        f" ({types})[1 + (i - 1) % {k}], 'bench:' || (i - 1) / {k},"
        f" 'ema_rsi-bench-' || lpad(((i - 1) / {k})::text, 8, '0'), NULL,"
        f" CASE WHEN i % {k} = 0 THEN 'x' || i END, 'SPY', 'buy', 10::numeric,"
        " 127.05::numeric, 'market', 'day', 'new', NULL,"
        ' \'{"target": 10.0, "bar_ts": 1294065000000000000}\'::jsonb'
        f" FROM generate_series(1, {n}) i"
    )


def _staged(n: int, batch: int) -> list[tuple[Any, ...]]:
    """``n`` :func:`events` as the writer stages them: one row per producer batch."""
    todo, ts = events(n), time.time_ns()
    return [
        staging_row("staged", "engine", i + 1, [wire_row(ts, t, f) for t, f in todo[i : i + batch]])
        for i in range(0, n, batch)
    ]


def _timed(conn: psycopg.Connection[Any], run: Any) -> tuple[float, float | None]:
    """Wall seconds of ``run()`` + commit, and the backend's CPU seconds (None if remote)."""
    pid = conn.info.backend_pid
    c0, t0 = _cpu_s(pid), time.perf_counter()
    run()
    conn.commit()
    wall, c1 = time.perf_counter() - t0, _cpu_s(pid)
    return wall, None if c0 is None or c1 is None else c1 - c0


def _empty_audit_trail(c: psycopg.Connection[Any]) -> None:
    c.execute("ALTER TABLE order_audit_trail DISABLE TRIGGER order_audit_trail_no_truncate")
    c.execute("TRUNCATE order_audit_trail, fills, positions")
    c.execute("ALTER TABLE order_audit_trail ENABLE TRIGGER order_audit_trail_no_truncate")


def _copy_into(dsn: str, payload: bytes, ddl: str | None) -> tuple[float, float | None]:
    """Binary COPY of ``payload`` into a new bare copy of the table plus ``ddl`` (a
    :data:`COSTS` statement, "" for none), or into the emptied table itself (None)."""
    table = "order_audit_trail"
    with psycopg.connect(dsn, autocommit=True) as c:
        if ddl is None:
            _empty_audit_trail(c)
        else:
            table = f"t_{uuid.uuid4().hex[:8]}"
            _bare(c, table)
            if ddl:
                c.execute(ddl.format(t=table))
    with psycopg.connect(dsn) as c, c.cursor() as cur:

        def run() -> None:
            sql = f"COPY {table} ({AUDIT_COLUMNS}) FROM STDIN (FORMAT BINARY)"
            with cur.copy(sql) as cp:
                for i in range(0, len(payload), 1 << 20):
                    cp.write(payload[i : i + (1 << 20)])

        result = _timed(c, run)
    if ddl is not None:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(f"DROP TABLE {table}; DROP SEQUENCE {table}_seq")
    return result


def _writer_sql(dsn: str, batches: list[tuple[Any, ...]], sql: str) -> tuple[float, float | None]:
    """The writer's transaction on the emptied table: staging COPY of ``batches``, ``sql``."""
    with psycopg.connect(dsn, autocommit=True) as c:
        _empty_audit_trail(c)
    with psycopg.connect(dsn) as c, c.cursor() as cur:
        cur.execute("SET jit = off")
        cur.execute(f"SET work_mem = '{WORK_MEM}'")
        cur.execute(f"CREATE TEMP TABLE audit_in ({_STAGING_DDL}) ON COMMIT DELETE ROWS")
        c.commit()

        def run() -> None:
            with cur.copy(_COPY_SQL) as cp:
                cp.set_types(list(STAGING_TYPES))
                for b in batches:
                    cp.write_row(b)
            cur.execute(sql)

        return _timed(c, run)


def breakdown(dsn: str, n: int, reps: int, batch: int) -> list[tuple[str, float, float | None]]:
    """Where the time of one audit row goes in Postgres.

    For each case: rows/s (wall clock) and the backend's CPU us per row (None when the
    server is not on this machine), best of ``reps`` runs of ``n`` rows of
    :func:`events`. Cases: a binary COPY of prebuilt rows (built once: this process
    costs nothing per row) into a bare copy of the table, the bare copy plus each cost
    of :data:`COSTS` alone, the table as migrations 001-031 left it and as it is now;
    then, into the table as it is now, the writer's JSON expansion inserted with and
    without ``ON CONFLICT DO NOTHING`` and the writer's whole statement
    (:data:`~live.projection.PROJECT_SQL`), each after the staging COPY of the batches
    (``batch`` events each).
    """
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE UNLOGGED TABLE bench_src ({AUDIT_COLUMNS}) AS {_lifecycle_sql(n)}")
        buf = bytearray()
        with c.cursor().copy("COPY bench_src TO STDOUT (FORMAT BINARY)") as cp:
            for chunk in cp:
                buf += chunk
    payload = bytes(buf)
    with tempfile.TemporaryDirectory(prefix="sql-before-050-") as d:
        for number, path in migrations():
            if number < 50:
                (Path(d) / path.name).write_text(path.read_text())
        before = _database(Path(d))
    batches = _staged(n, batch)
    insert = f"WITH {NEW_EVENTS_CTES} INSERT INTO order_audit_trail ({AUDIT_COLUMNS})"
    insert += f" SELECT {AUDIT_COLUMNS} FROM new"
    cases = [("binary COPY into a bare copy of the table", partial(_copy_into, dsn, payload, ""))]
    cases += [(label, partial(_copy_into, dsn, payload, ddl)) for label, ddl in COSTS]
    cases += [
        ("binary COPY, the table before sql/050", partial(_copy_into, before, payload, None)),
        ("binary COPY, the table now", partial(_copy_into, dsn, payload, None)),
        ("writer: JSON expansion + INSERT", partial(_writer_sql, dsn, batches, insert)),
        (
            "writer: same + ON CONFLICT DO NOTHING",
            partial(_writer_sql, dsn, batches, insert + " ON CONFLICT DO NOTHING"),
        ),
        ("writer: whole statement (+ projection)", partial(_writer_sql, dsn, batches, PROJECT_SQL)),
    ]
    best: dict[str, tuple[float, float | None]] = {}
    for _ in range(reps):
        for label, case in cases:
            wall, cpu = case()
            w0, c0 = best.get(label, (wall, cpu))
            best[label] = (min(wall, w0), None if cpu is None or c0 is None else min(cpu, c0))
    return [(label, n / w, None if c is None else c / n * 1e6) for label, (w, c) in best.items()]


def single_inserts(dsn: str, n: int) -> float:
    """Rows/s of autocommit single-row INSERTs."""
    with psycopg.connect(dsn, autocommit=True) as c:
        t0 = time.perf_counter()
        for i in range(1, n + 1):
            c.execute(
                "INSERT INTO order_audit_trail (ts, session_id, source, source_seq, event_type,"
                " client_order_id, symbol, side, qty, price, metadata)"
                " VALUES (now(), 'single', 'engine', %s, 'intent', %s, 'SPY', 'buy', 10,"
                " 127.05, %s)",
                (i, "ema_rsi-bench-000001", '{"target": 10.0}'),
            )
        return n / (time.perf_counter() - t0)


def emit_cost(var: Path, n: int) -> tuple[float, float, float]:
    """p50 and p99 of one ``emit`` (ns) and the p50 of the timer pair alone."""
    (var / "ipc2").mkdir()
    emitter = AuditEmitter(Bus(var / "ipc2"), "bench", "engine")
    clock = time.perf_counter_ns
    out = np.empty(n, dtype=np.int64)
    empty = np.empty(n, dtype=np.int64)
    emit = emitter.emit
    for i in range(n):
        t0 = clock()
        emit("intent", **FIELDS)
        out[i] = clock() - t0
        if i % 64 == 63:
            emitter._pending.clear()
    for i in range(n):
        t0 = clock()
        empty[i] = clock() - t0
    emitter.sock.close(linger=0)
    emitter.ack.close(linger=0)
    return float(np.percentile(out, 50)), float(np.percentile(out, 99)), float(np.median(empty))


def recovery_time(tmp: Path, dsn: str) -> list[dict[str, Any]]:
    """Seconds from SIGKILL of a trading ``sim`` daemon to its restart being ready
    (``ready``) and to its engine stepping a streamed bar (``trading``), and the
    engine's ``warmup`` (its status snapshot's), per restart."""
    models, var, cfg = tmp / "models", tmp / "var", tmp / "config"
    params = {"fast": 3, "slow": 8, "rsi_window": 5, "rsi_overbought": 90.0, "qty": 10}
    promote(models, "ema_rsi", "b", params, {}, [GateResult("b", 1, ">=", 0)], [SPY])
    cfg.mkdir()
    (cfg / "live.toml").write_text(
        f'mode = "sim"\nstrategy = "ema_rsi"\nstrategy_version = "b"\nsymbol = "SPY"\n'
        f'models_dir = "{models}"\nvar_dir = "{var}"\nengine_core = -1\n[control]\nport = 0\n'
    )
    (cfg / "risk.toml").write_text((REPO_ROOT / "config/risk.toml").read_text())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("APCA_")}
    env.update(
        DATABASE_URL=dsn, TRADER_SIM_URL=f"http://127.0.0.1:{port}", TRADER_CONTROL_TOKEN="b"
    )
    sim = subprocess.Popen(
        # from 2011-01-04, so every warm-up has the 390 bars of the day before
        [
            *(sys.executable, "-m", "live.sim", "--port", str(port)),
            *("--speed", "100", "--start", "2011-01-04"),
        ],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def status(url: str) -> Any:
        return requests.get(
            f"{url}/status", headers={"Authorization": "Bearer b"}, timeout=5
        ).json()

    def start() -> tuple[subprocess.Popen[bytes], str]:
        (var / "control.url").unlink(missing_ok=True)
        d = subprocess.Popen(
            [sys.executable, "-m", "live", "--config-dir", str(cfg), "run"],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while not (var / "control.url").exists():
            if d.poll() is not None:
                raise RuntimeError(f"daemon exited {d.returncode}")
            time.sleep(0.01)
        while True:  # every process in and reconciled with the broker
            url = (var / "control.url").read_text()  # again: it may be read half-written
            try:
                st = status(url)
                if len(st["components"]) == 4 and st["reconciliation"].get("at_ns"):
                    return d, url
            except (requests.RequestException, ValueError, KeyError):
                pass
            time.sleep(0.01)

    def engine(url: str) -> dict[str, Any]:
        while True:
            try:
                eng: dict[str, Any] = status(url)["components"]["engine"]
                return eng
            except (requests.RequestException, ValueError, KeyError):
                time.sleep(0.01)

    times = []
    try:
        d, _ = start()
        for _ in range(3):
            time.sleep(3)  # trading
            t0 = time.perf_counter()
            os.kill(d.pid, signal.SIGKILL)
            d.wait()
            d, url = start()
            ready = time.perf_counter() - t0
            while not engine(url)["bars"]:
                time.sleep(0.01)
            trading = time.perf_counter() - t0
            times.append({"ready": ready, "trading": trading, "warmup": engine(url)["warmup"]})
        d.send_signal(signal.SIGINT)
        d.wait(60)
    finally:
        sim.terminate()
        sim.wait(20)
    return times


TARGET = 100_000  # events/s through the writer (issue 7)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=100, help="events per producer flush")
    ap.add_argument("--breakdown-events", type=int, default=50_000)
    ap.add_argument("--reps", type=int, default=3, help="breakdown runs (best kept)")
    ap.add_argument("--no-breakdown", action="store_true")
    ap.add_argument("--no-recovery", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as d:
        tmp = Path(d)
        dsn = _database()
        load = os.getloadavg()[0]
        rate = writer_throughput(dsn, tmp / "w", a.events, a.batch)
        single = single_inserts(dsn, 3000)
        p50, p99, timer = emit_cost(tmp, 200_000)
        print(
            f"audit events into Postgres ({a.events} events, whole orders: 1 in 5 a fill;"
            f" shared 2-core machine, load average {load:.1f})"
        )
        print(f"{'':48}{'events/s':>10}{'/ target':>10}")
        print(
            f"{'writer (ZeroMQ + binary COPY + projection)':48}{rate:>10,.0f}"
            f"{rate / TARGET:>10.2f}   (target >= {TARGET:,}/s)"
        )
        print(f"{'single-row autocommit INSERT':48}{single:>10,.0f}{single / TARGET:>10.2f}")
        print(
            f"hot-path emit(): p50 {p50 / 1e3:.2f} us  p99 {p99 / 1e3:.2f} us  "
            f"(timer pair alone {timer / 1e3:.2f} us; target < 2 us)"
        )
        if not a.no_breakdown:
            rows = breakdown(dsn, a.breakdown_events, a.reps, a.batch)
            bare_rate, bare_cpu = rows[0][1], rows[0][2]
            print(
                f"\nwhere the time goes in Postgres ({a.breakdown_events} rows, best of {a.reps};"
                " wall clock, and the backend's CPU, which the other load moves less)"
            )
            print(f"{'':48}{'rows/s':>10}{'us/row':>8}{'+ us':>7}{'cpu us':>8}{'+ cpu':>7}")
            for label, r, cpu in rows:
                extra = 1e6 / r - 1e6 / bare_rate
                cpu_s = "-" if cpu is None else f"{cpu:.2f}"
                extra_cpu = "-" if cpu is None or bare_cpu is None else f"{cpu - bare_cpu:+.2f}"
                print(f"{label:48}{r:>10,.0f}{1e6 / r:>8.2f}{extra:>+7.2f}{cpu_s:>8}{extra_cpu:>7}")
        if not a.no_recovery:
            # a database of its own: the throughput run's fills left positions in this one,
            # which the restarted daemon would restore and find unknown to the new simulator
            times = recovery_time(tmp, _database())
            print(
                "\nrecovery, SIGKILL of the daemon -> restarted, every process in, reconciled, "
                "strategy warm: " + ", ".join(f"{t['ready']:.1f} s" for t in times)
            )
            print(
                "  -> the engine steps a streamed bar (trading again): "
                + ", ".join(f"{t['trading']:.1f} s" for t in times)
            )
            for t in times:
                w, up = t["warmup"], t["warmup"].get("caught_up", {})
                print(
                    f"  warm-up: {w['bars']} bars ({w['before_session']} before the session"
                    f" + {w['in_session']} in it) fetch {w['fetch_s']:.3f} s + step "
                    f"{w['step_s']:.4f} s; seam: {up.get('bars', 0)} bars caught up in "
                    f"{up.get('seconds', 0.0):.3f} s"
                )


if __name__ == "__main__":
    main()
