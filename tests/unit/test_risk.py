"""The risk gate: each control denies with its name, limit and value; exits pass."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from live.config import RiskLimits, load_config, update_limits
from live.risk import RiskGate, nb
from live.risk.var import return_scenarios
from tests.conftest import DAILY, SPY_MINUTE
from trader import REPO_ROOT
from trader.data.loaders import load_minute_bars
from trader.exceptions import ConfigurationError

SYMS = ("AAPL", "MSFT", "IBM")
NOW = 1_700_000_000_000_000_000
BASE: dict[str, Any] = {
    "max_order_qty": 500,
    "max_order_notional": 60_000,
    "min_order_value": 50,
    "max_orders_per_minute": 5,
    "max_orders_per_minute_per_symbol": 3,
    "max_position_qty": 1000,
    "max_position_notional": 110_000,
    "max_open_positions": 2,
    "max_open_orders": 3,
    "max_gross_exposure": 200_000,
    "max_net_exposure": 150_000,
    "max_concentration": 0.5,
    "daily_loss_limit": 2000,
    "max_intraday_drawdown": 1500,
    "price_collar_bps": 50,
    "max_data_age_s": 5,
    "non_shortable": ["IBM"],
}
VAR = {"max_var": 100, "history": {s: str(p) for s, p in DAILY.items()}}


def make_gate(**changes: Any) -> RiskGate:
    g = RiskGate(RiskLimits.model_validate({**BASE, **changes}), SYMS)
    for i in range(len(SYMS)):
        g.update_price(i, 100.0, NOW)
    g.set_account(250_000.0, 400_000.0)
    return g


def _rate(g: RiskGate, symbols: tuple[int, ...]) -> None:
    for i, s in enumerate(symbols):
        g.record(s, NOW - 1000 + i)


Setup = Callable[[RiskGate], Any]
CASES: list[tuple[str, dict[str, Any], Setup, dict[str, Any], str]] = [
    # (symbol, order kwargs, setup, limit changes, control)
    ("AAPL", {"qty": 10}, lambda g: setattr(g, "halted", True), {}, "kill_switch"),
    ("AAPL", {"qty": 10}, lambda g: setattr(g, "breaker", nb.BREAKER_OPEN), {}, "circuit_breaker"),
    ("AAPL", {"qty": 10, "now_ns": NOW + 5_000_000_001}, lambda g: None, {}, "max_data_age_s"),
    ("AAPL", {"qty": 501}, lambda g: None, {}, "max_order_qty"),
    ("AAPL", {"qty": -501}, lambda g: None, {}, "max_order_qty"),
    (
        "AAPL",
        {"qty": 500, "price": 130},
        lambda g: g.update_price(0, 130, NOW),
        {},
        "max_order_notional",
    ),
    ("AAPL", {"qty": 0.4}, lambda g: None, {}, "min_order_value"),
    (
        "AAPL",
        {"qty": 10, "price": 100.6, "limit_order": True},
        lambda g: None,
        {},
        "price_collar_bps",
    ),
    ("AAPL", {"qty": 1.5, "limit_order": True}, lambda g: None, {}, "fractional_order"),
    ("AAPL", {"qty": 1.5, "day_tif": False}, lambda g: None, {}, "fractional_order"),
    (
        "AAPL",
        {"qty": 10, "price": 100.005, "limit_order": True},
        lambda g: None,
        {},
        "sub_penny_price",
    ),
    ("IBM", {"qty": -10}, lambda g: None, {}, "non_shortable"),
    ("IBM", {"qty": -20}, lambda g: g.set_position(2, 10, 0), {}, "non_shortable"),
    ("AAPL", {"qty": 10}, lambda g: _rate(g, (1, 1, 2, 2, 1)), {}, "max_orders_per_minute"),
    ("AAPL", {"qty": 10}, lambda g: _rate(g, (0, 0, 0)), {}, "max_orders_per_minute_per_symbol"),
    ("AAPL", {"qty": 200}, lambda g: g.set_position(0, 800, 100), {}, "max_position_qty"),
    ("AAPL", {"qty": -200}, lambda g: g.set_position(0, -900, 0), {}, "max_position_qty"),
    (
        "AAPL",
        {"qty": 100, "price": 125},
        lambda g: (g.update_price(0, 125, NOW), g.set_position(0, 850, 0)),
        {},
        "max_position_notional",
    ),
    (
        "IBM",
        {"qty": 10},
        lambda g: (g.set_position(0, 100, 0), g.set_position(1, 0, -100)),
        {},
        "max_open_positions",
    ),
    ("AAPL", {"qty": 10}, lambda g: g.set_day(0, 0, 3), {}, "max_open_orders"),
    ("AAPL", {"qty": 100}, lambda g: g.set_account(250_000, 9_999), {}, "buying_power"),
    ("AAPL", {"qty": 100}, lambda g: g.set_account(math.nan, math.nan), {}, "buying_power"),
    (
        "IBM",
        {"qty": 250},
        lambda g: (g.set_position(0, 900, 0), g.set_position(1, -900, 0)),
        {"max_open_positions": 3},
        "max_gross_exposure",
    ),
    (
        "IBM",
        {"qty": 50},
        lambda g: (g.set_position(0, 800, 0), g.set_position(1, 700, 0)),
        {"max_open_positions": 3},
        "max_net_exposure",
    ),
    (
        "AAPL",
        {"qty": 100},
        lambda g: (g.set_position(0, 500, 0), g.set_account(100_000, 1e6)),
        {},
        "max_concentration",
    ),
    (
        "AAPL",
        {"qty": 200},
        lambda g: (g.set_position(1, 300, 0), g.set_account(100_000, 1e6)),
        {"sectors": {"max_concentration": 0.4, "map": {"AAPL": "tech", "MSFT": "tech"}}},
        "sectors.max_concentration",
    ),
    ("AAPL", {"qty": 10}, lambda g: g.set_day(-2000, 0, 0), {}, "daily_loss_limit"),
    ("AAPL", {"qty": 10}, lambda g: g.set_day(100, 1600, 0), {}, "max_intraday_drawdown"),
    ("AAPL", {"qty": 100}, lambda g: None, {"var": VAR}, "var.max_var"),
]


@pytest.mark.parametrize(("symbol", "order", "setup", "changes", "control"), CASES)
def test_check_when_limit_breached_then_denied_by_that_control(
    symbol: str, order: dict[str, Any], setup: Setup, changes: dict[str, Any], control: str
) -> None:
    g = make_gate(**changes)
    order = {"price": 100.0, "now_ns": NOW, **order}
    qty = order.pop("qty")
    assert g.check(symbol, 1, 100.0, now_ns=NOW).approved  # a small order passes
    setup(g)
    d = g.check(symbol, qty, **order)
    assert (d.approved, d.control) == (False, control)
    assert d.reason == f"{control}: value {d.value} breaches limit {d.limit}"
    assert d.value
    assert d.limit


def test_check_when_order_reduces_exposure_then_allowed_past_exposure_loss_var_and_breaker() -> (
    None
):
    g = make_gate(var=VAR)
    g.set_position(0, 1200, 0)
    g.set_position(1, -1300, 0)
    g.set_account(1_000.0, 0.0)
    g.set_day(-5000, 4000, 9)
    g.breaker = nb.BREAKER_OPEN
    assert g.check("AAPL", -100, 100, now_ns=NOW).approved
    assert g.check("MSFT", 100, 100, now_ns=NOW).approved
    assert not g.check("AAPL", -1300, 100, now_ns=NOW).approved  # flips short: new risk
    g.halted = True  # the kill switch stops even exits
    assert g.check("AAPL", -100, 100, now_ns=NOW).control == "kill_switch"


def test_set_limits_when_changed_then_in_force_and_rate_history_kept() -> None:
    g = make_gate()
    _rate(g, (0, 0, 0))
    assert g.check("AAPL", 10, 100, now_ns=NOW).control == "max_orders_per_minute_per_symbol"
    g.set_limits(update_limits(g.limits, {"max_orders_per_minute_per_symbol": 4}))
    assert g.check("AAPL", 10, 100, now_ns=NOW).approved
    g.set_limits(update_limits(g.limits, {"max_order_qty": 5}))
    d = g.check("AAPL", 10, 100, now_ns=NOW)
    assert (d.control, d.limit, d.value) == ("max_order_qty", "5", "10")
    bad = update_limits(g.limits, {"var": {"max_var": 1, "history": {"AAPL": "data/nope.csv"}}})
    with pytest.raises(ConfigurationError, match="history"):
        g.set_limits(bad)
    assert g.limits.var is None
    assert g.check("AAPL", 1, 100, now_ns=NOW).approved


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"max_order_qtty": 5}, "max_order_qtty.*Extra inputs"),
        ({"max_open_orders": -1}, "max_open_orders.*greater than 0"),
        ({"max_order_qty": 2000}, "max_order_qty .* exceeds max_position_qty"),
        ({"min_order_value": 70_000}, "min_order_value"),
        ({"max_net_exposure": 300_000}, "max_net_exposure .* exceeds max_gross_exposure"),
        ({"breaker": {"daily_loss": 10}}, "breaker.drawdown.*Field required"),
        ({"stops": {"trailing_bps": -5}}, "stops.trailing_bps"),
        ({"var": {"max_var": 1, "history": {}, "lookbak": 3}}, "var.lookbak"),
    ],
)
def test_limits_when_invalid_then_error_names_the_key(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        update_limits(RiskLimits.model_validate(BASE), changes)


def test_shipped_risk_toml_loads_with_var_on_spy() -> None:
    cfg = load_config(REPO_ROOT / "config/live.toml", REPO_ROOT / "config/risk.toml")
    gate = RiskGate(cfg.risk, (cfg.symbol,))
    assert gate.returns.shape[0] == cfg.risk.var.lookback  # type: ignore[union-attr]


def test_var_equals_the_empirical_quantile_of_real_portfolio_pnl() -> None:
    returns = return_scenarios(DAILY, SYMS, 1000)  # type: ignore[arg-type]
    g = make_gate(var={**VAR, "lookback": 1000})
    g.update_price(0, 25.0, NOW)
    g.set_position(0, 400, 0)
    g.set_position(1, -300, 50)
    exposures = np.array([400 * 25.0, -250 * 100.0, 0.0])
    exposures[2] += 70 * 100.0  # the order
    pnl = returns @ exposures
    expected = -np.sort(pnl)[math.floor(0.01 * len(pnl))]
    assert g.var(2, 70.0) == pytest.approx(expected, rel=1e-12)
    # Jorion's definition: at most 1% of the scenarios lose more than the VaR.
    assert (pnl < -expected).mean() <= 0.01


def test_vol_scaling_shrinks_notional_limits_on_real_spy_volatility() -> None:
    bars = load_minute_bars(SPY_MINUTE)["close"].iloc[:391]
    lr = np.log(bars).diff().dropna()
    realised = float(lr.std(ddof=1) * math.sqrt(98_280))
    target = realised / 2
    g = make_gate(
        vol_scaling={"target_vol": target, "window": 390, "periods_per_year": 98_280},
        max_order_notional=60_000,
    )
    for p in bars:
        g.update_price(0, float(p), NOW)
    price = float(bars.iloc[-1])
    assert g.sym[0, nb.S_VOL_SCALE] == pytest.approx(0.5, rel=1e-9)
    qty = math.floor(30_000 / price) + 1  # just above half of max_order_notional
    d = g.check("AAPL", qty, price, now_ns=NOW)
    assert d.control == "max_order_notional"
    assert float(d.limit) == pytest.approx(30_000, rel=1e-5)


def test_stale_feed_interval_in_real_spy_bars_halts_orders() -> None:
    """Replay SPY's real extended-hours minutes on their own clock: an order attempted
    every 30 s is denied exactly when the last bar is older than max_data_age_s."""
    bars = load_minute_bars(SPY_MINUTE, session="all", start="2011-01-03", end="2011-01-03")
    ts = bars.index.asi8 + 60_000_000_000  # bar end: when the bar is known
    g = RiskGate(RiskLimits.model_validate({**BASE, "max_data_age_s": 90}), ("SPY",))
    g.set_account(1e6, 1e6)
    j = 0
    denied = approved = 0
    for now in range(int(ts[0]), int(ts[-1]), 30_000_000_000):
        while j < len(ts) and ts[j] <= now:
            g.update_price(0, float(bars["close"].iloc[j]), int(ts[j]))
            j += 1
        d = g.check("SPY", 1, float(bars["close"].iloc[j - 1]), now_ns=now)
        stale = now - ts[j - 1] > 90_000_000_000
        assert d.approved != stale, (pd.Timestamp(now), d)
        if stale:
            assert d.control == "max_data_age_s"
        denied += stale
        approved += not stale
    assert denied > 0
    assert approved > 0


@settings(max_examples=300, deadline=None)
@given(
    s=st.integers(0, 2),
    qty=st.integers(-800, 800).filter(bool),
    pos=st.lists(st.integers(-1200, 1200), min_size=3, max_size=3),
    pend=st.integers(-300, 300),
    prices=st.lists(st.floats(5, 400), min_size=3, max_size=3),
    pnl=st.integers(-5000, 5000),
    drawdown=st.integers(0, 3000),
    open_orders=st.integers(0, 5),
    equity=st.floats(1e4, 1e6),
)
def test_check_property_when_approved_then_no_limit_left_breached_unless_reducing(
    s: int,
    qty: int,
    pos: list[int],
    pend: int,
    prices: list[float],
    pnl: int,
    drawdown: int,
    open_orders: int,
    equity: float,
) -> None:
    g = _PROPERTY_GATE
    g.halted, g.breaker = False, nb.BREAKER_CLOSED
    for i, p in enumerate(prices):
        g.update_price(i, p, NOW)
        g.set_position(i, pos[i], pend if i == s else 0)
    g.set_account(equity, equity)
    peak = max(0, pnl) + drawdown
    g.set_day(pnl, peak, open_orders)
    lim = g.limits
    d = g.check(SYMS[s], qty, prices[s], now_ns=NOW)
    if not d.approved:
        return
    price = prices[s]
    assert abs(qty) <= lim.max_order_qty
    assert float(lim.min_order_value) <= abs(qty) * price <= float(lim.max_order_notional)
    before = pos[s] + pend
    after = before + qty
    if abs(after) < abs(before) and after * before >= 0:
        return  # reducing: only the per-order controls apply
    shares = [pos[i] + (pend + qty if i == s else 0) for i in range(3)]
    expo = [shares[i] * prices[i] for i in range(3)]
    assert abs(after) <= lim.max_position_qty
    assert abs(after) * price <= float(lim.max_position_notional) * (1 + 1e-12)
    assert open_orders < lim.max_open_orders
    assert abs(qty) * price <= equity
    assert sum(map(abs, expo)) <= float(lim.max_gross_exposure) * (1 + 1e-12)
    assert abs(expo[s]) / equity <= lim.max_concentration * (1 + 1e-12)
    assert pnl > -lim.daily_loss_limit
    assert peak - pnl < lim.max_intraday_drawdown
    net = sum(expo)
    assert abs(net) <= float(lim.max_net_exposure) or abs(net) <= abs(net - qty * price)
    assert g.var(s, qty) <= float(lim.var.max_var) * (1 + 1e-9)  # type: ignore[union-attr]
    if before == 0:
        assert sum(1 for x in shares if x) <= lim.max_open_positions


_PROPERTY_GATE = make_gate(
    var={**VAR, "max_var": 4000},
    max_open_positions=3,
    max_concentration=0.3,
    max_order_notional=100_000,
    max_position_notional=150_000,
    max_orders_per_minute=10_000,
    max_orders_per_minute_per_symbol=10_000,
    non_shortable=[],
)
