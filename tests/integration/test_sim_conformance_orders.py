"""Every order type, time in force and order class of the simulator, driven by the
official alpaca-py SDK (``TradingClient`` and ``TradingStream``) over real sockets."""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import ROUND_FLOOR, Decimal

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderClass, OrderSide, OrderStatus, OrderType, TimeInForce
from alpaca.trading.models import Order, TradeUpdate
from alpaca.trading.requests import (
    GetOrderByIdRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopLimitOrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
    TrailingStopOrderRequest,
)
from alpaca.trading.stream import TradingStream

from live.sim.server import STATE
from tests.integration.conftest import KEY, SECRET, Sim, wait_for

pytestmark = pytest.mark.integration
BUY, SELL, DAY, GTC = OrderSide.BUY, OrderSide.SELL, TimeInForce.DAY, TimeInForce.GTC


def test_every_order_type_and_time_in_force_round_trips(start_sim: Callable[..., Sim]) -> None:
    client = start_sim().trading()  # replay not started: 09:30 New York, nothing fills
    stop = client.submit_order(
        StopOrderRequest(symbol="SPY", qty=2, side=BUY, time_in_force=GTC, stop_price=150.0)
    )
    assert isinstance(stop, Order)
    assert (stop.type, stop.stop_price, stop.limit_price) == (OrderType.STOP, "150", None)
    stop_limit = client.submit_order(
        StopLimitOrderRequest(
            symbol="SPY", qty=1, side=SELL, time_in_force=DAY, stop_price=100.0, limit_price=99.5
        )
    )
    assert (stop_limit.type, stop_limit.stop_price, stop_limit.limit_price) == (
        OrderType.STOP_LIMIT,
        "100",
        "99.5",
    )
    trailing = client.submit_order(
        TrailingStopOrderRequest(
            symbol="SPY", qty=1, side=SELL, time_in_force=GTC, trail_percent=1.5
        )
    )
    assert (trailing.type, trailing.trail_percent, trailing.hwm) == (
        OrderType.TRAILING_STOP,
        "1.5",
        "126.71",  # the first bar's open: no close before the replay
    )
    assert Decimal(trailing.stop_price) == Decimal("126.71") - Decimal("1.90")
    notional = client.submit_order(
        MarketOrderRequest(symbol="SPY", notional=250.5, side=BUY, time_in_force=DAY)
    )
    assert (notional.notional, notional.qty) == ("250.5", None)
    fractional = client.submit_order(
        MarketOrderRequest(symbol="SPY", qty=0.25, side=BUY, time_in_force=DAY)
    )
    assert fractional.qty == "0.25"
    for tif in (TimeInForce.IOC, TimeInForce.FOK, TimeInForce.CLS):
        o = client.submit_order(
            LimitOrderRequest(symbol="SPY", qty=1, side=BUY, time_in_force=tif, limit_price=50.0)
        )
        assert o.time_in_force == tif
    with pytest.raises(APIError) as e:  # 09:30 New York: after the 09:28 opg cut-off
        client.submit_order(MarketOrderRequest(symbol="SPY", qty=1, side=BUY, time_in_force="opg"))
    assert (e.value.status_code, e.value.code) == (422, 42210000)
    with pytest.raises(APIError) as e:
        client.submit_order(MarketOrderRequest(symbol="SPY", qty=0.5, side=BUY, time_in_force=GTC))
    assert (e.value.status_code, e.value.message) == (422, "fractional orders must be DAY orders")
    assert len(client.get_orders(GetOrdersRequest(limit=500))) == 8


def test_bracket_oto_oco_legs_nested_and_canceled_together(start_sim: Callable[..., Sim]) -> None:
    client = start_sim().trading()
    bracket = client.submit_order(
        LimitOrderRequest(
            symbol="SPY",
            qty=2,
            side=BUY,
            time_in_force=GTC,
            limit_price=100.0,
            order_class=OrderClass.BRACKET,
            take_profit=TakeProfitRequest(limit_price=110.0),
            stop_loss=StopLossRequest(stop_price=95.0, limit_price=94.5),
        )
    )
    assert bracket.order_class == OrderClass.BRACKET
    assert bracket.legs is not None
    tp, sl = bracket.legs
    assert (tp.side, tp.type, tp.status, tp.limit_price, tp.qty) == (
        SELL,
        OrderType.LIMIT,
        OrderStatus.HELD,
        "110",
        "2",
    )
    assert (sl.type, sl.stop_price, sl.limit_price) == (OrderType.STOP_LIMIT, "95", "94.5")
    oto = client.submit_order(
        MarketOrderRequest(
            symbol="SPY",
            qty=1,
            side=BUY,
            time_in_force=DAY,
            order_class=OrderClass.OTO,
            stop_loss=StopLossRequest(stop_price=120.0),
        )
    )
    assert oto.legs is not None
    assert [(leg.type, leg.status) for leg in oto.legs] == [(OrderType.STOP, OrderStatus.HELD)]
    nested = client.get_orders(GetOrdersRequest(nested=True))
    assert [o.id for o in nested] == [oto.id, bracket.id]
    assert len(client.get_orders(GetOrdersRequest(nested=False))) == 5
    got = client.get_order_by_id(bracket.id, GetOrderByIdRequest(nested=True))
    assert got.legs is not None
    assert [leg.id for leg in got.legs] == [tp.id, sl.id]
    with pytest.raises(APIError) as e:  # take profit below the stop of a long exit
        client.submit_order(
            MarketOrderRequest(
                symbol="SPY",
                qty=1,
                side=BUY,
                time_in_force=DAY,
                order_class=OrderClass.BRACKET,
                take_profit=TakeProfitRequest(limit_price=90.0),
                stop_loss=StopLossRequest(stop_price=95.0),
            )
        )
    assert e.value.status_code == 422
    client.cancel_order_by_id(bracket.id)
    assert {o.id: o.status for o in client.get_orders(GetOrdersRequest(status="all"))} == {
        oto.id: OrderStatus.NEW,
        oto.legs[0].id: OrderStatus.HELD,
        bracket.id: OrderStatus.CANCELED,
        tp.id: OrderStatus.CANCELED,
        sl.id: OrderStatus.CANCELED,
    }
    responses = client.cancel_orders()
    assert sorted(str(r.id) for r in responses) == sorted([str(oto.id), str(oto.legs[0].id)])


def test_fills_notional_bracket_and_oco_on_replayed_bars(start_sim: Callable[..., Sim]) -> None:
    sim = start_sim(autostart=True)
    client = sim.trading()
    notional = client.submit_order(
        MarketOrderRequest(symbol="SPY", notional=1000, side=BUY, time_in_force=DAY)
    )
    bracket = client.submit_order(
        MarketOrderRequest(
            symbol="SPY",
            qty=3,
            side=BUY,
            time_in_force=GTC,
            order_class=OrderClass.BRACKET,
            take_profit=TakeProfitRequest(limit_price=500.0),
            stop_loss=StopLossRequest(stop_price=10.0),
        )
    )
    filled = wait_for(
        lambda: (o := client.get_order_by_id(notional.id)).status == OrderStatus.FILLED and o,
        "the notional order to fill",
    )
    price = Decimal(filled.filled_avg_price)
    assert Decimal(filled.filled_qty) == (1000 / price).quantize(Decimal("1e-9"), ROUND_FLOOR)

    def released() -> list[Order]:
        legs = client.get_order_by_id(bracket.id).legs or []
        return legs if all(leg.status == OrderStatus.NEW for leg in legs) else []

    legs = wait_for(released, "the bracket legs to be released")
    assert [leg.qty for leg in legs] == ["3", "3"]
    position = Decimal(client.get_open_position("SPY").qty)
    assert position == 3 + Decimal(filled.filled_qty)
    # Swap the bracket's exits for an oco pair that brackets the market tightly.
    client.cancel_orders()
    last = Decimal(sim.status()["last_price"])
    oco = client.submit_order(
        LimitOrderRequest(
            symbol="SPY",
            qty=3,
            side=SELL,
            time_in_force=GTC,
            order_class=OrderClass.OCO,
            take_profit=TakeProfitRequest(limit_price=float(last + Decimal("0.05"))),
            stop_loss=StopLossRequest(stop_price=float(last - Decimal("0.05"))),
        )
    )
    assert oco.legs is not None
    (stop_leg,) = oco.legs
    done = wait_for(
        lambda: {
            o.id: o.status
            for o in client.get_orders(GetOrdersRequest(status="closed", limit=500))
            if o.id in (oco.id, stop_leg.id)
        },
        "an oco leg to fill",
    )
    assert sorted(done.values()) == [OrderStatus.CANCELED, OrderStatus.FILLED]
    assert Decimal(client.get_open_position("SPY").qty) == Decimal(filled.filled_qty)


def test_replace_through_the_sdk_and_the_stream(start_sim: Callable[..., Sim]) -> None:
    sim = start_sim()
    client = sim.trading()
    stream = TradingStream(KEY, SECRET, paper=True, url_override=f"{sim.ws}/stream")
    updates: list[TradeUpdate] = []

    async def on_update(update: TradeUpdate) -> None:
        updates.append(update)
        if update.event == "canceled":
            await stream.stop_ws()

    stream.subscribe_trade_updates(on_update)
    thread = threading.Thread(target=stream.run, daemon=True)
    thread.start()
    wait_for(lambda: sim.server.app[STATE].trade_clients, "the stream to listen")
    old = client.submit_order(
        LimitOrderRequest(
            symbol="SPY",
            qty=1,
            side=BUY,
            time_in_force=GTC,
            limit_price=50.0,
            client_order_id="r-1",
        )
    )
    new = client.replace_order_by_id(
        old.id, ReplaceOrderRequest(qty=3, limit_price=60.5, client_order_id="r-2")
    )
    assert isinstance(new, Order)
    assert (new.replaces, new.qty, new.limit_price, new.client_order_id) == (
        old.id,
        "3",
        "60.5",
        "r-2",
    )
    replaced = client.get_order_by_id(old.id)
    assert (replaced.status, replaced.replaced_by) == (OrderStatus.REPLACED, new.id)
    with pytest.raises(APIError) as e:
        client.replace_order_by_id(old.id, ReplaceOrderRequest(qty=2))
    assert (e.value.status_code, e.value.code) == (422, 42210000)
    client.cancel_order_by_id(new.id)
    thread.join(15)
    assert not thread.is_alive(), "the stream did not stop after the cancel"
    assert [(u.event, u.order.id) for u in updates] == [
        ("new", old.id),
        ("replaced", old.id),
        ("new", new.id),
        ("canceled", new.id),
    ]
