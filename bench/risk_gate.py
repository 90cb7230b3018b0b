"""Benchmark: the risk gate's per-intent cost, and kill -> every open order cancelled.

1. Gate: ``RiskGate.check_code`` as the engine calls it (Python call + numba kernel, every
   control evaluated on an approved order, one symbol), with and without the 99% VaR
   (``[var]`` of ``config/risk.toml``: 500 real SPY scenarios), and the kernel's own cost
   inside numba (batches of 1000 calls, per-call time per batch).
2. Kill switch: the real execution process and the simulator. Each trial rests N limit
   orders at the simulator, sends the daemon's ``kill`` command on the control socket and
   stops the clock when execution acknowledges that the broker reports no open order;
   the simulator is then asked again to confirm (a trial with an order still open fails
   the run).

Prints p50/p99 and ratios; asserts nothing about time. The machine's 2 cores are shared
with the other sessions' work, so the tails are noisy.

Run: ``make bench BENCH=risk_gate`` (or ``.venv/bin/python bench/risk_gate.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import zmq
from numba import njit

from live.bus import Bus, pack, socket, unpack
from live.config import BrokerEndpoints, load_config
from live.context import ComponentContext
from live.execution import run_execution
from live.risk import RiskGate, nb


def _gate(var: bool) -> RiskGate:
    cfg = load_config()
    limits = cfg.risk if var else cfg.risk.model_copy(update={"var": None})
    gate = RiskGate(limits, (cfg.symbol,))
    gate.set_account(100_000.0, 100_000.0)
    gate.update_price(0, 127.0, time.time_ns())
    gate.set_position(0, 100.0, 0.0)
    gate.set_day(-10.0, 5.0, 1)
    return gate


@njit(cache=True)
def _batch_nb(g_limits, sym, last_ns, acct, recent, returns, scratch, now, out, n):  # type: ignore[no-untyped-def]
    approved = 0
    for i in range(n):
        approved += nb.check_nb(
            g_limits, sym, last_ns, acct, recent, returns, scratch, 0,
            100.0 + (i & 1), 127.0, False, True, now, out,
        ) == 0  # fmt: skip
    return approved


def bench_gate(n: int) -> dict[str, tuple[float, float]]:
    """p50/p99 in microseconds of one check, per variant."""
    res = {}
    for var in (False, True):
        gate = _gate(var)
        now = time.time_ns()
        assert gate.check_code(0, 100.0, 127.0, now, False, True) == 0, gate.explain(
            gate.check_code(0, 100.0, 127.0, now, False, True)
        )
        t = np.empty(n, dtype=np.int64)
        for i in range(n):
            t0 = time.perf_counter_ns()
            gate.check_code(0, 100.0, 127.0, now, False, True)
            t[i] = time.perf_counter_ns() - t0
        res["python call" + (" + VaR" if var else "")] = (
            float(np.percentile(t, 50)) / 1e3,
            float(np.percentile(t, 99)) / 1e3,
        )
        args = (gate.limits_array, gate.sym, gate.last_ns, gate.acct, gate.recent,
                gate.returns, gate.scratch, now, gate.out)  # fmt: skip
        _batch_nb(*args, 10)
        per = np.empty(max(n // 1000, 50))
        for i in range(per.size):
            t0 = time.perf_counter_ns()
            assert _batch_nb(*args, 1000) == 1000
            per[i] = (time.perf_counter_ns() - t0) / 1000
        res["in numba" + (" + VaR" if var else "")] = (
            float(np.percentile(per, 50)) / 1e3,
            float(np.percentile(per, 99)) / 1e3,
        )
    return res


async def _rest(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> Any:
    async with http.request(method, url, **kw) as r:
        text = await r.text()
        assert r.status < 300, f"{method} {url}: {r.status} {text[:200]}"
        return await r.json() if text else None


async def bench_kill(trials: int, orders: int, tmp: Path) -> list[float]:
    """Wall ms from the kill command to execution's confirmation, per trial."""
    sim = subprocess.Popen(
        [sys.executable, "-m", "live.sim", "--port", "0", "--speed", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sim.stdout is not None
        url = sim.stdout.readline().strip().rsplit(" ", 1)[-1]
        cfg = load_config(var_dir=tmp / "var")
        (tmp / "var" / "log").mkdir(parents=True)
        bus = Bus(tmp / "bus")
        bus.ipc_dir.mkdir()
        broker = BrokerEndpoints(
            mode="sim",
            trading_url=url,
            trade_stream_url=url.replace("http", "ws") + "/stream",
            data_stream_url=url.replace("http", "ws") + "/v2/iex",
            key_id="bench",
            secret_key="bench",
        )
        ctx = ComponentContext(
            "benchkill0000000", cfg, bus, broker, "", secrets.token_bytes(32), False
        )
        zctx = zmq.Context()
        control = socket(zctx, zmq.PUB, bus.addr("control"), bind=True)
        status = socket(zctx, zmq.PULL, bus.addr("status"), bind=True)
        audit = socket(zctx, zmq.PULL, bus.addr("audit"), bind=True)
        proc = mp.get_context("spawn").Process(target=run_execution, args=(ctx,))
        proc.start()
        while unpack(status.recv()).get("component") != "execution":
            pass
        headers = {"APCA-API-KEY-ID": "bench", "APCA-API-SECRET-KEY": "bench"}
        ms = []
        async with aiohttp.ClientSession(headers=headers) as http:
            for trial in range(trials):
                for k in range(orders):
                    await _rest(
                        http,
                        "POST",
                        f"{url}/v2/orders",
                        json={
                            "symbol": "SPY",
                            "qty": "1",
                            "side": "buy",
                            "type": "limit",
                            "limit_price": "50.00",
                            "time_in_force": "gtc",
                            "client_order_id": f"rest-{trial}-{k}",
                        },
                    )
                open_before = await _rest(http, "GET", f"{url}/v2/orders", params={"limit": "500"})
                assert len(open_before) == orders, len(open_before)
                kill_id = f"kill{trial}"
                t0 = time.perf_counter()
                control.send(pack({"cmd": "kill", "kill_id": kill_id, "reason": "bench"}))
                while True:
                    snap = unpack(status.recv())
                    if snap.get("kill_ack") == kill_id:
                        break
                ms.append((time.perf_counter() - t0) * 1e3)
                assert snap["broker_open_orders"] == 0
                left = await _rest(http, "GET", f"{url}/v2/orders", params={"status": "open"})
                assert left == [], f"trial {trial}: {len(left)} orders still open"
                control.send(pack({"cmd": "resume"}))
                while audit.poll(0):
                    audit.recv_multipart()
        proc.terminate()
        proc.join(20)
        zctx.destroy(linger=0)
        return ms
    finally:
        sim.terminate()
        sim.wait(10)


def main() -> None:
    """Run both benchmarks and print the figures."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checks", type=int, default=100_000)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--orders", type=int, default=50)
    a = p.parse_args()
    print(f"risk gate: {a.checks} checks per variant (one symbol, approved: every control runs)")
    gate = bench_gate(a.checks)
    base = gate["python call"][0]
    for name, (p50, p99) in gate.items():
        print(f"  {name:<22} p50 {p50:7.2f} us  p99 {p99:7.2f} us  ({p50 / base:4.2f}x)")
    with tempfile.TemporaryDirectory(prefix="bench-kill-") as tmp:
        ms = asyncio.run(bench_kill(a.trials, a.orders, Path(tmp)))
    print(
        f"kill -> all {a.orders} open orders confirmed cancelled at the simulator, "
        f"{a.trials} trials: p50 {np.percentile(ms, 50):.1f} ms  p99 "
        f"{np.percentile(ms, 99):.1f} ms  ({np.percentile(ms, 50) / a.orders:.2f} ms/order)"
    )
    print("(shared 2-core machine: other sessions' work inflates the tails)")


if __name__ == "__main__":
    main()
