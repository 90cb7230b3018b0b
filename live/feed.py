"""The feed process: the daemon's one market-data websocket, republished on ZeroMQ.

It subscribes to bars of the configured symbol on Alpaca's market-data v2 stream (or
the simulator's), validates each bar, stamps ``ts_recv`` and publishes it on the ``md``
socket as raw :data:`~trader.data.BAR_DTYPE` bytes under the symbol as topic. A
malformed bar is logged with its content and counted, never forwarded.
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
from live.alpaca import market_data
from live.bus import pack, socket
from live.context import ComponentContext
from live.logs import setup_logging
from live.supervise import die_with_parent
from trader.data import BAR_DTYPE


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
    counts = {"bars": 0, "malformed": 0, "last_bar_ts": 0, "last_recv_ns": 0}
    up = CountingEvent()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await asyncio.sleep(0.3)  # let the engine's SUB connect before the first bar (slow joiner)

    async def consume() -> None:
        async for msg in market_data(b.data_stream_url, b.key_id, b.secret_key, [symbol], up):
            if msg.get("T") != "b" or msg.get("S") != symbol:
                continue
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

    task = asyncio.create_task(consume())
    while not stop.is_set():
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
    task.cancel()
    log.info("stopped", **counts)
    zctx.destroy(linger=500)


def run_feed(ctx: ComponentContext) -> None:
    """Process entry point of the feed (stops on SIGTERM)."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_run(ctx))
