"""A real ``sim`` session: the daemon as a subprocess (``python -m live run``) with its
processes, ZeroMQ sockets, the Alpaca-compatible simulator replaying real SPY bars, and
a real Postgres; then the kill switch, the audit trail and the positions are checked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest
import requests
import zmq

from live.bus import encode_intent
from live.config import RiskLimits
from tests.conftest import SPY_MINUTE, write_sim_config
from trader import REPO_ROOT
from trader.promote import GateResult, promote

pytestmark = pytest.mark.integration
TOKEN = "test-token"
# The simulator accepts only this pair when it is in its environment (as Alpaca would).
KEY_ID, SECRET = "PKINTEGRATION0001", "sk-integration-secret-5f0c9a"
# Fast-moving parameters so a short replay trades often.
PARAMS = {"fast": 3, "slow": 8, "rsi_window": 5, "rsi_overbought": 90.0, "qty": 10}


@dataclass
class Session:
    proc: subprocess.Popen[str]
    url: str
    dsn: str
    var: Path

    def get(self, path: str) -> Any:
        r = requests.get(self.url + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        r = requests.post(
            self.url + path, json=body, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        r.raise_for_status()
        return r.json()

    def wait(self, predicate: Any, timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"daemon exited: {self.proc.communicate()}"
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    def rows(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn) as c:
            return c.execute(query, params or None).fetchall()  # type: ignore[arg-type]


def cli(s: Session, *args: str) -> Any:
    """Run ``python -m live <args>`` against the session; return its JSON output."""
    out = subprocess.run(
        [sys.executable, "-m", "live", "--config-dir", str(s.var.parent / "config"), *args],
        cwd=REPO_ROOT,
        env={**os.environ, "TRADER_CONTROL_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.fixture
def session(tmp_path: Path, database: str) -> Iterator[Session]:
    models = tmp_path / "models"
    promote(models, "ema_rsi", "t", PARAMS, {}, [GateResult("test", 1, ">=", 0)], [SPY_MINUTE])
    var = tmp_path / "var"
    cfg = write_sim_config(
        tmp_path,
        models,
        "ema_rsi",
        "t",
        start="2011-01-03",
        end="2011-01-14",
        speed=3000.0,
        live_toml="[recovery]\nreconcile_interval_s = 1\n",  # a break found within 1 s
    )
    env = {
        **os.environ,
        "DATABASE_URL": database,
        "TRADER_CONTROL_TOKEN": TOKEN,
        "APCA_API_KEY_ID": KEY_ID,
        "APCA_API_SECRET_KEY": SECRET,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "live", "--config-dir", str(cfg), "run"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url_file = var / "control.url"
    s = Session(proc, "", database, var)
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


def _sim(s: Session) -> tuple[str, dict[str, str]]:
    st = s.get("/status")
    assert st["mode"] == "sim"
    return st["broker_url"], {"APCA-API-KEY-ID": KEY_ID, "APCA-API-SECRET-KEY": SECRET}


def test_sim_session_trades_audits_kills_and_stops_cleanly(session: Session) -> None:
    s = session
    # /ready answers 503 until the first bar has arrived (data fresh), 200 after.
    auth = {"Authorization": f"Bearer {TOKEN}"}
    s.wait(
        lambda: requests.get(s.url + "/ready", headers=auth, timeout=10).status_code == 200,
        60,
        "/ready",
    )
    for method, path in (
        ("GET", "/health"),
        ("GET", "/ready"),
        ("GET", "/metrics"),
        ("GET", "/status"),
        ("GET", "/positions"),
        ("GET", "/orders"),
        ("GET", "/fills"),
        ("GET", "/pnl"),
        ("GET", "/limits"),
        ("POST", "/kill"),
        ("POST", "/resume"),
    ):
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            r = requests.request(method, s.url + path, headers=headers, timeout=10)
            assert r.status_code == 401, (method, path, headers)
    metrics = requests.get(
        s.url + "/metrics", timeout=10, headers={"Authorization": f"Bearer {TOKEN}"}
    ).text
    assert "trader_kill_switch 0.0" in metrics
    assert "trader_bars_total" in metrics
    fills = s.wait(
        lambda: s.get("/status")["components"]["execution"]["fills"] >= 6, 120, "six fills"
    )
    assert fills

    # The engine's view (its status snapshot) follows execution's within a push interval.
    def six_fills() -> list[dict[str, Any]] | None:
        recent = s.get("/fills")
        return recent if len(recent) >= 6 else None

    recent = s.wait(six_fills, 10, "six fills in /fills")
    assert {f["symbol"] for f in recent} == {"SPY"}
    assert len({f["execution_id"] for f in recent}) == len(recent)
    limits = s.get("/limits")
    shipped = tomllib.loads((REPO_ROOT / "config/risk.toml").read_text())
    assert limits == RiskLimits.model_validate(shipped).model_dump(mode="json")
    pnl = s.get("/pnl")
    assert set(pnl) == {"realized_pnl", "unrealized_pnl", "day_pnl"}
    assert all(Decimal(v).is_finite() for v in pnl.values())

    # An intent that did not pass the risk gate, pushed straight to execution's socket.
    sid = s.get("/status")["session_id"]
    forged = encode_intent(
        b"not-the-gate-key",
        seq=999_999,
        ts_event=0,
        ts_recv=0,
        qty=400.0,
        ref_price=127.0,
        side="buy",
        symbol="SPY",
        client_order_id="forged-1",
        session_id=sid,
    )
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.connect(f"ipc://{s.var / 'ipc' / sid[:8] / 'intents'}")
    push.send_multipart(forged)
    push.close(linger=2000)
    ctx.term()
    refused = s.wait(
        lambda: s.rows(
            "SELECT reason FROM order_audit_trail WHERE "
            "event_type = 'rejected' AND status = 'refused'"
        ),
        30,
        "the forged intent refused",
    )
    assert "unapproved" in refused[0][0]
    sim_url, keys = _sim(s)
    r = requests.get(
        f"{sim_url}/v2/orders:by_client_order_id",
        headers=keys,
        timeout=10,
        params={"client_order_id": "forged-1"},
    )
    assert r.status_code == 404  # never reached the broker

    # An order placed at the broker behind the daemon's back (it rests far from the
    # market): the next reconciliation finds the break and halts new orders, audited and
    # persisted, /ready not ready; nothing is cancelled. The operator resumes after
    # looking (the break is then accepted); trading goes on.
    r = requests.post(
        f"{sim_url}/v2/orders",
        headers=keys,
        timeout=10,
        json={
            "symbol": "SPY",
            "qty": "1",
            "side": "buy",
            "type": "limit",
            "limit_price": "1.00",
            "time_in_force": "gtc",
            "client_order_id": "resting-1",
        },
    )
    assert r.status_code == 200, r.text
    _reconciler_halts_on_the_break_until_resumed(s)

    # The kill switch cancels it.
    killed = s.post("/kill", {"reason": "integration test", "by": "pytest", "flatten": True})
    flattened = killed.pop("flattened")
    assert killed == {"halted": True, "broker_open_orders": 0, "confirmed": True}
    # Flatten: one market order closing each position, tracked and audited.
    assert {f["symbol"] for f in flattened} <= {"SPY"}  # the position at the kill, if any
    assert all(f["client_order_id"].startswith("flatten-") for f in flattened)
    s.wait(
        lambda: requests.get(f"{sim_url}/v2/positions", headers=keys, timeout=10).json() == [],
        60,
        "every position closed",
    )
    open_orders = requests.get(
        f"{sim_url}/v2/orders", headers=keys, timeout=10, params={"status": "open"}
    ).json()
    assert open_orders == []
    resting = requests.get(
        f"{sim_url}/v2/orders:by_client_order_id",
        headers=keys,
        timeout=10,
        params={"client_order_id": "resting-1"},
    ).json()
    assert resting["status"] == "canceled"

    # While halted, the strategy keeps wanting to trade: denied, audited, never sent.
    submitted_at_kill = s.get("/status")["components"]["execution"]["submitted"]
    s.wait(
        lambda: s.rows(
            "SELECT 1 FROM order_audit_trail WHERE event_type = 'risk_denied' "
            "AND metadata->>'control' = 'kill_switch'"
        ),
        60,
        "a kill denial",
    )
    assert s.get("/status")["components"]["execution"]["submitted"] == submitted_at_kill
    assert s.get("/status")["kill_switch"] is True

    s.proc.send_signal(signal.SIGINT)
    out, _ = s.proc.communicate(timeout=90)
    assert s.proc.returncode == 0, out
    assert "audit rows written" in out

    (summary,) = s.rows("SELECT summary FROM sessions")[0]
    # The engine's positions equal the broker's.
    engine_pos = {k: Decimal(v) for k, v in summary["positions"].items() if Decimal(v) != 0}
    broker_pos = {k: Decimal(v) for k, v in summary["broker_positions"].items()}
    assert engine_pos == broker_pos
    assert summary["broker_open_orders_at_stop"] == 0

    # Every order sent has its whole story in the audit trail, fills unique by execution.
    orders = s.rows(
        "SELECT client_order_id, array_agg(event_type ORDER BY id) "
        "FROM order_audit_trail WHERE client_order_id LIKE 'ema_rsi-%' "
        "GROUP BY 1"
    )
    # An intent already on its way to execution when the reconciler's halt reached it is
    # refused there, before the wire (execution's own check of the halt).
    refused = [(c, ev) for c, ev in orders if "submitted" not in ev]
    for coid, events in refused:
        assert sorted(events) == ["intent", "rejected", "risk_approved"], (coid, events)
    orders = [(c, ev) for c, ev in orders if "submitted" in ev]
    assert len(orders) + len(flattened) == summary["orders_submitted"]
    assert len(orders) >= 6
    for coid, events in orders:
        for expected in ("intent", "risk_approved", "submitted", "accepted"):
            assert expected in events, (coid, events)
        assert "fill" in events or "canceled" in events, (coid, events)
    fill_rows = s.rows(
        "SELECT execution_id, qty, side FROM order_audit_trail "
        "WHERE event_type IN ('fill', 'partial_fill')"
    )
    assert len(fill_rows) == len({r[0] for r in fill_rows}) == summary["fills"]
    net = sum((q if side == "buy" else -q) for _, q, side in fill_rows)
    assert Decimal(summary["positions"].get("SPY", "0")) == net
    # The forged intent never reached the broker.
    assert not s.rows("SELECT 1 FROM order_audit_trail WHERE client_order_id = 'forged-1'")
    assert summary["orders_submitted"] == len(orders) + len(flattened)
    assert engine_pos == {}  # flattened
    flatten_rows = s.rows(
        "SELECT client_order_id, array_agg(event_type ORDER BY id) FROM order_audit_trail "
        "WHERE client_order_id LIKE 'flatten-%' GROUP BY 1"
    )
    assert len(flatten_rows) == len(flattened)
    for coid, events in flatten_rows:
        # the stream's fill may be stored before the POST's answer (accepted): both happen
        assert events[:2] == ["flatten", "submitted"], (coid, events)
        assert "accepted" in events, (coid, events)
        assert "fill" in events, (coid, events)
    kills = s.rows("SELECT reason, metadata FROM order_audit_trail WHERE event_type = 'kill'")
    assert kills == [("integration test", {"by": "pytest", "flatten": True})]
    # Microsecond UTC timestamps.
    (ts,) = s.rows("SELECT ts FROM order_audit_trail ORDER BY id LIMIT 1")[0]
    assert ts.tzinfo is not None

    # Secrets never reach the logs, the audit trail or the session summary.
    logs = "".join(p.read_text() for p in (s.var / "log").glob("*.log"))
    assert "risk_denied" in logs  # the logs were written and read
    stored = json.dumps(s.rows("SELECT row_to_json(a) FROM order_audit_trail a")) + json.dumps(
        summary
    )
    for secret in (SECRET, KEY_ID, TOKEN):
        assert secret not in logs
        assert secret not in stored
        assert secret not in out

    # The kill switch survives a restart: it is persisted in risk_state.
    (state,) = s.rows("SELECT value FROM risk_state WHERE key = 'kill_switch'")[0]
    assert state["engaged"] is True
    assert (state["by"], state["reason"], state["flatten"]) == ("pytest", "integration test", True)
    assert json.dumps(state)  # serialisable as stored
    # So does the day's P&L baseline, with the XNYS session it belongs to (09:30 New York).
    (day,) = s.rows("SELECT value FROM risk_state WHERE key = 'day_pnl'")[0]
    opened = pd.Timestamp(day["open_ns"], tz="UTC").tz_convert("America/New_York")
    assert (opened.strftime("%Y-%m-%d"), opened.strftime("%H:%M")) == (day["session"], "09:30")
    assert "2011-01-03" <= day["session"] <= "2011-01-14"


def _reconciler_halts_on_the_break_until_resumed(s: Session) -> None:
    """``resting-1`` is at the broker with no local row: the in-session reconciliation
    halts new orders (``by="reconciler"``) until ``python -m live resume``."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    s.wait(lambda: s.get("/status")["halted_by"] == "halt", 30, "the reconciler's halt")
    ((reason, meta),) = s.wait(
        lambda: s.rows("SELECT reason, metadata FROM order_audit_trail WHERE event_type = 'halt'"),
        10,
        "the halt audited",
    )
    assert meta == {"by": "reconciler"}
    assert "order_unknown" in reason
    assert "resting-1" in reason
    breaks = s.rows(
        "SELECT status FROM order_audit_trail WHERE event_type = 'reconciliation_break'"
        " AND client_order_id = 'resting-1'"
    )
    assert breaks
    assert {b[0] for b in breaks} == {"order_unknown"}
    (state,) = s.rows("SELECT value FROM risk_state WHERE key = 'halt'")[0]
    assert (state["engaged"], state["by"]) == (True, "reconciler")
    ready = requests.get(s.url + "/ready", headers=auth, timeout=10)
    assert ready.status_code == 503
    assert ready.json()["checks"]["reconciled"] is False
    assert "resting-1" in {
        b["client_order_id"] for b in s.get("/status")["reconciliation"]["breaks"]
    }

    # The next intent is refused; the resting order is not cancelled.
    def execution() -> dict[str, Any]:
        ex: dict[str, Any] = s.get("/status")["components"]["execution"]
        return ex

    s.wait(lambda: execution()["halted_by"] == "halt", 10, "execution halted")
    submitted = execution()["submitted"]
    s.wait(
        lambda: s.rows(
            "SELECT 1 FROM order_audit_trail WHERE event_type = 'risk_denied'"
            " AND metadata->>'control' = 'halt'"
        ),
        60,
        "an intent refused under the halt",
    )
    assert execution()["submitted"] == submitted
    sim_url, keys = _sim(s)
    open_ids = {
        o["client_order_id"]
        for o in requests.get(
            f"{sim_url}/v2/orders", headers=keys, timeout=10, params={"status": "open"}
        ).json()
    }
    assert "resting-1" in open_ids

    # Resumed: audited, the break accepted, orders again; found again, it does not halt.
    assert cli(s, "resume", "--by", "pytest") == {"halted": False}
    s.wait(lambda: execution()["submitted"] > submitted, 60, "orders after resume")
    assert s.rows("SELECT metadata FROM order_audit_trail WHERE event_type = 'resume'") == [
        ({"by": "pytest"},)
    ]
    accepted = s.rows(
        "SELECT reason, metadata->>'by' FROM order_audit_trail"
        " WHERE event_type = 'reconciled' AND status = 'accepted' ORDER BY id"
    )
    assert accepted[0] == ("1 break(s) accepted by the operator", "pytest (resume)")
    s.wait(
        lambda: (
            len(
                s.rows(
                    "SELECT 1 FROM order_audit_trail"
                    " WHERE event_type = 'reconciled' AND status = 'accepted'"
                )
            )
            >= 3
        ),
        30,
        "reconciliations after resume",
    )
    assert s.get("/status")["halted"] is False
    assert len(s.rows("SELECT 1 FROM order_audit_trail WHERE event_type = 'halt'")) == 1
    assert requests.get(s.url + "/ready", headers=auth, timeout=10).json()["checks"]["reconciled"]
