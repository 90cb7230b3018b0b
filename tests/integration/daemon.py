"""A real ``sim`` daemon as a subprocess for the control-API and browser tests: the
simulator replays real SPY bars, the database is a fresh one on the test server."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from tests.conftest import SPY_MINUTE, fresh_database, write_sim_config
from tests.integration.test_live_session import KEY_ID, PARAMS, SECRET, TOKEN, Session, cli
from trader import REPO_ROOT
from trader.promote import GateResult, promote

__all__ = [
    "KEY_ID",
    "SECRET",
    "TOKEN",
    "Session",
    "broker",
    "cli",
    "resting_order",
    "run_daemon",
]


@contextlib.contextmanager
def run_daemon(
    root: Path, server_dsn: str, end: str, speed: float, live_toml: str = ""
) -> Iterator[Session]:
    """Start ``python -m live run`` in ``sim`` mode on the SPY bars of 2011-01-03 to
    ``end`` at ``speed`` market seconds per wall second (config under ``root/config``,
    run-time folder ``root/var``, ``live_toml`` appended to ``live.toml``); yield the
    session once its control API answers; stop it with SIGINT."""
    models = root / "models"
    promote(models, "ema_rsi", "t", PARAMS, {}, [GateResult("test", 1, ">=", 0)], [SPY_MINUTE])
    var = root / "var"
    cfg = write_sim_config(
        root, models, "ema_rsi", "t", start="2011-01-03", end=end, speed=speed, live_toml=live_toml
    )
    with fresh_database(server_dsn) as dsn:
        env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "TRADER_CONTROL_TOKEN": TOKEN,
            "APCA_API_KEY_ID": KEY_ID,
            "APCA_API_SECRET_KEY": SECRET,
        }
        out = open(root / "daemon.out", "w")  # noqa: SIM115 (closed below)
        proc = subprocess.Popen(
            [sys.executable, "-m", "live", "--config-dir", str(cfg), "run"],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
        url_file = var / "control.url"
        s = Session(proc, "", dsn, var)
        try:
            s.url = s.wait(lambda: url_file.exists() and url_file.read_text(), 120, "control API")
            yield s
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            out.close()


def broker(s: Session, method: str, path: str, **kwargs: Any) -> Any:
    """Call the session's simulated Alpaca broker directly (``/v2/...``)."""
    url = s.get("/status")["broker_url"]
    r = requests.request(
        method,
        url + path,
        headers={"APCA-API-KEY-ID": KEY_ID, "APCA-API-SECRET-KEY": SECRET},
        timeout=10,
        **kwargs,
    )
    assert r.status_code == 200, r.text
    return r.json()


def resting_order(s: Session, client_order_id: str) -> dict[str, Any]:
    """Place a buy limit order far below the market at the broker (it stays open)."""
    order: dict[str, Any] = broker(
        s,
        "POST",
        "/v2/orders",
        json={
            "symbol": "SPY",
            "qty": "1",
            "side": "buy",
            "type": "limit",
            "limit_price": "1.00",
            "time_in_force": "gtc",
            "client_order_id": client_order_id,
        },
    )
    return order
