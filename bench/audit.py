"""Benchmark: the audit trail and recovery.

1. Sustained events per second from one producer (:class:`~live.audit.AuditEmitter`)
   through the real writer process (ZeroMQ, binary COPY, projection) into Postgres,
   timed from the first emit to the writer's acknowledgement of the last event.
2. The floor: binary ``COPY`` of the same rows straight into ``order_audit_trail``
   from this process (no ZeroMQ, no staging, no projection).
3. Single-row autocommit ``INSERT`` (what a naive writer would do).
4. The hot-path cost of one :meth:`~live.audit.AuditEmitter.emit`, p50/p99, beside the
   cost of the timer itself.
5. Recovery: a ``sim`` daemon is killed with SIGKILL, restarted, and timed until its
   control API reports ready (every process up, reconciled with the broker).

Postgres: ``DATABASE_URL``, else an embedded server under ``.var/bench``. Prints figures
and the targets side by side; asserts nothing about time (the machine is shared).

Run: ``make bench BENCH=audit`` (or ``.venv/bin/python bench/audit.py [--events N]``).
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
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import psycopg
import requests
from psycopg.types.json import Jsonb

from live.audit import AuditEmitter, run_writer, wire_row
from live.bus import Bus
from live.config import BrokerEndpoints, load_config
from live.context import ComponentContext
from live.db import EmbeddedPostgres, migrate
from trader import REPO_ROOT
from trader.promote import GateResult, promote

SPY = REPO_ROOT / "data/intraday/SPY_2011-01_1min.csv"
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


def _database(root: Path) -> str:
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
    migrate(out)
    return out


def _ctx(dsn: str, var: Path) -> ComponentContext:
    broker = BrokerEndpoints(
        mode="sim",
        trading_url="http://127.0.0.1:1",
        trade_stream_url="ws://127.0.0.1:1/stream",
        data_stream_url="ws://127.0.0.1:1/v2/iex",
        key_id="k",
        secret_key="s",
    )
    (var / "ipc").mkdir(parents=True)
    return ComponentContext(
        "bench", load_config(var_dir=var), Bus(var / "ipc"), broker, dsn, b"k" * 32, False
    )


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
    t0 = time.perf_counter()
    for i in range(n):
        emitter.emit("intent", **FIELDS)
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
    assert stored == (n + 1,), f"writer stored {stored}, expected {n + 1}"
    return n / elapsed


def copy_floor(dsn: str, n: int) -> float:
    """Rows/s of one binary COPY of ``n`` prebuilt rows into ``order_audit_trail``."""
    cols = (
        "ts, session_id, source, source_seq, event_type, correlation_id, client_order_id,"
        " broker_order_id, execution_id, symbol, side, qty, price, order_type, time_in_force,"
        " status, reason, metadata"
    )
    w = wire_row(time.time_ns(), "intent", FIELDS)
    ts = datetime.now(UTC)
    meta = Jsonb(w[14])
    rows = [
        (ts, "floor", "engine", i, *w[1:8], Decimal(10), Decimal("127.05"), *w[10:14], meta)
        for i in range(1, n + 1)
    ]
    types = [
        "timestamptz",
        "text",
        "text",
        "int8",
        *["text"] * 7,
        "numeric",
        "numeric",
        *["text"] * 4,
        "jsonb",
    ]
    with psycopg.connect(dsn) as c, c.cursor() as cur:
        t0 = time.perf_counter()
        with cur.copy(f"COPY order_audit_trail ({cols}) FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(types)
            for r in rows:
                cp.write_row(r)
        c.commit()
        return n / (time.perf_counter() - t0)


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


def recovery_time(tmp: Path, dsn: str) -> list[float]:
    """Seconds from SIGKILL of a trading ``sim`` daemon to its restart being ready."""
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
        [sys.executable, "-m", "live.sim", "--port", str(port), "--speed", "100"],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

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
        url = (var / "control.url").read_text()
        while True:  # every process in and reconciled with the broker
            try:
                st = requests.get(
                    f"{url}/status", headers={"Authorization": "Bearer b"}, timeout=5
                ).json()
                if len(st["components"]) == 4 and st["reconciliation"].get("at_ns"):
                    return d, url
            except (requests.RequestException, ValueError, KeyError):
                pass
            time.sleep(0.01)

    times = []
    try:
        d, _ = start()
        for _ in range(3):
            time.sleep(3)  # trading
            t0 = time.perf_counter()
            os.kill(d.pid, signal.SIGKILL)
            d.wait()
            d, _ = start()
            times.append(time.perf_counter() - t0)
        d.send_signal(signal.SIGINT)
        d.wait(60)
    finally:
        sim.terminate()
        sim.wait(20)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=100, help="events per producer flush")
    ap.add_argument("--no-recovery", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as d:
        tmp = Path(d)
        dsn = _database(tmp)
        rate = writer_throughput(dsn, tmp / "w", a.events, a.batch)
        floor = copy_floor(dsn, a.events)
        single = single_inserts(dsn, 3000)
        p50, p99, timer = emit_cost(tmp, 200_000)
        print(
            f"audit events into Postgres ({a.events} events, 15-field rows, shared 2-core machine)"
        )
        print(f"{'':44}{'events/s':>12}{'vs floor':>10}")
        print(
            f"{'writer (ZeroMQ + binary COPY + projection)':44}{rate:>12,.0f}{rate / floor:>10.2f}"
            "   (target >= 100,000/s)"
        )
        print(f"{'floor: one binary COPY into the table':44}{floor:>12,.0f}{1:>10.2f}")
        print(f"{'single-row autocommit INSERT':44}{single:>12,.0f}{single / floor:>10.2f}")
        print(
            f"hot-path emit(): p50 {p50 / 1e3:.2f} us  p99 {p99 / 1e3:.2f} us  "
            f"(timer pair alone {timer / 1e3:.2f} us; target < 2 us)"
        )
        if not a.no_recovery:
            times = recovery_time(tmp, dsn)
            print(
                "recovery, SIGKILL of the daemon -> restarted, every process in, reconciled: "
                + ", ".join(f"{t:.1f} s" for t in times)
            )


if __name__ == "__main__":
    main()
