"""The simulator's broker: matching rules, account arithmetic and Alpaca-shaped JSON."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from alpaca.trading.models import Order, Position, TradeAccount, TradeUpdate

from live.sim.broker import BAR_NS, SimAPIError, SimBroker, rfc3339

T0 = 1_294_065_000 * 1_000_000_000  # 2011-01-03 14:30 UTC (09:30 New York)


def make_broker(cash: str = "100000", ref: str = "100") -> SimBroker:
    return SimBroker("SPY", Decimal(cash), reference_price=Decimal(ref), now_ns=T0)


def submit(b: SimBroker, side: str = "buy", qty: Any = 10, **fields: Any) -> dict[str, Any]:
    body = {"symbol": "SPY", "qty": qty, "side": side, "type": "market", "time_in_force": "day"}
    body.update(fields)
    order, events = b.submit_order(body, T0)
    assert [e["event"] for e in events] == ["new"]
    return order


def limit(b: SimBroker, side: str, qty: Any, price: Any, tif: str = "gtc") -> dict[str, Any]:
    return submit(b, side, qty, type="limit", limit_price=price, time_in_force=tif)


def bar(
    b: SimBroker, k: int, o: float, h: float, lo: float, c: float, v: float = 1e6
) -> list[dict[str, Any]]:
    return b.on_bar(T0 + k * BAR_NS, o, h, lo, c, v)


def rejects(b: SimBroker, body: object) -> SimAPIError:
    with pytest.raises(SimAPIError) as e:
        b.submit_order(body, T0)
    return e.value


def test_market_order_fills_at_next_bar_open() -> None:
    b = make_broker()
    order = submit(b, qty=10.0)  # alpaca-py sends floats
    assert b.get_order(order["id"])["status"] == "new"
    (fill,) = bar(b, 0, 101.25, 102.0, 100.5, 101.5)
    assert fill["event"] == "fill"
    assert (fill["price"], fill["qty"], fill["position_qty"]) == ("101.25", "10", "10")
    assert fill["timestamp"] == rfc3339(T0 + BAR_NS) == "2011-01-03T14:31:00Z"
    uuid.UUID(fill["execution_id"])
    assert fill["order"]["status"] == "filled"
    assert fill["order"]["filled_qty"] == "10"
    assert fill["order"]["filled_avg_price"] == "101.25"
    assert fill["order"]["filled_at"] == "2011-01-03T14:31:00Z"
    assert bar(b, 1, 90, 91, 89, 90) == []  # filled orders never fill again


def test_limit_orders_fill_only_when_crossed_with_price_improvement() -> None:
    b = make_broker()
    buy = limit(b, "buy", 5, 99.0)
    assert bar(b, 0, 100.0, 100.5, 99.01, 100.0) == []  # low above the limit
    (fill,) = bar(b, 1, 99.5, 99.6, 98.9, 99.2)  # crosses inside the bar: the limit
    assert (fill["order"]["id"], fill["price"]) == (buy["id"], "99")
    improved = limit(b, "buy", 5, 102)
    (fill,) = bar(b, 2, 100.5, 101.0, 100.4, 100.8)  # marketable at the open: the open
    assert (fill["order"]["id"], fill["price"]) == (improved["id"], "100.5")
    sell = limit(b, "sell", 4, 101)
    assert bar(b, 3, 100.0, 100.99, 99.5, 100.2) == []
    (fill,) = bar(b, 4, 101.5, 101.6, 101.2, 101.3)
    assert (fill["order"]["id"], fill["price"]) == (sell["id"], "101.5")


def test_fill_qty_is_capped_by_bar_volume_shared_oldest_first() -> None:
    b = make_broker()
    first, second = submit(b, qty=500), submit(b, qty=100)
    events = bar(b, 0, 100, 100, 100, 100, v=550)
    assert [(e["event"], e["order"]["id"], e["qty"]) for e in events] == [
        ("fill", first["id"], "500"),
        ("partial_fill", second["id"], "50"),
    ]
    assert events[1]["order"]["status"] == "partially_filled"
    assert events[1]["position_qty"] == "550"
    (rest,) = bar(b, 1, 101, 101, 101, 101, v=1000)
    assert (rest["event"], rest["qty"], rest["price"]) == ("fill", "50", "101")
    assert rest["order"]["filled_qty"] == "100"
    assert rest["order"]["filled_avg_price"] == "100.5"  # (50*100 + 50*101) / 100


def test_ioc_rest_is_canceled_after_its_first_bar() -> None:
    b = make_broker()
    ioc = submit(b, qty=300, time_in_force="ioc")
    events = bar(b, 0, 100, 100, 100, 100, v=120)
    assert [(e["event"], e["order"]["id"]) for e in events] == [
        ("partial_fill", ioc["id"]),
        ("canceled", ioc["id"]),
    ]
    assert b.get_order(ioc["id"])["filled_qty"] == "120"
    unfilled = limit(b, "buy", 1, 50, tif="ioc")
    (event,) = bar(b, 1, 100, 100, 100, 100)
    assert (event["event"], event["order"]["id"]) == ("canceled", unfilled["id"])


def test_day_orders_expire_at_session_end_gtc_stays() -> None:
    b = make_broker()
    day, gtc = limit(b, "buy", 1, 50, tif="day"), limit(b, "buy", 1, 50, tif="gtc")
    (event,) = b.end_session(T0 + 390 * BAR_NS)
    assert (event["event"], event["order"]["id"]) == ("expired", day["id"])
    assert event["order"]["expired_at"] == "2011-01-03T21:00:00Z"
    assert [o["id"] for o in b.list_orders()] == [gtc["id"]]


def test_insufficient_buying_power_is_403_with_amounts() -> None:
    b = make_broker(cash="1000", ref="100")
    e = rejects(
        b, {"symbol": "SPY", "qty": 11, "side": "buy", "type": "market", "time_in_force": "day"}
    )
    assert e.status == 403
    assert e.body == {
        "code": 40310000,
        "message": "insufficient buying power",
        "buying_power": "1000",
        "cost_basis": "1100",
    }
    limit(b, "buy", 6, 100)  # reserves 600 of the 1000
    assert b.buying_power == Decimal(400)
    with pytest.raises(SimAPIError, match="insufficient buying power"):
        limit(b, "buy", 5, 100)
    with pytest.raises(SimAPIError, match="insufficient buying power"):  # shorts need it too
        submit(b, "sell", 5)


def test_reducing_orders_never_need_buying_power() -> None:
    b = make_broker(cash="1000", ref="100")
    submit(b, qty=10)
    bar(b, 0, 100, 100, 100, 100)
    assert b.buying_power == 0
    order = submit(b, "sell", 10)
    assert order["position_intent"] == "sell_to_close"


@pytest.mark.parametrize(
    ("price", "ok"),
    [("100.12", True), ("100.123", False), ("0.1234", True), ("0.12345", False), (1.1, True)],
)
def test_sub_penny_limit_prices_are_refused(price: Any, ok: bool) -> None:
    b = make_broker()
    body = {
        "symbol": "SPY",
        "qty": 1,
        "side": "buy",
        "type": "limit",
        "time_in_force": "day",
        "limit_price": price,
    }
    if ok:
        assert b.submit_order(body, T0)[0]["limit_price"] == str(price)
    else:
        e = rejects(b, body)
        assert (e.status, e.body["code"]) == (422, 42210000)
        assert "sub-penny" in e.body["message"]


def test_client_order_id_is_unique_for_the_account_lifetime() -> None:
    b = make_broker()
    generated = submit(b)["client_order_id"]
    order = submit(b, client_order_id="c-1")
    assert b.get_order_by_client_id("c-1")["id"] == order["id"]
    b.cancel_order(order["id"], T0)
    body = {"symbol": "SPY", "qty": 2, "side": "sell", "type": "market", "time_in_force": "gtc"}
    for client_order_id in ("c-1", generated):
        e = rejects(b, body | {"client_order_id": client_order_id})
        assert (e.status, e.body) == (
            422,
            {"code": 40010001, "message": "client_order_id must be unique"},
        )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"qty": None}, "qty is required"),
        ({"qty": -5}, "qty must be > 0"),
        ({"qty": "NaN"}, "qty must be a finite number"),
        ({"qty": float("inf")}, "qty must be a finite number"),
        ({"qty": "ten"}, "qty must be a number"),
        ({"qty": True}, "qty must be a number or a numeric string"),
        ({"qty": "1.0000000001"}, "at most 9 decimal places"),
        ({"qty": 1.5, "time_in_force": "gtc"}, "fractional orders must be DAY orders"),
        ({"qty": 1.5, "type": "limit", "limit_price": 90}, "must be market orders"),
        ({"notional": 100}, "qty and notional are mutually exclusive"),
        ({"qty": None, "notional": "0.5"}, "notional must be >= 1"),
        ({"side": "short"}, "invalid side 'short'"),
        ({"side": None}, "side is required"),
        ({"stop_price": 90}, "stop_price must not be set for market orders"),
        ({"type": "stop"}, "stop_price is required for stop orders"),
        ({"type": "stop_limit", "stop_price": 90}, "limit_price is required for stop_limit"),
        ({"type": "trailing_stop"}, "exactly one of trail_price and trail_percent"),
        ({"type": "trailing_stop", "trail_percent": 100}, "a percent < 100"),
        ({"type": "limit"}, "limit_price is required"),
        ({"limit_price": 100}, "limit_price must not be set for market orders"),
        ({"type": "limit", "limit_price": -1}, "limit_price must be > 0"),
        ({"time_in_force": "opg"}, "opg orders are refused from 9:28 to 19:00"),
        ({"time_in_force": "week"}, "invalid time_in_force"),
        ({"symbol": "AAPL"}, "asset AAPL not found"),
        ({"symbol": None}, "symbol is required"),
        ({"order_class": "mleg"}, "order_class 'mleg' is not supported"),
        ({"order_class": "bracket"}, "bracket orders require take_profit and stop_loss"),
        ({"take_profit": {"limit_price": 200}}, "need order_class bracket, oto or oco"),
        (
            {"order_class": "bracket", "take_profit": {"limit_price": 90}}
            | {"stop_loss": {"stop_price": 95}},
            "take_profit.limit_price must be > stop_loss.stop_price",
        ),
        ({"extended_hours": True}, "extended hours order must be DAY limit orders"),
        ({"client_order_id": "x" * 49}, "client_order_id must be a string of 1 to 48"),
    ],
)
def test_bad_orders_are_422_naming_the_field(change: dict[str, Any], message: str) -> None:
    body = {"symbol": "SPY", "qty": 1, "side": "buy", "type": "market", "time_in_force": "day"}
    body = {k: v for k, v in (body | change).items() if v is not None}
    e = rejects(make_broker(), body)
    assert (e.status, e.body["code"]) == (422, 42210000 if "opg" in message else 40010001)
    assert message in e.body["message"]


def test_non_object_body_is_422() -> None:
    e = rejects(make_broker(), ["SPY"])
    assert (e.status, e.body["message"]) == (422, "request body must be a JSON object")


def test_cash_and_positions_are_exact_and_equity_adds_up() -> None:
    b = make_broker(cash="100000", ref="126.71")
    submit(b, qty=3)
    bar(b, 0, 126.71, 126.74, 126.66, 126.72)
    assert b.cash == Decimal("100000") - 3 * Decimal("126.71") == Decimal("99619.87")
    submit(b, qty=7)
    bar(b, 1, 126.73, 126.79, 126.69, 126.79)
    submit(b, "sell", 4)
    bar(b, 2, 126.79, 126.81, 126.73, 126.75)
    # avg entry (3*126.71 + 7*126.73)/10 = 126.724; 4 sold at 126.79
    assert b.realized_pl == 4 * (Decimal("126.79") - Decimal("126.724")) == Decimal("0.264")
    (pos,) = b.positions()
    assert (pos["qty"], pos["avg_entry_price"], pos["cost_basis"]) == ("6", "126.724", "760.344")
    assert pos["market_value"] == "760.5"  # 6 * last close 126.75
    account = b.account()
    cash, equity = Decimal(account["cash"]), Decimal(account["equity"])
    assert cash + Decimal(pos["market_value"]) == equity
    assert equity == Decimal(100000) + b.realized_pl + Decimal(pos["unrealized_pl"])
    assert account["long_market_value"] == "760.5"
    assert Decimal(account["buying_power"]) == equity - Decimal("760.5")


def test_short_sale_and_reversal_through_zero() -> None:
    b = make_broker()
    submit(b, qty=9)
    bar(b, 0, 100, 100, 100, 100)
    submit(b, "sell", 20)  # closes 9, opens a 11-share short
    (fill,) = bar(b, 1, 102, 102, 102, 102)
    assert fill["position_qty"] == "-11"
    assert b.realized_pl == 9 * Decimal(2)
    (pos,) = b.positions()
    assert (pos["side"], pos["qty"], pos["cost_basis"]) == ("short", "-11", "-1122")
    bar(b, 2, 101, 101, 101, 101)
    pos = b.position("SPY")
    assert (pos["avg_entry_price"], pos["market_value"], pos["unrealized_pl"]) == (
        "102",
        "-1111",
        "11",
    )
    account = b.account()
    assert account["short_market_value"] == "-1111"
    assert Decimal(account["equity"]) == Decimal(100000) + 18 + 11
    assert Decimal(account["cash"]) + Decimal("-1111") == Decimal(account["equity"])


def test_cancel_rules() -> None:
    b = make_broker()
    open_order, filled = limit(b, "buy", 1, 50), submit(b)
    bar(b, 0, 100, 100, 100, 100)
    (event,) = b.cancel_order(open_order["id"], T0 + BAR_NS)
    assert (event["event"], event["order"]["status"]) == ("canceled", "canceled")
    assert event["order"]["canceled_at"] == "2011-01-03T14:31:00Z"
    for order_id, status, code in (
        (filled["id"], 422, 42210000),
        (open_order["id"], 422, 42210000),
        (str(uuid.uuid4()), 404, 40410000),
        ("not-a-uuid", 422, 40010001),
    ):
        with pytest.raises(SimAPIError) as e:
            b.cancel_order(order_id, T0)
        assert (e.value.status, e.value.body["code"]) == (status, code)


def test_list_orders_filters() -> None:
    b = make_broker()
    buy = limit(b, "buy", 1, 50)
    sell = b.submit_order(
        {"symbol": "SPY", "qty": 1, "side": "sell", "type": "limit", "limit_price": 500}
        | {"time_in_force": "gtc"},
        T0 + 1000,
    )[0]
    done = submit(b)
    b.cancel_order(done["id"], T0)
    ids = lambda orders: [o["id"] for o in orders]  # noqa: E731
    assert ids(b.list_orders()) == [sell["id"], buy["id"]]  # open, newest first
    assert ids(b.list_orders(direction="asc", limit=1)) == [buy["id"]]
    assert ids(b.list_orders(status="closed")) == [done["id"]]
    assert ids(b.list_orders(status="all", side="sell")) == [sell["id"]]
    assert ids(b.list_orders(status="all", after_ns=T0)) == [sell["id"]]
    assert ids(b.list_orders(until_ns=T0 + 1000)) == [buy["id"]]
    assert b.list_orders(symbols=["AAPL"]) == []


def test_close_position_by_percentage_and_limits() -> None:
    b = make_broker()
    submit(b, qty=10)
    bar(b, 0, 100, 100, 100, 100)
    order, _ = b.close_position("SPY", T0, percentage="35")
    assert (order["side"], order["qty"], order["type"]) == ("sell", "3", "market")
    with pytest.raises(SimAPIError, match="insufficient qty available") as e:
        b.close_position(b.asset_id, T0, qty="11")
    assert e.value.status == 403
    with pytest.raises(SimAPIError, match="position does not exist"):
        b.close_position("AAPL", T0)


def test_orders_after_the_end_of_data_are_rejected() -> None:
    b = make_broker()
    b.end_of_data()
    order, (event,) = b.submit_order(
        {"symbol": "SPY", "qty": 1, "side": "buy", "type": "market", "time_in_force": "gtc"}, T0
    )
    assert (order["status"], event["event"]) == ("rejected", "rejected")
    assert b.list_orders() == []


def test_json_parses_with_alpaca_py_models() -> None:
    b = make_broker()
    submit(b, qty=2)
    (fill,) = bar(b, 0, 100, 100, 100, 100)
    update = TradeUpdate(**fill)
    assert (update.price, update.qty, update.position_qty) == (100.0, 2.0, 2.0)
    assert Order(**b.get_order(fill["order"]["id"])).status == "filled"
    assert Position(**b.position("SPY")).qty == "2"
    assert TradeAccount(**b.account()).cash == "99800"


def test_account_carried_over_holds_its_position_and_cost() -> None:
    """A simulator restarted by the daemon starts with the position its database holds:
    the position, its cost paid from cash, and selling it realizes P&L against that cost."""
    b = make_broker(cash="100000", ref="100")
    b.open_position(Decimal(100), Decimal("12747"))
    (pos,) = b.positions()
    Position(**pos)  # Alpaca's shape, as alpaca-py parses it
    assert (pos["qty"], pos["cost_basis"]) == ("100", "12747")
    assert Decimal(b.account()["cash"]) == Decimal("100000") - Decimal("12747")
    submit(b, "sell", 100)
    bar(b, 1, 130.0, 130.0, 130.0, 130.0)
    assert b.positions() == []
    assert b.realized_pl == Decimal(100) * (Decimal(130) - Decimal("127.47"))
    assert Decimal(b.account()["cash"]) == Decimal("100000") - Decimal("12747") + Decimal(13000)
    with pytest.raises(ValueError, match="traded already"):
        b.open_position(Decimal(1), Decimal(1))
    with pytest.raises(ValueError, match="disagree"):
        make_broker().open_position(Decimal(-5), Decimal(500))
