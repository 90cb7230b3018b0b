"""Backtest–live parity through the real daemon: ``python -m live run`` as a subprocess
(feed, engine process with the ONNX model, risk gate, execution, audit writer, the
Alpaca-compatible simulator replaying a real SPY day, a real Postgres) trading the
committed artefact ``models/ml_threshold/1``; the order intents in the audit trail must
be the backtester's orders on the same bars, bar for bar, after the same warm-up (the 390
bars before the day, which the engine fetches from the simulator's history)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from live.replay import backtest_orders, order_parity
from tests.conftest import SPY_MINUTE, write_sim_config
from trader import REPO_ROOT
from trader.data import load_minute_bars
from trader.ml import build_dataset, model_signal
from trader.promote import load_artefact
from trader.strategy import WARMUP_BARS

pytestmark = pytest.mark.integration
DAY = "2011-01-04"
LOOSE_RISK = """
max_order_qty = 1000
max_order_notional = 1000000
min_order_value = 1
max_orders_per_minute = 10000
max_position_qty = 10000
max_position_notional = 10000000
max_open_orders = 100
daily_loss_limit = 1000000
max_intraday_drawdown = 1000000
max_orders_per_minute_per_symbol = 10000
max_open_positions = 100
max_gross_exposure = 10000000
max_net_exposure = 10000000
max_concentration = 1.0
price_collar_bps = 10000
max_data_age_s = 3600
"""


def test_daemon_trading_the_ml_artefact_sends_the_backtesters_orders(
    tmp_path: Path, database: str
) -> None:
    models = tmp_path / "models"
    shutil.copytree(REPO_ROOT / "models/ml_threshold/1", models / "ml_threshold/1")
    art = load_artefact(models, "ml_threshold", "1")
    assert art.model_path is not None
    # Loose limits: the replay compresses a day into seconds, so the wall-clock order rate
    # limit of config/risk.toml would deny orders the backtester (no risk gate) places.
    cfg = write_sim_config(
        tmp_path,
        models,
        "ml_threshold",
        "1",
        start=DAY,
        end=DAY,
        speed=6000.0,
        risk_toml=LOOSE_RISK,
    )
    env = {**os.environ, "DATABASE_URL": database, "TRADER_CONTROL_TOKEN": "t"}
    env.pop("APCA_API_KEY_ID", None)
    env.pop("APCA_API_SECRET_KEY", None)
    out = subprocess.run(
        [sys.executable, "-m", "live", "--config-dir", str(cfg), "run"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    with psycopg.connect(database) as c:
        rows = c.execute(
            "SELECT (metadata->>'bar_ts')::bigint, side, qty FROM order_audit_trail "
            "WHERE event_type = 'intent' ORDER BY ts"
        ).fetchall()
        denied = c.execute(
            "SELECT count(*) FROM order_audit_trail WHERE event_type = 'risk_denied'"
        ).fetchone()
        (warm,) = c.execute(
            "SELECT status, metadata FROM order_audit_trail WHERE event_type = 'strategy_warmup'"
        ).fetchall()
    assert denied == (0,)
    # The engine warmed up on the simulator's history: the 390 bars before the day.
    assert (warm[0], warm[1]["bars"], warm[1]["in_session"]) == ("warm", WARMUP_BARS, 0)
    bars = load_minute_bars(SPY_MINUTE, session="regular", end=DAY)
    bars = bars.iloc[-(WARMUP_BARS + (bars.index >= DAY).sum()) :]
    assert warm[1]["first_bar_ts"] == bars.index.as_unit("ns").asi8[0]
    ts = bars.index[WARMUP_BARS:].as_unit("ns").asi8.tolist()
    live = pd.DataFrame(
        [(ts.index(t), t, float(q) * (1 if s == "buy" else -1)) for t, s, q in rows],
        columns=["bar", "ts_event", "qty"],
    )
    signal = model_signal(art.model_path.read_bytes(), build_dataset(bars, horizon=1))
    params = dict(art.manifest["params"])
    expected = backtest_orders(bars, "ml_threshold", params, signal, warmup=WARMUP_BARS)
    parity = order_parity(expected, live, len(ts))
    assert parity["backtest_orders"] >= 5, parity
    assert parity["mismatches"] == 0, (parity, expected, live)
    assert parity["equal"] == parity["backtest_orders"] == parity["live_orders"]
