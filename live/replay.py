"""Backtest–live parity: replay real bars through the live engine and compare its orders
with the backtester's.

:func:`replay_engine` builds the real :class:`live.engine.Engine` of a promoted artefact
(the artefact check, the model's streaming features and ONNX session, the step kernel,
the risk gate, the intent signing and the pending/position bookkeeping), feeds it the
bars' wire bytes one by one, collects the signed intents it pushes on its ZeroMQ socket
and fills each intent at the next bar's open (the backtester's fill assumption) through
the engine's own fill handler. Only the feed and the broker are replaced, by this loop.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zmq

from live.bus import Bus, decode_intent, pack, socket
from live.config import LiveConfig, RiskLimits
from live.context import ComponentContext
from live.engine import Engine
from live.logs import close_logging
from trader.backtest import run_backtest
from trader.data import BAR_STRUCT, to_bar_array

ORDER_COLUMNS = ["bar", "ts_event", "qty"]
RECV_TIMEOUT_MS = 5000


def replay_engine(
    bars: pd.DataFrame,
    models_dir: Path,
    strategy: str,
    version: str,
    risk: RiskLimits,
    *,
    symbol: str = "SPY",
) -> pd.DataFrame:
    """Run the live engine over ``bars`` and return the orders it sent.

    Parameters
    ----------
    bars : DataFrame
        Validated OHLCV bars.
    models_dir : Path
        Root of the promoted artefacts.
    strategy, version : str
        The artefact to load (verified as the daemon would).
    risk : RiskLimits
        The gate's limits (a denial shows up as a missing order).
    symbol : str

    Returns
    -------
    DataFrame
        One row per intent: ``bar`` (index of the bar whose close decided it),
        ``ts_event`` (that bar's start, ns UTC) and ``qty`` (signed shares).

    Raises
    ------
    ArtefactError
        The artefact is missing, failing or altered.
    """
    rec = to_bar_array(bars)
    with tempfile.TemporaryDirectory(prefix="replay-") as tmp:
        cfg = LiveConfig(
            strategy=strategy,
            strategy_version=version,
            symbol=symbol,
            engine_core=-1,
            models_dir=models_dir,
            var_dir=Path(tmp),
            risk=risk,
        )
        bus = Bus(Path(tmp))
        ctx = ComponentContext.offline("replay", cfg, bus)
        zctx: zmq.Context[Any] = zmq.Context()
        try:
            intents = socket(zctx, zmq.PULL, bus.addr("intents"), bind=True)
            sinks = [socket(zctx, zmq.PULL, bus.addr(n), bind=True) for n in ("audit", "status")]
            eng = Engine(ctx, zctx)
            # no broker here: an unlimited account, and bars stamped as just received, so
            # the gate's buying-power, concentration and stale-data controls stay neutral
            eng.gate.set_account(math.inf, math.inf)
            orders = []
            open_orders: list[tuple[str, float]] = []
            for i in range(len(rec)):
                r = rec[i]
                for coid, qty in open_orders:  # fill at this bar's open
                    eng.on_exec_event(
                        pack(
                            {
                                "event": "fill",
                                "client_order_id": coid,
                                "symbol": symbol,
                                "qty": repr(qty),
                                "price": repr(float(r["open"])),
                                "execution_id": f"{coid}-x",
                                "status": "filled",
                            }
                        )
                    )
                open_orders.clear()
                sent = eng.counts["intents"]
                bar = (
                    int(r["ts_event"]),
                    time.time_ns(),
                    r["open"],
                    r["high"],
                    r["low"],
                    r["close"],
                )
                eng.on_bar(BAR_STRUCT.pack(*bar, r["volume"]))
                for _ in range(eng.counts["intents"] - sent):  # wait for what was sent
                    if not intents.poll(RECV_TIMEOUT_MS):
                        raise RuntimeError(f"replay: the intent of bar {i} never arrived")
                    it = decode_intent(ctx.approval_key, intents.recv_multipart())
                    qty = float(it["qty"]) * (1.0 if it["side"] == "buy" else -1.0)
                    orders.append((i, int(r["ts_event"]), qty))
                    open_orders.append((it["client_order_id"], qty))
                for s in sinks:
                    while s.poll(0):
                        s.recv()
        finally:
            zctx.destroy(linger=0)
            close_logging()
    return pd.DataFrame(orders, columns=ORDER_COLUMNS)


def backtest_orders(
    bars: pd.DataFrame,
    strategy: str,
    params: dict[str, Any],
    signal: np.ndarray | None,
    warmup: int = 0,
) -> pd.DataFrame:
    """The backtester's orders in :func:`replay_engine`'s form (``bar`` = the deciding
    bar, one before the fill, counted after the ``warmup`` leading bars that only warm
    the strategy up, as the live engine's history does; an order decided on the last bar
    never fills and is not listed)."""
    fills = run_backtest(bars, strategy, params, signal=signal, warmup=warmup).fills
    bar = fills["bar"].to_numpy() - 1
    ts = to_bar_array(bars.iloc[warmup:])["ts_event"][bar]
    return pd.DataFrame({"bar": bar, "ts_event": ts, "qty": fills["qty"].to_numpy()})


def order_parity(backtest: pd.DataFrame, live: pd.DataFrame, n_bars: int) -> dict[str, int]:
    """Compare two order lists (orders decided on the last bar are left out: the
    backtester cannot fill them).

    Returns
    -------
    dict
        ``backtest_orders``, ``live_orders``, ``equal`` (same bar, same signed
        quantity) and ``mismatches`` (orders in only one of the two lists).
    """
    live = live[live["bar"] < n_bars - 1]
    a = set(zip(backtest["bar"].tolist(), backtest["qty"].tolist(), strict=True))
    b = set(zip(live["bar"].tolist(), live["qty"].tolist(), strict=True))
    return {
        "backtest_orders": len(backtest),
        "live_orders": len(live),
        "equal": len(a & b),
        "mismatches": len(a ^ b),
    }
