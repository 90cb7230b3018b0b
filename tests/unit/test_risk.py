"""The risk gate: each control denies with its name, limit and value; exits pass."""

from __future__ import annotations

import time
from decimal import Decimal as D
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from live.config import RiskLimits
from live.risk import RiskGate

LIMITS = RiskLimits(
    max_order_qty=500,
    max_order_notional=D(60_000),
    min_order_value=D(50),
    max_orders_per_minute=5,
    max_position_qty=1000,
    max_position_notional=D(110_000),
    max_open_orders=3,
    daily_loss_limit=D(2000),
    max_intraday_drawdown=D(1500),
)


def check(
    gate: RiskGate,
    qty: int,
    pos: int = 0,
    pending: int = 0,
    pnl: int = 0,
    price: str = "100",
    open_orders: int = 0,
    peak: int | None = None,
) -> Any:
    return gate.check(
        D(qty),
        D(price),
        D(pos),
        D(pending),
        D(pnl),
        open_orders=open_orders,
        day_peak_pnl=None if peak is None else D(peak),
    )


@pytest.mark.parametrize(
    ("kwargs", "control"),
    [
        ({"qty": 501}, "max_order_qty"),
        ({"qty": -501}, "max_order_qty"),
        ({"qty": 500, "price": "120.01"}, "max_order_notional"),
        ({"qty": 1, "price": "49.99"}, "min_order_value"),
        ({"qty": 100, "pos": 900, "pending": 1}, "max_position_qty"),
        ({"qty": -100, "pos": -950}, "max_position_qty"),
        ({"qty": 100, "pos": 900, "price": "110.01"}, "max_position_notional"),
        ({"qty": 100, "open_orders": 3}, "max_open_orders"),
        ({"qty": 100, "pnl": -2000}, "daily_loss_limit"),
        ({"qty": 100, "pnl": 100, "peak": 1600}, "max_intraday_drawdown"),
    ],
)
def test_check_when_limit_breached_then_denied_by_that_control(
    kwargs: dict[str, Any], control: str
) -> None:
    d = check(RiskGate(LIMITS), **kwargs)
    assert (d.approved, d.control) == (False, control)
    assert control in d.reason
    assert d.limit in d.reason
    assert d.value in d.reason


def test_check_when_within_limits_then_approved() -> None:
    d = check(RiskGate(LIMITS), 100, pos=800, pnl=-1499, open_orders=2, peak=0)
    assert d.approved
    assert d.reason == ""


def test_check_when_order_reduces_exposure_then_allowed_past_exposure_and_loss_limits() -> None:
    gate = RiskGate(LIMITS)
    assert check(gate, -100, pos=1200, pnl=-5000, open_orders=9, peak=4000).approved
    assert check(gate, 100, pos=-300, pnl=-5000).approved


def test_check_when_kill_switch_engaged_then_even_exits_denied() -> None:
    gate = RiskGate(LIMITS, halted=True)
    assert check(gate, -100, pos=100).control == "kill_switch"
    gate.halted = False
    assert check(gate, -100, pos=100).approved


def test_check_when_orders_per_minute_reached_then_throttled_until_window_passes() -> None:
    gate = RiskGate(LIMITS)
    t0 = time.time_ns()
    for i in range(5):
        assert gate.check(D(10), D(100), D(0), D(0), D(0), now_ns=t0 + i).approved
        gate.record(t0 + i)
    d = gate.check(D(-10), D(100), D(50), D(0), D(0), now_ns=t0 + 10)
    assert (d.control, d.value) == ("max_orders_per_minute", "5")  # exits throttled too
    assert gate.check(D(10), D(100), D(0), D(0), D(0), now_ns=t0 + 61_000_000_000).approved


def test_limits_when_inconsistent_then_rejected_naming_keys() -> None:
    with pytest.raises(ValueError, match=r"max_order_qty .* exceeds max_position_qty"):
        RiskLimits(**{**LIMITS.model_dump(), "max_order_qty": 2000})
    with pytest.raises(ValueError, match="min_order_value"):
        RiskLimits(**{**LIMITS.model_dump(), "min_order_value": D(70_000)})


@given(
    qty=st.integers(-2000, 2000).filter(bool),
    pos=st.integers(-1500, 1500),
    pending=st.integers(-500, 500),
    pnl=st.integers(-5000, 5000),
    drawdown=st.integers(0, 3000),
    open_orders=st.integers(0, 6),
    price=st.decimals("0.5", "500", places=2),
)
def test_check_property_when_approved_then_no_limit_left_breached_unless_reducing(
    qty: int, pos: int, pending: int, pnl: int, drawdown: int, open_orders: int, price: D
) -> None:
    peak = D(max(0, pnl) + drawdown)
    d = RiskGate(LIMITS).check(
        D(qty), price, D(pos), D(pending), D(pnl), open_orders=open_orders, day_peak_pnl=peak
    )
    if d.approved:
        assert abs(qty) <= LIMITS.max_order_qty
        assert LIMITS.min_order_value <= abs(qty) * price <= LIMITS.max_order_notional
        before, after = abs(pos + pending), abs(pos + pending + qty)
        if after >= before:  # not reducing: every exposure and loss limit holds
            assert after <= LIMITS.max_position_qty
            assert after * price <= LIMITS.max_position_notional
            assert open_orders < LIMITS.max_open_orders
            assert pnl > -LIMITS.daily_loss_limit
            assert peak - pnl < LIMITS.max_intraday_drawdown
