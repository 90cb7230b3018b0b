"""Benchmark: tick -> risk-approved order intent on the execution socket.

Replays the real SPY minute bars of January 2011 through the real engine process (the
promoted kernel, the risk gate, the intent MAC, the audit emission) over the same two
ZeroMQ ipc hops as the live daemon: bench PUB --md--> engine --intents--> bench PULL.
The floor is the same two hops through a process that only forwards the message.
Bars are sent 1 ms apart (after the intent, when there is one), so the figures are
latencies, not queueing; the bench plays the
execution side too and fills every intent at its reference price. Prints p50/p99/p99.9 side
by side and the ratio; asserts nothing about time.

Run: ``make bench`` (or ``.venv/bin/python bench/live_path.py [--loops N]``).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

from live.bus import INTENT, Bus, decode_intent, pack, shares
from live.config import load_config
from live.context import ComponentContext
from live.engine import run_engine
from trader import REPO_ROOT
from trader.data import BAR_DTYPE, BAR_STRUCT, load_minute_bars, to_bar_array
from trader.promote import GateResult, promote
from trader.strategy import get_strategy
from trader.strategy.nb import order_qty_nb

SPY = REPO_ROOT / "data/intraday/SPY_2011-01_1min.csv"
PARAMS = {"fast": 2, "slow": 3, "rsi_window": 2, "rsi_overbought": 99.0, "qty": 10}


def forwarder(bus: Bus, core: int) -> None:
    """The floor: receive on md, push on intents, nothing else."""
    os.sched_setaffinity(0, {core})
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(bus.addr("md"))
    push = ctx.socket(zmq.PUSH)
    push.connect(bus.addr("intents"))
    while True:
        topic, payload = sub.recv_multipart()
        if topic == b"STOP":
            break
        push.send(payload)


def expected_intents(bars: np.ndarray, loops: int) -> np.ndarray:
    """Which bars make the engine send an intent (the same kernel; every intent is filled)."""
    spec = get_strategy("ema_rsi")
    params, state = spec.params(PARAMS).to_array(), spec.new_state()
    out, pending = [], 0.0
    for _ in range(loops):
        for c in bars["close"]:
            q = order_qty_nb(spec.step_nb(state, params, float(c), np.nan), 0.0, pending)
            out.append(q != 0.0)
            pending += q
    return np.array(out)


def replay(
    pub: zmq.Socket,
    pull: zmq.Socket,
    bars: np.ndarray,
    loops: int,
    expect: np.ndarray | None,
    fills: zmq.Socket | None = None,
    key: bytes = b"",
) -> np.ndarray:
    lat = []
    rec = np.zeros(1, dtype=BAR_DTYPE)
    i = 0
    for _ in range(loops):
        for b in bars:
            rec[0] = b
            rec["ts_recv"] = time.time_ns()
            pub.send_multipart([b"SPY", rec.tobytes()])
            if expect is None or expect[i]:
                if not pull.poll(5000):
                    raise SystemExit(
                        f"no intent for bar {i} within 5 s: see the engine log (a risk denial?)"
                    )
                frames = pull.recv_multipart()
                now = time.time_ns()
                sent = (
                    BAR_STRUCT.unpack(frames[0])[1]
                    if expect is None
                    else INTENT.unpack(frames[0])[2]
                )
                lat.append(now - int(sent))
                if fills is not None:  # play execution: fill it, as the broker would
                    intent = decode_intent(key, frames)
                    sign = "" if intent["side"] == "buy" else "-"
                    qty, price = shares(intent["qty"]), repr(intent["ref_price"])
                    fills.send(
                        pack(
                            {
                                "event": "fill",
                                "client_order_id": intent["client_order_id"],
                                "symbol": "SPY",
                                "qty": sign + qty,
                                "price": price,
                                "status": "filled",
                                "execution_id": intent["client_order_id"],
                            }
                        )
                    )
            time.sleep(0.001)  # bars are paced, so no bar queues behind the last one's work
            i += 1
    return np.array(lat, dtype=np.int64)


def sockets(bus: Bus) -> tuple[zmq.Context, zmq.Socket, zmq.Socket]:
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.bind(bus.addr("md"))
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVTIMEO, 5000)
    pull.bind(bus.addr("intents"))
    return ctx, pub, pull


def stats(lat_ns: np.ndarray) -> tuple[float, float, float]:
    p = np.percentile(lat_ns, [50, 99, 99.9]) / 1e3
    return float(p[0]), float(p[1]), float(p[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--loops", type=int, default=1, help="passes over the month of bars")
    a = ap.parse_args()
    os.sched_setaffinity(0, {0})
    bars = to_bar_array(load_minute_bars(SPY))
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))

    # -- floor -----------------------------------------------------------------------
    bus = Bus(tmp / "floor")
    bus.ipc_dir.mkdir()
    ctx, pub, pull = sockets(bus)
    fwd = mp.get_context("spawn").Process(target=forwarder, args=(bus, 1))
    fwd.start()
    while True:  # handshake: the forwarder is up once a probe comes back
        pub.send_multipart([b"PROBE", np.zeros(1, dtype=BAR_DTYPE).tobytes()])
        if pull.poll(100):
            pull.recv()
            break
    while pull.poll(200):
        pull.recv()
    floor = replay(pub, pull, bars, a.loops, None)
    pub.send_multipart([b"STOP", b""])
    fwd.join(5)
    ctx.destroy(0)

    # -- engine ------------------------------------------------------------------------
    promote(
        tmp / "models", "ema_rsi", "bench", PARAMS, {}, [GateResult("bench", 1, ">=", 0)], [SPY]
    )
    cfg = load_config(
        models_dir=tmp / "models", strategy_version="bench", var_dir=tmp / "var", engine_core=1
    )
    # The bench replays a month in seconds: lift the per-minute throttle (every other
    # control stays as shipped in config/risk.toml).
    risk = cfg.risk.model_copy(update={"max_orders_per_minute": 10_000})
    cfg = cfg.model_copy(update={"risk": risk})
    bus = Bus(tmp / "engine")
    bus.ipc_dir.mkdir()
    ctx, pub, pull = sockets(bus)
    sinks = []
    for name in ("exec", "control"):
        s = ctx.socket(zmq.PUB)
        s.bind(bus.addr(name))
        sinks.append(s)
    for name in ("audit", "status"):  # bound, never read: the engine's sends stay async
        s = ctx.socket(zmq.PULL)
        s.bind(bus.addr(name))
        sinks.append(s)
    cctx = ComponentContext.offline("bench0000session", cfg, bus)
    eng = mp.get_context("spawn").Process(target=run_engine, args=(cctx,))
    eng.start()
    poller = zmq.Poller()
    poller.register(sinks[3], zmq.POLLIN)
    poller.poll(120_000)  # the engine reports in once its kernel is compiled
    time.sleep(0.5)
    # execution's account update (equity, buying power) for the gate's account controls
    sinks[0].send(pack({"event": "account", "equity": "1e9", "buying_power": "1e9"}))
    expect = expected_intents(bars, a.loops)
    live = replay(pub, pull, bars, a.loops, expect, fills=sinks[0], key=cctx.approval_key)
    eng.terminate()
    eng.join(10)
    ctx.destroy(0)

    f, e = stats(floor), stats(live)
    print(
        f"tick -> approved intent on the execution socket, real SPY 1-min bars "
        f"({len(bars) * a.loops} bars, {len(live)} intents), 2 ZeroMQ ipc hops, engine "
        f"pinned to core 1, bench on core 0"
    )
    print(f"{'':<34}{'p50 us':>10}{'p99 us':>10}{'p99.9 us':>10}")
    print(f"{'raw ZeroMQ floor (forwarder)':<34}{f[0]:>10.1f}{f[1]:>10.1f}{f[2]:>10.1f}")
    print(f"{'engine (kernel+risk+sign+audit)':<34}{e[0]:>10.1f}{e[1]:>10.1f}{e[2]:>10.1f}")
    print(
        f"{'ratio engine / floor':<34}{e[0] / f[0]:>10.2f}{e[1] / f[1]:>10.2f}"
        f"{e[2] / f[2]:>10.2f}   (target: p50 ratio <= 1.5)"
    )


if __name__ == "__main__":
    main()
