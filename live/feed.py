"""The feed process: the daemon's one market-data websocket, republished on ZeroMQ.

It subscribes to bars of the configured symbol on Alpaca's market-data v2 stream (or
the simulator's), validates each bar, stamps ``ts_recv`` and publishes it on the ``md``
socket as raw :data:`~trader.data.BAR_DTYPE` bytes under the symbol as topic. A
malformed bar is logged with its content and counted, never forwarded.

Stale-feed watchdog: while the market is open (``/v2/clock``, polled every
:data:`CLOCK_POLL_S`, with the NYSE calendar in between: :mod:`live.market_hours`), a
connection that brings no message for :func:`stale_after_s` is dropped and reopened,
and the feed publishes its state (``stale`` once no bar came for that long) on ``md``
under :data:`~live.bus.FEED_STATE_TOPIC` every 0.25 s; execution refuses new orders
while it is stale. Before the first bar of each connection it publishes
:data:`~live.bus.FEED_CONNECTED_TOPIC`, so the engine fetches the bars the stream missed
while it was down (:mod:`live.warmup`).
"""

from __future__ import annotations

import asyncio
import math
import signal
import time
from typing import Any

import numpy as np
import zmq
import zmq.asyncio

from live.aio import CountingEvent, wait_for_event
from live.alpaca import AlpacaREST, market_data
from live.bus import FEED_CONNECTED_TOPIC, FEED_STATE_TOPIC, pack, socket
from live.context import ComponentContext
from live.logs import setup_logging
from live.market_hours import MarketHours
from live.supervise import die_with_parent
from trader.data import BAR_DTYPE
from trader.exceptions import TemporaryError

#: Seconds between two reads of ``/v2/clock``.
CLOCK_POLL_S = 5.0
#: Bars that may be missing before the feed counts as stale, plus a grace in seconds.
STALE_BARS, STALE_GRACE_S = 3, 2.0


def stale_after_s(bar_interval_s: float) -> float:
    """Seconds without market data after which the feed is stale: three bar intervals
    plus 2 s (minute bars from Alpaca: 182 s; the simulator at speed 200: 2.9 s)."""
    return STALE_BARS * bar_interval_s + STALE_GRACE_S


def parse_rfc3339_ns(t: str) -> int:
    """Parse an RFC-3339 UTC timestamp (``2011-01-03T14:30:00.123456789Z``) to int64 ns.

    Raises
    ------
    ValueError
        If ``t`` is not a UTC (``Z``) RFC-3339 timestamp.
    """
    if not t.endswith("Z"):
        raise ValueError(f"timestamp {t!r} is not UTC ('Z')")
    return int(np.datetime64(t[:-1], "ns").astype(np.int64))


def bar_record(msg: dict[str, Any], ts_recv: int) -> np.ndarray:
    """Convert an Alpaca bar message (``T == "b"``) to a one-element BAR_DTYPE array.

    Raises
    ------
    ValueError
        Missing field, non-finite or non-positive price, negative volume, or
        ``low``/``high`` inconsistent with ``open``/``close``.
    """
    rec = np.zeros(1, dtype=BAR_DTYPE)
    try:
        o, h, lo, c, v = (float(msg[k]) for k in ("o", "h", "l", "c", "v"))
        rec["ts_event"] = parse_rfc3339_ns(msg["t"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"bar message missing or bad field: {e}") from e
    if not all(math.isfinite(x) and x > 0 for x in (o, h, lo, c)):
        raise ValueError("non-finite or non-positive price")
    if not (math.isfinite(v) and v >= 0):
        raise ValueError("negative or non-finite volume")
    if lo > min(o, c) or h < max(o, c):
        raise ValueError("low/high inconsistent with open/close")
    rec["ts_recv"] = ts_recv
    rec["open"], rec["high"], rec["low"], rec["close"], rec["volume"] = o, h, lo, c, v
    return rec


async def _run(ctx: ComponentContext) -> None:
    log = setup_logging("feed", ctx.var_dir)
    zctx = zmq.asyncio.Context()
    pub = socket(zctx, zmq.PUB, ctx.bus.addr("md"), bind=True)
    status = socket(zctx, zmq.PUSH, ctx.bus.addr("status"))
    b = ctx.broker
    symbol = ctx.cfg.symbol
    topic = symbol.encode()
    counts: dict[str, Any] = {"bars": 0, "malformed": 0, "last_bar_ts": 0, "last_recv_ns": 0}
    counts |= {"stale": False, "data_age_s": 0.0}
    up = CountingEvent()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await asyncio.sleep(0.3)  # let the engine's SUB connect before the first bar (slow joiner)
    hours = MarketHours()
    limit_s = stale_after_s(60.0 / ctx.cfg.sim.speed if b.mode == "sim" else 60.0)
    last_data = time.monotonic()

    async def poll_clock() -> None:
        async with AlpacaREST(b.trading_url, b.key_id, b.secret_key) as rest:
            while True:
                try:
                    hours.update(await rest.clock())
                except (TemporaryError, ValueError) as e:
                    log.warning("clock_unavailable", error=str(e))
                await asyncio.sleep(CLOCK_POLL_S)

    def reconnecting(reason: str) -> None:
        log.warning("market_data_reconnect", reason=reason)

    async def consume() -> None:
        nonlocal last_data
        stream = market_data(
            b.data_stream_url,
            b.key_id,
            b.secret_key,
            [symbol],
            up,
            stale_after_s=limit_s,
            market_open=hours.is_open_now,
            on_reconnect=reconnecting,
        )
        announced = 0  # the connection whose bars are being published
        async for msg in stream:
            last_data = time.monotonic()
            if msg.get("T") != "b" or msg.get("S") != symbol:
                continue
            if up.ups != announced:  # a new connection: its notice goes before its bars
                announced = up.ups
                await pub.send_multipart([FEED_CONNECTED_TOPIC, pack({"connection": announced})])
            ts_recv = time.time_ns()
            try:
                rec = bar_record(msg, ts_recv)
            except ValueError as e:
                counts["malformed"] += 1
                log.error("malformed_bar", error=str(e), message=msg)
                continue
            await pub.send_multipart([topic, rec.tobytes()])
            counts["bars"] += 1
            counts["last_bar_ts"] = int(rec["ts_event"][0])
            counts["last_recv_ns"] = ts_recv

    tasks = [asyncio.create_task(consume()), asyncio.create_task(poll_clock())]
    while not stop.is_set():
        age = time.monotonic() - last_data
        stale = age > limit_s and hours.is_open_now()
        if stale != counts["stale"]:
            log.warning("feed_stale" if stale else "feed_fresh", data_age_s=round(age, 3))
        counts["stale"], counts["data_age_s"] = stale, round(age, 3)
        await pub.send_multipart([FEED_STATE_TOPIC, pack({"stale": stale, "data_age_s": age})])
        await status.send(
            pack(
                {
                    "component": "feed",
                    **counts,
                    "connected": up.is_set(),
                    "reconnects": up.reconnects,
                }
            )
        )
        await wait_for_event(stop, 0.25)
    for task in tasks:
        task.cancel()
    log.info("stopped", **counts)
    zctx.destroy(linger=500)


def run_feed(ctx: ComponentContext) -> None:
    """Process entry point of the feed (stops on SIGTERM)."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_run(ctx))
