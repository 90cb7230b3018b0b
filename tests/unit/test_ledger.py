"""Ledger: average-cost positions and realized P&L in Decimal; duplicate executions."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from live.ledger import Ledger


def test_apply_fill_when_round_trip_then_realized_pnl_exact() -> None:
    led = Ledger()
    led.apply_fill("e1", "SPY", D(100), D("127.01"))
    led.apply_fill("e2", "SPY", D(50), D("127.04"))
    p = led.position("SPY")
    assert p.qty == 150
    assert p.avg_price == D("127.02")
    led.apply_fill("e3", "SPY", D(-150), D("127.10"))
    assert p.qty == 0
    assert led.realized_pnl == D("12.00")


def test_apply_fill_when_crossing_zero_then_remainder_opens_at_fill_price() -> None:
    led = Ledger()
    led.apply_fill("e1", "SPY", D(100), D(10))
    led.apply_fill("e2", "SPY", D(-150), D(12))
    p = led.position("SPY")
    assert (p.qty, p.avg_price, p.realized_pnl) == (D(-50), D(12), D(200))
    assert list(p.lots) == [(D(-50), D(12))]
    led.mark("SPY", D(11))
    assert led.unrealized_pnl == D(50)


def test_apply_fill_when_execution_repeated_then_applied_once() -> None:
    led = Ledger()
    assert led.apply_fill("e1", "SPY", D(100), D(10))
    assert not led.apply_fill("e1", "SPY", D(100), D(10))
    assert led.position("SPY").qty == 100


@pytest.mark.parametrize(("qty", "price"), [(D(0), D(1)), (D(1), D(0)), (D(1), D(-2))])
def test_apply_fill_when_invalid_then_value_error(qty: D, price: D) -> None:
    with pytest.raises(ValueError, match="invalid qty"):
        Ledger().apply_fill("e", "SPY", qty, price)


@given(
    st.lists(
        st.tuples(st.integers(-300, 300).filter(bool), st.decimals("1", "500", places=2)),
        min_size=1,
        max_size=40,
    ),
    st.decimals("1", "500", places=2),
)
def test_ledger_property_when_marked_then_pnl_equals_cash_flows(
    fills: list[tuple[int, D]], mark: D
) -> None:
    led = Ledger()
    cash = D(0)
    for i, (q, px) in enumerate(fills):
        led.apply_fill(f"e{i}", "SPY", D(q), px)
        cash -= D(q) * px
    led.mark("SPY", mark)
    value = led.position("SPY").qty * mark
    assert led.realized_pnl + led.unrealized_pnl == cash + value


def test_apply_fill_when_partial_close_then_oldest_lot_closed_first() -> None:
    led = Ledger()
    led.apply_fill("e1", "SPY", D(100), D("10.00"))
    led.apply_fill("e2", "SPY", D(100), D("11.00"))
    led.apply_fill("e3", "SPY", D(-150), D("12.00"))
    p = led.position("SPY")
    assert p.realized_pnl == D(100) * D(2) + D(50) * D(1)
    assert list(p.lots) == [(D(50), D("11.00"))]
