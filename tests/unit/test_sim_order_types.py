"""The simulator's broker: stop, stop-limit and trailing-stop matching, notional and
fractional orders, fok/opg/cls, bracket/oto/oco legs and replacement (synthetic bars
chosen to hit each rule's edge)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from alpaca.trading.models import Order

from live.sim.broker import BAR_NS, SimAPIError, SimBroker

T0 = 1_294_065_000 * 1_000_000_000  # 2011-01-03 14:30 UTC (09:30 New York)
EVENING = T0 + (10 * 60 + 30) * 60 * 1_000_000_000  # 20:00 New York: opg accepted


def make_broker(cash: str = "100000", ref: str = "100") -> SimBroker:
    return SimBroker("SPY", Decimal(cash), reference_price=Decimal(ref), now_ns=T0)


def order(b: SimBroker, side: str = "buy", now: int = T0, **fields: Any) -> dict[str, Any]:
    body = {"symbol": "SPY", "qty": 10, "side": side, "type": "market", "time_in_force": "day"}
    body.update(fields)
    return b.submit_order({k: v for k, v in body.items() if v is not None}, now)[0]


def bar(b: SimBroker, k: int, o: float, h: float, lo: float, c: float, **kw: Any) -> list:
    return b.on_bar(T0 + k * BAR_NS, o, h, lo, c, kw.pop("v", 1e6), **kw)


def brief(events: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    return [(e["event"], e["order"]["type"], e.get("price")) for e in events]


def test_stop_orders_trigger_on_the_range_and_fill_at_the_stop_or_the_gap() -> None:
    b = make_broker()
    buy = order(b, type="stop", stop_price=101)
    assert bar(b, 0, 100, 100.99, 99, 100) == []
    (fill,) = bar(b, 1, 100.5, 101.2, 100.4, 101)  # crosses inside the bar: the stop
    assert (fill["order"]["id"], fill["price"], fill["event"]) == (buy["id"], "101", "fill")
    sell = order(b, "sell", type="stop", stop_price=99, qty=4)
    (fill,) = bar(b, 2, 98, 98.5, 97, 98)  # gapped through: the open
    assert (fill["order"]["id"], fill["price"]) == (sell["id"], "98")


def test_stop_limit_fills_on_its_trigger_bar_only_within_the_limit() -> None:
    b = make_broker()
    inside = order(b, type="stop_limit", stop_price=101, limit_price=101.5)
    gapped = order(b, type="stop_limit", stop_price=101, limit_price=101.5)
    b.cancel_order(inside["id"], T0)
    assert bar(b, 0, 102, 103, 101.8, 102.5) == []  # triggered at 102 > limit: rests
    assert b.get_order(gapped["id"])["status"] == "new"
    (fill,) = bar(b, 1, 102, 102, 101.4, 101.6)  # now a limit buy at 101.5
    assert (fill["order"]["id"], fill["price"]) == (gapped["id"], "101.5")
    b2 = make_broker()
    sl = order(b2, "sell", type="stop_limit", stop_price=99, limit_price=98.5, qty=1)
    (fill,) = bar(b2, 0, 99.5, 99.6, 98, 98.2)  # trigger 99 satisfies the 98.5 limit
    assert (fill["order"]["id"], fill["price"]) == (sl["id"], "99")


def test_trailing_stop_trails_the_high_water_mark_without_look_ahead() -> None:
    b = make_broker(ref="100")
    ts = order(b, "sell", type="trailing_stop", trail_price=2, time_in_force="gtc", qty=1)
    assert (ts["hwm"], ts["stop_price"], ts["trail_price"]) == ("100", "98", "2")
    # The bar's own high (105) must not move the stop the same bar is checked against.
    assert bar(b, 0, 100, 105, 98.5, 104) == []
    assert (b.get_order(ts["id"])["hwm"], b.get_order(ts["id"])["stop_price"]) == ("105", "103")
    (fill,) = bar(b, 1, 104, 104.5, 102, 102.5)
    assert (fill["order"]["id"], fill["price"]) == (ts["id"], "103")
    pct = order(b, "buy", type="trailing_stop", trail_percent=1, qty=1)
    assert pct["stop_price"] == "103.53"  # 102.5 + 1.025 rounded to the cent
    with pytest.raises(SimAPIError, match="DAY or GTC"):
        order(b, type="trailing_stop", trail_price=1, time_in_force="ioc")


def test_notional_and_fractional_market_orders() -> None:
    b = make_broker()
    notional = order(b, qty=None, notional="1000")
    assert (notional["qty"], notional["notional"]) == (None, "1000")
    (fill,) = bar(b, 0, 120, 120, 120, 120)
    assert fill["qty"] == "8.333333333"  # 1000 / 120 rounded down to 9 decimals
    assert fill["order"]["qty"] == fill["order"]["filled_qty"] == "8.333333333"
    frac = order(b, "sell", qty="0.333333333")
    (fill,) = bar(b, 1, 121, 121, 121, 121)
    assert (fill["order"]["id"], fill["position_qty"]) == (frac["id"], "8")
    assert b.cash == Decimal(100000) - Decimal("8.333333333") * 120 + Decimal("0.333333333") * 121
    with pytest.raises(SimAPIError, match="fractional orders cannot be sold short") as e:
        order(b, "sell", qty="8.5")
    assert e.value.status == 403
    b.submit_order(  # whole-share shorts are fine
        {"symbol": "SPY", "qty": 9, "side": "sell", "type": "market", "time_in_force": "day"}, T0
    )


def test_fok_fills_completely_or_not_at_all() -> None:
    b = make_broker()
    big = order(b, qty=500, time_in_force="fok")
    small = order(b, qty=100, time_in_force="fok")
    events = bar(b, 0, 100, 100, 100, 100, v=300)
    assert [(e["event"], e["order"]["id"]) for e in events] == [
        ("canceled", big["id"]),
        ("fill", small["id"]),
    ]
    assert b.get_order(big["id"])["filled_qty"] == "0"
    missed = order(b, qty=1, time_in_force="fok", type="limit", limit_price=50)
    assert [(e["event"], e["order"]["id"]) for e in bar(b, 1, 100, 100, 100, 100)] == [
        ("canceled", missed["id"])
    ]


def test_opg_trades_only_at_the_session_open_and_cls_at_the_close() -> None:
    b = make_broker()
    opg = order(b, now=EVENING, time_in_force="opg", qty=2)
    cls = order(b, time_in_force="cls", qty=3)
    unfilled = order(b, "sell", time_in_force="cls", type="limit", limit_price=500, qty=1)
    assert bar(b, 0, 100, 101, 99, 100.5) == []  # neither a session's first nor last bar
    (fill,) = bar(b, 1, 100.25, 101, 99, 100.5, first=True)
    assert (fill["order"]["id"], fill["price"]) == (opg["id"], "100.25")
    events = bar(b, 2, 100, 101, 99, 100.75, last=True)
    assert [(e["event"], e["order"]["id"], e.get("price")) for e in events] == [
        ("fill", cls["id"], "100.75"),
        ("canceled", unfilled["id"], None),
    ]
    late = T0 + 380 * 60 * 1_000_000_000  # 15:50 New York
    with pytest.raises(SimAPIError, match="cls orders are refused from 15:50") as e:
        order(b, now=late, time_in_force="cls")
    assert (e.value.status, e.value.body["code"]) == (422, 42210000)


def test_bracket_legs_are_held_then_one_cancels_the_other() -> None:
    b = make_broker()
    entry = order(
        b,
        order_class="bracket",
        time_in_force="gtc",
        take_profit={"limit_price": 110.0},
        stop_loss={"stop_price": 95.0, "limit_price": 94.5},
    )
    Order(**entry)  # alpaca-py parses the nested legs
    tp, sl = entry["legs"]
    assert (tp["type"], tp["side"], tp["status"], tp["limit_price"]) == (
        "limit",
        "sell",
        "held",
        "110",
    )
    assert (sl["type"], sl["stop_price"], sl["limit_price"]) == ("stop_limit", "95", "94.5")
    assert [o["id"] for o in b.list_orders(nested=True)] == [entry["id"]]
    assert len(b.list_orders()) == 3
    events = bar(b, 0, 100, 100, 100, 100)
    assert [(e["event"], e["order"]["id"]) for e in events] == [
        ("fill", entry["id"]),
        ("new", tp["id"]),
        ("new", sl["id"]),
    ]
    events = bar(b, 1, 100, 111, 99, 110)
    assert [(e["event"], e["order"]["id"], e.get("price")) for e in events] == [
        ("fill", tp["id"], "110"),
        ("canceled", sl["id"], None),
    ]
    assert b.position_qty == 0
    assert b.buying_power == b.equity  # nothing reserved, nothing held


def test_canceling_an_entry_cancels_its_held_legs_and_oto_has_one_leg() -> None:
    b = make_broker()
    entry = order(b, type="limit", limit_price=90, order_class="oto", stop_loss={"stop_price": 85})
    (leg,) = entry["legs"]
    assert (leg["type"], leg["status"]) == ("stop", "held")
    events = b.cancel_order(entry["id"], T0)
    assert [(e["event"], e["order"]["id"]) for e in events] == [
        ("canceled", entry["id"]),
        ("canceled", leg["id"]),
    ]
    assert b.list_orders() == []


def test_oco_exits_work_at_once_and_cancel_each_other() -> None:
    b = make_broker()
    order(b, qty=5)
    bar(b, 0, 100, 100, 100, 100)
    oco = order(
        b,
        "sell",
        qty=5,
        type="limit",
        order_class="oco",
        time_in_force="gtc",
        take_profit={"limit_price": 105},
        stop_loss={"stop_price": 97},
    )
    (stop,) = oco["legs"]
    assert (oco["limit_price"], oco["status"], stop["status"], stop["side"]) == (
        "105",
        "new",
        "new",
        "sell",
    )
    events = bar(b, 1, 99, 99, 96, 96.5)
    assert [(e["event"], e["order"]["id"], e.get("price")) for e in events] == [
        ("fill", stop["id"], "97"),
        ("canceled", oco["id"], None),
    ]
    assert b.position_qty == 0


def test_replace_creates_a_new_order_and_frees_the_old() -> None:
    b = make_broker(cash="1000")
    old = order(b, qty=5, type="limit", limit_price=100, time_in_force="gtc")
    new, events = b.replace_order(old["id"], {"qty": 8, "limit_price": 110.0}, T0 + 1)
    assert [(e["event"], e["order"]["id"]) for e in events] == [
        ("replaced", old["id"]),
        ("new", new["id"]),
    ]
    assert events[0]["order"]["replaced_by"] == new["id"]
    assert (new["replaces"], new["qty"], new["limit_price"], new["time_in_force"]) == (
        old["id"],
        "8",
        "110",
        "gtc",
    )
    assert b.get_order(old["id"])["status"] == "replaced"
    assert b.buying_power == Decimal(1000 - 880)  # only the new order reserves
    with pytest.raises(SimAPIError, match="insufficient buying power"):
        b.replace_order(new["id"], {"qty": 10}, T0 + 2)
    assert b.get_order(new["id"])["status"] == "new"  # a refused replace changes nothing
    with pytest.raises(SimAPIError, match="not replaceable") as e:
        b.replace_order(old["id"], {"qty": 1}, T0 + 3)
    assert e.value.body["code"] == 42210000
    with pytest.raises(SimAPIError, match="cannot replace side"):
        b.replace_order(new["id"], {"side": "sell"}, T0 + 3)
