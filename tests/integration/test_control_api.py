"""The control API on a real ``sim`` session: readiness checks, risk utilisation, P&L
history, latency histograms, halt (new orders stop, open ones keep working) and resume
through the CLI, and log lines that follow an order from tick to fill."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.daemon import TOKEN, Session, broker, cli, resting_order

pytestmark = pytest.mark.integration

ENDPOINTS = (
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("GET", "/status"),
    ("GET", "/positions"),
    ("GET", "/orders"),
    ("GET", "/fills"),
    ("GET", "/pnl"),
    ("GET", "/pnl/history"),
    ("GET", "/limits"),
    ("PUT", "/limits"),
    ("GET", "/risk"),
    ("POST", "/kill"),
    ("POST", "/halt"),
    ("POST", "/resume"),
)


@pytest.fixture(scope="module")
def session(control_session: Session) -> Session:
    """The shared daemon, trading (an earlier module may have halted or killed it)."""
    control_session.post("/resume", {"by": "pytest"})
    return control_session


def metrics(s: Session) -> dict[str, float]:
    r = requests.get(s.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    r.raise_for_status()
    return {
        f"{x.name}{json.dumps(x.labels, sort_keys=True) if x.labels else ''}": x.value
        for f in text_string_to_metric_families(r.text)
        for x in f.samples
    }


def test_every_endpoint_refuses_a_missing_or_wrong_token(session: Session) -> None:
    for method, path in ENDPOINTS:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            r = requests.request(method, session.url + path, headers=headers, timeout=10)
            assert r.status_code == 401, (method, path, headers)
    assert session.get("/status")["kill_switch"] is False  # none of them acted


def test_ready_reports_each_check(session: Session) -> None:
    s = session
    auth = {"Authorization": f"Bearer {TOKEN}"}
    doc = s.wait(
        lambda: (
            (r := requests.get(s.url + "/ready", headers=auth, timeout=10)).status_code == 200
            and r.json()
        ),
        60,
        "/ready",
    )
    checks = doc["checks"]
    assert checks["components"] is True
    assert checks["feed_connected"] is True
    assert checks["data_fresh"] is True
    assert checks["database"] is True
    # The start-up reconciliation ran before execution started, and agreed.
    assert checks["reconciled"] is True
    assert doc["unknown"] == []
    assert s.get("/status")["reconciliation"]["reconciled"] is True


def test_risk_pnl_history_and_latency_histograms(session: Session) -> None:
    s = session
    s.wait(lambda: len(s.get("/fills")) >= 3, 90, "three fills")
    risk = s.get("/risk")["limits"]
    limits = s.get("/limits")
    numeric = {k for k, v in limits.items() if isinstance(v, int | float)}
    assert numeric <= set(risk)
    assert "var.max_var" in risk  # a section's limit
    for name, v in risk.items():
        section, _, key = name.rpartition(".")
        assert Decimal(v["limit"]) == Decimal(str(limits[section][key] if section else limits[key]))
        if v["value"] is not None:
            assert v["utilisation"] == pytest.approx(
                float(Decimal(v["value"]) / Decimal(v["limit"])), abs=1e-4
            )
    assert risk["max_order_qty"]["utilisation"] is None  # a per-order limit
    assert Decimal(risk["max_position_qty"]["value"]) >= 0
    assert Decimal(risk["daily_loss_limit"]["value"]) >= 0

    history = s.get("/pnl/history")
    assert history, "no P&L point recorded"
    assert {"ts", "bar_ts", "realized_pnl", "unrealized_pnl", "day_pnl"} <= set(history[0])
    bar_ts = [p["bar_ts"] for p in history]
    assert bar_ts == sorted(bar_ts)
    assert all(Decimal(p["realized_pnl"]).is_finite() for p in history)

    m = metrics(s)
    for name in (
        "trader_tick_to_intent_seconds",
        "trader_risk_gate_seconds",
        "trader_model_inference_seconds",
        "trader_intent_to_accepted_seconds",
        "trader_accepted_to_filled_seconds",
    ):
        assert m[f"{name}_count"] >= 1, name
        assert m[f'{name}_bucket{{"le": "+Inf"}}'] == m[f"{name}_count"], name
        assert m[f"{name}_sum"] > 0, name
    # Every bar runs the strategy; every order decision runs the risk gate.
    assert m["trader_model_inference_seconds_count"] >= m["trader_risk_gate_seconds_count"]
    assert m["trader_feed_connected"] == 1.0
    assert m["trader_orders_filled_total"] >= 1


def test_halt_stops_new_orders_and_leaves_open_ones_then_resume(session: Session) -> None:
    s = session
    resting_order(s, "resting-halt")
    halted = cli(s, "halt", "--reason", "pytest halt", "--by", "pytest")
    assert halted["halted"] is True
    assert halted["halted_by"] == "halt"
    s.wait(
        lambda: s.get("/status")["components"]["execution"]["halted_by"] == "halt",
        10,
        "execution halted",
    )
    submitted = s.get("/status")["components"]["execution"]["submitted"]
    s.wait(
        lambda: s.rows(
            "SELECT 1 FROM order_audit_trail WHERE event_type = 'risk_denied' "
            "AND metadata->>'control' = 'halt'"
        ),
        60,
        "a halt denial",
    )
    status = s.get("/status")
    assert status["components"]["execution"]["submitted"] == submitted
    assert (status["halted"], status["halted_by"], status["kill_switch"]) == (True, "halt", False)
    # Unlike the kill switch, a halt cancels nothing.
    open_ids = {o["client_order_id"] for o in broker(s, "GET", "/v2/orders")}
    assert "resting-halt" in open_ids
    m = s.wait(
        lambda: (m := metrics(s)).get('trader_risk_denials_total{"control": "halt"}') and m,
        10,
        "the halt denial counted",
    )
    assert (m["trader_halted"], m["trader_kill_switch"]) == (1.0, 0.0)
    (row,) = s.rows("SELECT reason, metadata FROM order_audit_trail WHERE event_type = 'halt'")
    assert row == ("pytest halt", {"by": "pytest"})
    (state,) = s.rows("SELECT value FROM risk_state WHERE key = 'halt'")[0]
    assert state["engaged"] is True

    utilisation = cli(s, "limits")
    assert utilisation["halted_by"] == "halt"
    assert set(utilisation["limits"]) == set(s.get("/risk")["limits"])

    assert cli(s, "resume", "--by", "pytest") == {"halted": False}
    s.wait(
        lambda: s.get("/status")["components"]["execution"]["submitted"] > submitted,
        60,
        "orders flowing again after resume",
    )
    (state,) = s.rows("SELECT value FROM risk_state WHERE key = 'halt'")[0]
    assert state["engaged"] is False


def test_put_limits_validates_applies_and_audits(session: Session) -> None:
    s = session
    auth = {"Authorization": f"Bearer {TOKEN}"}
    before = s.get("/limits")
    for body, needle in (
        ({"limits": {"max_position_qty": -5}}, "max_position_qty"),
        ({"limits": {"no_such_limit": 1}}, "no_such_limit"),
        ({"max_position_qty": 5}, "body must be"),
    ):
        r = requests.put(s.url + "/limits", json=body, headers=auth, timeout=10)
        assert r.status_code == 400, (body, r.text)
        assert needle in r.json()["error"]
    assert s.get("/limits") == before  # a refused change changes nothing

    new = int(before["max_position_qty"]) - 100
    result = cli(s, "limits", "--set", f"max_position_qty={new}", "--by", "pytest")
    assert int(result["max_position_qty"]) == new
    assert int(s.get("/limits")["max_position_qty"]) == new
    assert Decimal(s.get("/risk")["limits"]["max_position_qty"]["limit"]) == new
    audited = s.wait(
        lambda: s.rows("SELECT metadata FROM order_audit_trail WHERE event_type = 'risk_limits'"),
        10,
        "the limit change audited",
    )
    assert audited[-1][0]["by"] == "pytest"
    assert int(audited[-1][0]["limits"]["max_position_qty"]) == new
    restored = requests.put(
        s.url + "/limits",
        json={"limits": {"max_position_qty": before["max_position_qty"]}, "by": "pytest"},
        headers=auth,
        timeout=10,
    )
    assert restored.status_code == 200
    assert s.get("/limits") == before


def test_logs_follow_an_order_from_tick_to_fill(session: Session) -> None:
    s = session
    fill = s.wait(lambda: s.get("/fills"), 60, "a fill")[0]
    coid = fill["client_order_id"]

    def lines(component: str) -> list[dict[str, Any]]:
        path: Path = s.var / "log" / f"{component}.log"
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    (intent,) = [e for e in lines("engine") if e.get("client_order_id") == coid]
    assert intent["event"] == "intent"
    cid = intent["correlation_id"]
    assert cid
    events = [e["event"] for e in lines("execution") if e.get("correlation_id") == cid]
    assert "accepted" in events
    assert "fill" in events or "partial_fill" in events
    for e in lines("execution"):
        assert {"ts", "level", "component", "event"} <= set(e)
