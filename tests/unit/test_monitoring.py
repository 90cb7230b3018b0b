"""The monitoring bundle (monitoring/): Prometheus scrape config, alert rules and the
Grafana dashboard reference only metrics the control API really exposes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from live.config import LiveConfig
from live.metrics import BUCKETS, HISTOGRAMS, LatencyRecorder, StatusCollector
from trader import REPO_ROOT

MON = REPO_ROOT / "monitoring"
METRIC_RE = re.compile(r"\btrader_[A-Za-z0-9_:]+")
DURATION_RE = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
SEVERITIES = {"critical", "warning", "info"}

NOW_NS = 1_700_000_000_000_000_000
# Latencies recorded by the real recorders, in ns: engine and execution.
ENGINE_LATENCY = LatencyRecorder("tick_to_intent", "risk_gate", "model_inference")
for _ns in (180_000, 300_000, 450_000, 3_000_000):
    ENGINE_LATENCY.observe_ns("tick_to_intent", _ns)
    ENGINE_LATENCY.observe_ns("risk_gate", _ns // 100)
    ENGINE_LATENCY.observe_ns("model_inference", _ns // 50)
EXEC_LATENCY = LatencyRecorder("intent_to_accepted", "accepted_to_filled")
EXEC_LATENCY.observe_ns("intent_to_accepted", 12_000_000)
EXEC_LATENCY.observe_ns("accepted_to_filled", 700_000_000)

# A status dict shaped like the components' snapshots (live/engine.py push_status,
# live/execution.py, live/feed.py, live/audit.py), with every counter non-zero.
STATUS: dict[str, dict[str, Any]] = {
    "feed": {
        "component": "feed",
        "bars": 120,
        "malformed": 1,
        "last_bar_ts": 0,
        "last_recv_ns": NOW_NS - 2_500_000_000,
        "connected": True,
        "reconnects": 2,
    },
    "engine": {
        "component": "engine",
        "halted": True,
        "bars": 120,
        "intents": 7,
        "denied": 3,
        "fills": 6,
        "positions": {
            "SPY": {
                "qty": "100",
                "avg_price": "127.04",
                "last_price": "127.51",
                "realized_pnl": "12.50",
                "unrealized_pnl": "47.00",
            }
        },
        "realized_pnl": "12.50",
        "unrealized_pnl": "47.00",
        "day_pnl": "-59.50",
        "pending": {"ema_rsi-1": "10"},
        "denied_by_control": {"kill_switch": 2, "max_position_qty": 1},
        "circuit_breaker": {"state": "open", "reason": "3 losses", "trips": 2},
        "latency": ENGINE_LATENCY.snapshot(),
    },
    "execution": {
        "component": "execution",
        "halted": True,
        "submitted": 7,
        "accepted": 6,
        "fills": 6,
        "filled": 5,
        "rejected": 1,
        "refused": 2,
        "reconnects": 1,
        "stream_connected": True,
        "open_orders": [{"client_order_id": "ema_rsi-1"}],
        "latency": EXEC_LATENCY.snapshot(),
    },
    "audit": {"component": "audit", "written": 40, "spooled": 5, "spool_pending": False},
}


@pytest.fixture(scope="module")
def exposition() -> dict[str, float]:
    """Sample name -> value, as scraped from ``/metrics`` of a halted daemon."""
    registry = CollectorRegistry()
    daemon = SimpleNamespace(status=STATUS, halted=True, kill_engaged=True, wall_ns=lambda: NOW_NS)
    registry.register(StatusCollector(daemon))  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}


@pytest.fixture(scope="module")
def exposed(exposition: dict[str, float]) -> set[str]:
    return set(exposition)


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((MON / "alerts.yml").read_text())
    assert isinstance(doc, dict)
    assert doc.get("groups"), "alerts.yml has no groups"
    out = []
    for g in doc["groups"]:
        assert g.get("name"), f"group without a name: {g}"
        assert g.get("rules"), f"group {g['name']} has no rules"
        out.extend(g["rules"])
    return out


@pytest.fixture(scope="module")
def prom() -> dict[str, Any]:
    doc = yaml.safe_load((MON / "prometheus.yml").read_text())
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads((MON / "grafana-dashboard.json").read_text())


def referenced(expr: str) -> set[str]:
    return set(METRIC_RE.findall(expr))


def panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in (collapsed) rows."""
    out = []
    for p in dash.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def dashboard_exprs(dash: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(dash) for t in p.get("targets", [])]


# --- the exposition the checks below compare against ----------------------------------


def test_exposition_is_realistic(exposition: dict[str, float]) -> None:
    """The fake daemon drives every metric, so a missing sample is a real rename."""
    assert exposition["trader_kill_switch"] == 1.0
    assert exposition["trader_position_shares"] == 100.0
    assert exposition["trader_day_pnl_usd"] == -59.5
    assert exposition["trader_bars_total"] == 120.0
    assert exposition["trader_audit_events_spooled_total"] == 5.0
    assert exposition["trader_exposure_usd"] == 100 * 127.51
    assert exposition["trader_feed_lag_seconds"] == 2.5
    assert exposition["trader_feed_reconnects_total"] == 2.0
    assert exposition["trader_orders_filled_total"] == 5.0
    assert exposition["trader_circuit_breaker_trips_total"] == 2.0


def test_histograms_carry_the_recorded_latencies(exposition: dict[str, float]) -> None:
    """Bucket counts and sums survive the trip process -> status snapshot -> /metrics."""
    for key, (name, _) in HISTOGRAMS.items():
        assert f"{name}_count" in exposition, key
    assert exposition["trader_tick_to_intent_seconds_count"] == 4
    assert exposition["trader_tick_to_intent_seconds_sum"] == pytest.approx(3.93e-3)
    assert exposition["trader_accepted_to_filled_seconds_sum"] == pytest.approx(0.7)


def test_histogram_buckets_are_cumulative_per_le() -> None:
    registry = CollectorRegistry()
    daemon = SimpleNamespace(status=STATUS, halted=False, kill_engaged=False, wall_ns=lambda: 0)
    registry.register(StatusCollector(daemon))  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    (fam,) = [
        f for f in text_string_to_metric_families(text) if f.name == "trader_tick_to_intent_seconds"
    ]
    buckets = {float(s.labels["le"]): s.value for s in fam.samples if s.name.endswith("_bucket")}
    assert sorted(buckets) == [*BUCKETS, float("inf")]
    # 180 us, 300 us, 450 us and 3 ms: cumulative counts at the bounds around them
    assert buckets[100e-6] == 0
    assert buckets[250e-6] == 1
    assert buckets[500e-6] == 3
    assert buckets[2.5e-3] == 3
    assert buckets[5e-3] == buckets[float("inf")] == 4


def test_risk_denials_are_labelled_by_control() -> None:
    registry = CollectorRegistry()
    daemon = SimpleNamespace(status=STATUS, halted=True, kill_engaged=True, wall_ns=lambda: 0)
    registry.register(StatusCollector(daemon))  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    (fam,) = [f for f in text_string_to_metric_families(text) if f.name == "trader_risk_denials"]
    assert {s.labels["control"]: s.value for s in fam.samples if s.name.endswith("_total")} == {
        "kill_switch": 2.0,
        "max_position_qty": 1.0,
    }


def test_metric_name_extraction() -> None:
    assert referenced('up{job="trader"} == 0') == set()
    assert referenced("rate(trader_bogus_total[5m]) / trader_x_us > 1") == {
        "trader_bogus_total",
        "trader_x_us",
    }


# --- alerts.yml ------------------------------------------------------------------------


def test_rule_structure(rules: list[dict[str, Any]]) -> None:
    names = [r.get("alert") for r in rules]
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    for r in rules:
        name = r.get("alert")
        assert isinstance(name, str), f"rule without an alert name: {r}"
        assert name, f"rule with an empty alert name: {r}"
        assert isinstance(r.get("expr"), str), f"{name}: no expr"
        assert r["expr"].strip(), f"{name}: empty expr"
        assert DURATION_RE.match(str(r.get("for", ""))), f"{name}: bad or missing 'for'"
        assert r.get("labels", {}).get("severity") in SEVERITIES, name
        ann = r.get("annotations", {})
        assert ann.get("summary"), f"{name}: no annotations.summary"
        assert ann.get("description"), f"{name}: no annotations.description"
        expr = r["expr"]
        assert expr.count("(") == expr.count(")"), f"{name}: unbalanced ()"
        assert expr.count("[") == expr.count("]"), f"{name}: unbalanced []"
        assert expr.count("{") == expr.count("}"), f"{name}: unbalanced {{}}"
        for window in re.findall(r"\[([^\]]*)\]", expr):
            assert DURATION_RE.match(window), f"{name}: bad range {window!r}"


def test_alert_metrics_exist(rules: list[dict[str, Any]], exposed: set[str]) -> None:
    for r in rules:
        unknown = referenced(r["expr"]) - exposed
        assert not unknown, f"{r['alert']} uses metrics the daemon does not expose: {unknown}"


def test_alert_coverage(rules: list[dict[str, Any]]) -> None:
    """Each required condition has a rule on the right metric."""
    exprs = " ".join(r["expr"] for r in rules)
    for needle in (
        'up{job="trader"} == 0',
        "trader_bars_total",
        "trader_orders_rejected_total",
        "trader_orders_submitted_total",
        "trader_tick_to_intent_seconds_bucket",
        "trader_day_pnl_usd",
        "trader_kill_switch == 1",
        "trader_audit_events_spooled_total",
        "trader_risk_denials_total",
        "trader_feed_connected == 0",
    ):
        assert needle in exprs, f"no alert rule uses {needle!r}"


def test_feed_stall_rule_flags_market_hours(rules: list[dict[str, Any]]) -> None:
    (stall,) = [r for r in rules if "trader_bars_total" in r["expr"]]
    assert stall["labels"].get("market_hours_only") == "true"


def test_daily_loss_alert_matches_risk_config(rules: list[dict[str, Any]]) -> None:
    """The warning threshold is 80% of config/risk.toml's daily_loss_limit."""
    limit = tomllib.loads((REPO_ROOT / "config/risk.toml").read_text())["daily_loss_limit"]
    (rule,) = [r for r in rules if "trader_day_pnl_usd" in r["expr"]]
    m = re.fullmatch(r"\s*trader_day_pnl_usd\s*<\s*-0\.8\s*\*\s*(\d+(?:\.\d+)?)\s*", rule["expr"])
    assert m, f"unexpected daily loss expression: {rule['expr']!r}"
    assert float(m.group(1)) == float(limit), "alerts.yml out of sync with config/risk.toml"


def test_promtool_check_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not on PATH")
    res = subprocess.run(
        [promtool, "check", "rules", str(MON / "alerts.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr


# --- prometheus.yml --------------------------------------------------------------------


def test_scrape_config(prom: dict[str, Any]) -> None:
    for rf in prom["rule_files"]:
        assert (MON / rf).is_file(), f"rule file {rf} not found next to prometheus.yml"
    assert "alerts.yml" in prom["rule_files"]
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "trader"]
    assert job["scrape_interval"] == "5s"
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job.get("scheme", "http") == "http"
    control = tomllib.loads((REPO_ROOT / "config/live.toml").read_text())["control"]
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == [f"{control['host']}:{control['port']}"]


def test_scrape_token_file_is_the_daemons(prom: dict[str, Any]) -> None:
    """credentials_file resolves (relative to monitoring/) to the daemon's token file."""
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "trader"]
    auth = job["authorization"]
    assert auth["type"] == "Bearer"
    token_file = (MON / auth["credentials_file"]).resolve()
    default_var_dir = LiveConfig.model_fields["var_dir"].default
    assert token_file == (default_var_dir / "control.token").resolve()


# --- grafana-dashboard.json ------------------------------------------------------------


def test_dashboard_structure(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] >= 36
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for p in panels(dashboard):
        assert {"x", "y", "w", "h"} <= set(p["gridPos"]), p["title"]
        if p["type"] == "row":
            continue
        assert p["targets"], f"panel {p['title']!r} has no query"
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]


def test_dashboard_metrics_exist(dashboard: dict[str, Any], exposed: set[str]) -> None:
    exprs = dashboard_exprs(dashboard)
    assert exprs
    for e in exprs:
        unknown = referenced(e) - exposed
        assert not unknown, f"dashboard query {e!r} uses unexposed metrics: {unknown}"


def test_dashboard_coverage(dashboard: dict[str, Any]) -> None:
    used = set().union(*(referenced(e) for e in dashboard_exprs(dashboard)))
    required = {
        "trader_realized_pnl_usd",
        "trader_unrealized_pnl_usd",
        "trader_day_pnl_usd",
        "trader_position_shares",
        "trader_orders_submitted_total",
        "trader_orders_rejected_total",
        "trader_fills_total",
        "trader_risk_denials_total",
        "trader_tick_to_intent_seconds_bucket",
        "trader_risk_gate_seconds_bucket",
        "trader_model_inference_seconds_bucket",
        "trader_intent_to_accepted_seconds_bucket",
        "trader_accepted_to_filled_seconds_bucket",
        "trader_exposure_usd",
        "trader_feed_lag_seconds",
        "trader_queue_depth",
        "trader_kill_switch",
        "trader_audit_events_written_total",
        "trader_audit_events_spooled_total",
        "trader_bars_total",
    }
    assert required <= used, f"no dashboard panel for {required - used}"
