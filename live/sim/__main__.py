"""``python -m live.sim``: run the simulator until SIGINT/SIGTERM.

Prints one line with its URL once it is listening, e.g.
``live.sim: SPY 2011-01-03..2011-01-31 x200 listening on http://127.0.0.1:8765``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

from pydantic import ValidationError

from live.sim.config import SimConfig
from live.sim.server import SimServer
from trader.exceptions import ConfigurationError


def parse_args(argv: list[str] | None = None) -> tuple[SimConfig, str, int]:
    """Parse the command line into a validated config, host and port.

    Exits with status 2 and the validation message on a bad option.
    """
    p = argparse.ArgumentParser(
        prog="python -m live.sim", description="Run the Alpaca-compatible simulator."
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--data", type=Path, help="1-minute bar CSV (default: the SPY January 2011)")
    p.add_argument("--symbol")
    p.add_argument("--start", type=date.fromisoformat, help="first New York date, YYYY-MM-DD")
    p.add_argument("--end", type=date.fromisoformat, help="last New York date (inclusive)")
    p.add_argument("--speed", type=float, help="market seconds per wall second")
    p.add_argument("--cash", type=Decimal, help="initial cash, USD")
    p.add_argument("--position-qty", type=Decimal, help="signed shares held at the start")
    p.add_argument("--cost-basis", type=Decimal, help="signed USD paid for those shares")
    p.add_argument("--autostart", action="store_true", help="replay without waiting for bars")
    p.add_argument("--fault-latency", type=float, help="seconds added to every REST request")
    p.add_argument("--fault-5xx", type=float, help="share of REST requests refused with 503")
    p.add_argument("--fault-lost", type=float, help="share of REST responses lost after work")
    p.add_argument("--fault-429", type=float, help="share of REST requests refused with 429")
    p.add_argument("--rate-limit", type=int, help="refuse requests past N per minute (429)")
    p.add_argument("--fault-ws-drop", type=float, help="close every websocket every N s")
    p.add_argument("--fault-stall", type=float, help="data connections go silent after N s")
    p.add_argument("--fault-seed", type=int, help="seed of the fault draws")
    a = p.parse_args(argv)
    given = {
        "data_path": a.data,
        "symbol": a.symbol,
        "start": a.start,
        "end": a.end,
        "speed": a.speed,
        "initial_cash": a.cash,
        "initial_position_qty": a.position_qty,
        "initial_cost_basis": a.cost_basis,
        "autostart": a.autostart or None,
        "fault_latency_s": a.fault_latency,
        "fault_5xx_rate": a.fault_5xx,
        "fault_lost_response_rate": a.fault_lost,
        "fault_429_rate": a.fault_429,
        "rate_limit": a.rate_limit,
        "fault_ws_drop_s": a.fault_ws_drop,
        "fault_stall_s": a.fault_stall,
        "fault_seed": a.fault_seed,
    }
    try:
        config = SimConfig(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as e:
        p.error(str(e))
    return config, a.host, a.port


async def serve(config: SimConfig, host: str, port: int) -> None:
    """Run a :class:`SimServer` until SIGINT or SIGTERM."""
    server = SimServer(config)
    await server.start(host, port)
    print(
        f"live.sim: {config.symbol} {config.start}..{config.end} x{config.speed:g} "
        f"listening on {server.url}",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m live.sim``."""
    config, host, port = parse_args(argv)
    try:
        asyncio.run(serve(config, host, port))
    except ConfigurationError as e:
        print(f"live.sim: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
