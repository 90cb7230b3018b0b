"""The risk gate: each control denies with its name, limit and value; exits pass."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from live.config import RiskLimits
from live.risk import RiskGate

LIMITS = RiskLimits(
    max_order_qty=500, max_order_notional=D(60_000), max_position_qty=1000, daily_loss_limit=D(2000)
)


def check(
    gate: RiskGate, qty: int, pos: int = 0, pending: int = 0, pnl: int = 0, price: str = "100"
) -> tuple[bool, str]:
    d = gate.check(D(qty), D(price), D(pos), D(pending), D(pnl))
    return d.approved, d.control


@pytest.mark.parametrize(
    ("kwargs", "control"),
    [
        ({"qty": 501}, "max_order_qty"),
        ({"qty": -501}, "max_order_qty"),
        ({"qty": 500, "price": "120.01"}, "max_order_notional"),
        ({"qty": 100, "pos": 900, "pending": 1}, "max_position_qty"),
        ({"qty": -100, "pos": -950}, "max_position_qty"),
        ({"qty": 100, "pnl": -2000}, "daily_loss_limit"),
    ],
)
def test_check_when_limit_breached_then_denied_by_that_control(kwargs: dict, control: str) -> None:
    gate = RiskGate(LIMITS)
    approved, name = check(gate, **kwargs)
    assert (approved, name) == (False, control)
    d = gate.check(
        D(kwargs["qty"]),
        D(kwargs.get("price", "100")),
        D(kwargs.get("pos", 0)),
        D(kwargs.get("pending", 0)),
        D(kwargs.get("pnl", 0)),
    )
    assert control in d.reason
    assert d.limit in d.reason
    assert d.value in d.reason


def test_check_when_within_limits_then_approved() -> None:
    assert check(RiskGate(LIMITS), 100, pos=800, pnl=-1999) == (True, "")


def test_check_when_order_reduces_exposure_then_allowed_past_position_and_loss_limits() -> None:
    gate = RiskGate(LIMITS)
    assert check(gate, -100, pos=1200, pnl=-5000) == (True, "")  # over limit, reducing
    assert check(gate, 100, pos=-300, pnl=-5000) == (True, "")


def test_check_when_kill_switch_engaged_then_even_exits_denied() -> None:
    gate = RiskGate(LIMITS, halted=True)
    assert check(gate, -100, pos=100) == (False, "kill_switch")
    gate.halted = False
    assert check(gate, -100, pos=100) == (True, "")


@given(
    qty=st.integers(-2000, 2000).filter(bool),
    pos=st.integers(-1500, 1500),
    pending=st.integers(-500, 500),
    pnl=st.integers(-5000, 5000),
    price=st.decimals("0.5", "500", places=2),
)
def test_check_property_when_approved_then_no_limit_left_breached_unless_reducing(
    qty: int, pos: int, pending: int, pnl: int, price: D
) -> None:
    d = RiskGate(LIMITS).check(D(qty), price, D(pos), D(pending), D(pnl))
    if d.approved:
        assert abs(qty) <= LIMITS.max_order_qty
        assert abs(qty) * price <= LIMITS.max_order_notional
        before, after = abs(pos + pending), abs(pos + pending + qty)
        reducing = after < before
        assert after <= LIMITS.max_position_qty or reducing
        assert pnl > -LIMITS.daily_loss_limit or reducing
