"""Benchmark: order round trip through our Alpaca client and the simulator, and market
data fan-out through the feed's client.

The simulator runs in its own process (``python -m live.sim``) on loopback, replaying
the real SPY bars of January 2011 at one bar per 10 ms, so a market order fills on
the next bar. Our client (:class:`live.alpaca.AlpacaREST` with its rate limiter, and the
``trade_updates`` stream) submits market orders one at a time and times

* submit -> accepted: the POST's response (idempotent submission path);
* submit -> fill: the ``fill`` event of that order on the stream;
* the floor: a bare GET of ``/sim/status`` (no auth, no broker work) on a keep-alive
  connection of its own.

The client's rate limiter is lifted (its budget, 180 requests a minute, would make this
a measure of the budget, not of the latency); the limiter still runs on every request.

Fan-out: the market-data client (:func:`live.alpaca.market_data`) subscribed to bars of
a replay with no pacing, each bar re-published on a ZeroMQ PUB socket to a SUB in the
same process, as the feed does; messages per second from the first bar to the last.

Prints figures and ratios; asserts nothing about time. Run: ``make bench`` (or
``.venv/bin/python bench/alpaca_roundtrip.py [--orders N]``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import numpy as np
import zmq
import zmq.asyncio

from live.alpaca import AlpacaREST, market_data, trade_updates
from live.ratelimit import RateLimiter

KEY, SECRET = "PKBENCH", "SKBENCH"


@asynccontextmanager
async def simulator(*args: str) -> AsyncIterator[str]:
    """Run ``python -m live.sim`` with ``args``; yield its URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APCA_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "live.sim", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        match = re.search(r"listening on (http://\S+)", line)
        if match is None:
            raise RuntimeError(f"simulator did not start: {line!r}")
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait(10)


def stats(ms: list[float]) -> str:
    a = np.asarray(ms)
    return f"p50 {np.percentile(a, 50):6.2f} ms  p99 {np.percentile(a, 99):6.2f} ms  (n={len(a)})"


async def round_trips(n: int) -> None:
    async with simulator("--speed", "6000", "--autostart") as url:
        ws = url.replace("http://", "ws://") + "/stream"
        fills: dict[str, asyncio.Future[float]] = {}
        up = asyncio.Event()

        async def listen() -> None:
            async for upd in trade_updates(ws, KEY, SECRET, up):
                coid = upd["order"]["client_order_id"]
                if upd["event"] == "fill" and coid in fills and not fills[coid].done():
                    fills[coid].set_result(time.perf_counter())

        listener = asyncio.create_task(listen())
        await asyncio.wait_for(up.wait(), 10)
        accepted_ms, fill_ms, floor_ms = [], [], []
        unthrottled = RateLimiter(rate_per_min=1e9, burst=10**6)  # latency, not the budget
        async with (
            AlpacaREST(url, KEY, SECRET, limiter=unthrottled) as rest,
            aiohttp.ClientSession() as http,
        ):
            for i in range(n + 20):  # the first 20 warm up
                t0 = time.perf_counter()
                async with http.get(f"{url}/sim/status") as r:
                    await r.read()
                floor = time.perf_counter() - t0
                coid = f"bench-{i}"
                fills[coid] = asyncio.get_running_loop().create_future()
                body = {"symbol": "SPY", "qty": "1", "side": "buy" if i % 2 else "sell"}
                body |= {"type": "market", "time_in_force": "day", "client_order_id": coid}
                t0 = time.perf_counter()
                ack = await rest.submit_order_idempotent(body)
                t1 = time.perf_counter()
                if ack["status"] == "rejected":  # the replay is over: nothing fills any more
                    print(f"(replay over after {i} orders: the machine is slow)")
                    break
                t2 = await asyncio.wait_for(fills[coid], 10)
                if i >= 20:
                    floor_ms.append(floor * 1e3)
                    accepted_ms.append((t1 - t0) * 1e3)
                    fill_ms.append((t2 - t0) * 1e3)
        listener.cancel()
    p50 = float(np.percentile(floor_ms, 50))
    print(f"HTTP floor (GET /sim/status)   {stats(floor_ms)}")
    print(
        f"submit -> accepted (POST)      {stats(accepted_ms)}  "
        f"p50 = {np.percentile(accepted_ms, 50) / p50:.1f}x floor"
    )
    print(
        f"submit -> fill (trade_updates) {stats(fill_ms)}  "
        f"includes waiting for the next bar (10 ms apart)"
    )


async def fan_out() -> None:
    async with simulator("--speed", "1e9") as url:
        ws = url.replace("http://", "ws://") + "/v2/iex"
        zctx = zmq.asyncio.Context()
        pub, sub = zctx.socket(zmq.PUB), zctx.socket(zmq.SUB)
        pub.bind("inproc://md")
        sub.connect("inproc://md")
        sub.setsockopt(zmq.SUBSCRIBE, b"SPY")
        sub.setsockopt(zmq.RCVHWM, 0)
        pub.setsockopt(zmq.SNDHWM, 0)
        async with aiohttp.ClientSession() as http, http.get(f"{url}/sim/status") as r:
            total = (await r.json())["bars_total"]
        received = 0

        async def drain() -> None:
            nonlocal received
            while received < total:
                await sub.recv_multipart()
                received += 1

        drainer = asyncio.create_task(drain())
        first = 0.0
        sent = 0
        async for msg in market_data(ws, KEY, SECRET, ["SPY"]):
            if msg.get("T") != "b":
                continue
            if sent == 0:
                first = time.perf_counter()
            await pub.send_multipart([b"SPY", msg["t"].encode()])
            sent += 1
            if sent == total:
                break
        await asyncio.wait_for(drainer, 10)
        elapsed = time.perf_counter() - first
        zctx.destroy(linger=0)
    print(
        f"market data fan-out            {received / elapsed:,.0f} bars/s "
        f"(simulator ws -> client -> ZeroMQ PUB/SUB, {received} bars, unpaced replay)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=200)
    a = p.parse_args()
    print(
        f"Alpaca round trip over loopback HTTP/websocket, simulator in its own process "
        f"(machine shared with other work: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})"
    )
    asyncio.run(round_trips(a.orders))
    asyncio.run(fan_out())


if __name__ == "__main__":
    main()
