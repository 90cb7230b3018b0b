"""The simulator driven by the official alpaca-py SDK (recipe of alpaca.md §8): the server
runs in a background thread with its own event loop, the SDK's synchronous clients talk
to it over real sockets, and the streams run in their own threads."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.live import StockDataStream
from alpaca.data.models import Bar
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.enums import (
    OrderSide,
    OrderStatus,
    QueryOrderStatus,
    TimeInForce,
)
from alpaca.trading.models import Order, TradeUpdate
from alpaca.trading.requests import (
    ClosePositionRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
)
from alpaca.trading.stream import TradingStream

from live.sim import server as sim_server
from live.sim.server import STATE
from tests.conftest import SPY_MINUTE
from tests.integration.conftest import FAST, KEY, SECRET, Sim, wait_for
from trader.data.loaders import load_minute_bars

pytestmark = pytest.mark.integration


def market(qty: float, side: OrderSide = OrderSide.BUY, **kw: Any) -> MarketOrderRequest:
    return MarketOrderRequest(symbol="SPY", qty=qty, side=side, time_in_force=TimeInForce.DAY, **kw)


def far_limit(client_order_id: str | None = None) -> LimitOrderRequest:
    """A GTC buy far below the market: stays open."""
    return LimitOrderRequest(
        symbol="SPY",
        qty=1,
        side=OrderSide.BUY,
        time_in_force=TimeInForce.GTC,
        limit_price=50.0,
        client_order_id=client_order_id,
    )


def test_account_clock_and_rate_limit_headers(start_sim: Callable[..., Sim]) -> None:
    sim = start_sim()
    client = sim.trading()
    account = client.get_account()
    assert account.status == "ACTIVE"
    assert (account.cash, account.equity, account.buying_power) == ("100000", "100000", "100000")
    clock = client.get_clock()
    assert clock.is_open
    assert clock.timestamp == datetime(2011, 1, 3, 14, 30, tzinfo=UTC)
    assert clock.next_close == datetime(2011, 1, 3, 21, 0, tzinfo=UTC)
    assert clock.next_open == datetime(2011, 1, 4, 14, 30, tzinfo=UTC)
    headers = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
    first, second = (
        requests.get(f"{sim.url}/v2/clock", headers=headers, timeout=5).headers for _ in range(2)
    )
    assert first["X-Ratelimit-Limit"] == str(200 * int(FAST))  # 200 per simulated minute
    assert int(second["X-Ratelimit-Remaining"]) == int(first["X-Ratelimit-Remaining"]) - 1
    assert int(first["X-Ratelimit-Reset"]) > time.time()


def test_submit_get_and_list_orders(start_sim: Callable[..., Sim]) -> None:
    client = start_sim().trading()
    mkt = client.submit_order(market(1, client_order_id="m-1"))
    lim = client.submit_order(far_limit("l-1"))
    assert isinstance(mkt, Order)
    assert isinstance(lim, Order)
    assert (mkt.status, mkt.qty, mkt.filled_qty, mkt.type) == (OrderStatus.NEW, "1", "0", "market")
    assert (lim.limit_price, lim.time_in_force) == ("50", TimeInForce.GTC)
    assert client.get_order_by_id(lim.id).client_order_id == "l-1"
    assert client.get_order_by_client_id("m-1").id == mkt.id

    def ids(**kw: Any) -> list[Any]:
        return [o.id for o in client.get_orders(GetOrdersRequest(**kw))]

    assert ids() == [lim.id, mkt.id]  # open, newest first
    assert ids(direction="asc", limit=1) == [mkt.id]
    assert ids(status=QueryOrderStatus.ALL, side=OrderSide.BUY, symbols=["SPY"]) == [lim.id, mkt.id]
    assert ids(status=QueryOrderStatus.ALL, symbols=["AAPL"]) == []
    assert ids(status=QueryOrderStatus.CLOSED) == []
    assert ids(status=QueryOrderStatus.ALL, until=datetime(2011, 1, 3, tzinfo=UTC)) == []
    with pytest.raises(APIError) as e:
        client.get_order_by_client_id("nope")
    assert (e.value.status_code, e.value.code) == (404, 40410000)


def test_bad_requests_are_alpaca_errors(start_sim: Callable[..., Sim]) -> None:
    sim = start_sim()
    client = sim.trading()
    client.submit_order(market(1, client_order_id="dup"))
    with pytest.raises(APIError) as e:
        client.submit_order(market(2, client_order_id="dup"))
    assert (e.value.status_code, e.value.code) == (422, 40010001)
    assert e.value.message == "client_order_id must be unique"
    with pytest.raises(APIError) as e:
        client.submit_order(market(10_000))
    assert (e.value.status_code, e.value.code) == (403, 40310000)
    assert json.loads(str(e.value))["cost_basis"] == "1267100"  # 10000 x the first open
    headers = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
    for body, status, field in (
        ("{not json", 422, "JSON"),
        (
            '{"symbol":"SPY","qty":-1,"side":"buy","type":"market","time_in_force":"day"}',
            422,
            "qty",
        ),
    ):
        r = requests.post(f"{sim.url}/v2/orders", data=body, headers=headers, timeout=5)
        assert r.status_code == status
        assert field in r.json()["message"]
        assert r.json()["code"] == 40010001
    r = requests.get(f"{sim.url}/v2/orders/not-a-uuid", headers=headers, timeout=5)
    assert (r.status_code, r.json()["code"]) == (422, 40010001)


def test_cancel_one_and_all(start_sim: Callable[..., Sim]) -> None:
    client = start_sim().trading()
    one = client.submit_order(far_limit())
    assert client.cancel_order_by_id(one.id) is None  # 204, empty body
    assert client.get_order_by_id(one.id).status == OrderStatus.CANCELED
    with pytest.raises(APIError) as e:
        client.cancel_order_by_id(one.id)
    assert (e.value.status_code, e.value.code) == (422, 42210000)
    assert e.value.message == "order is not cancelable"
    with pytest.raises(APIError) as e:
        client.cancel_order_by_id("4e3d5c2b-0000-4000-8000-000000000000")
    assert (e.value.status_code, e.value.code) == (404, 40410000)
    a, b = client.submit_order(far_limit()), client.submit_order(far_limit())
    results = client.cancel_orders()
    assert sorted((r.id, r.status) for r in results) == sorted([(a.id, 200), (b.id, 200)])
    assert client.get_orders() == []


def test_fill_on_next_bar_positions_and_close(start_sim: Callable[..., Sim]) -> None:
    sim = start_sim(autostart=True)
    client = sim.trading()
    order = client.submit_order(market(10))
    filled = wait_for(
        lambda: (o := client.get_order_by_id(order.id)).status == OrderStatus.FILLED and o,
        "the market order to fill",
    )
    (position,) = client.get_all_positions()
    assert (position.symbol, position.qty, position.side) == ("SPY", "10", "long")
    assert position.avg_entry_price == filled.filled_avg_price
    assert client.get_open_position("SPY").qty == "10"
    account = client.get_account()
    assert Decimal(account.cash) == Decimal(100000) - 10 * Decimal(filled.filled_avg_price)
    with pytest.raises(APIError) as e:  # filled: not cancelable
        client.cancel_order_by_id(order.id)
    assert (e.value.status_code, e.value.code) == (422, 42210000)

    closing = client.close_position("SPY", ClosePositionRequest(percentage="40"))
    assert (closing.side, closing.qty, closing.type) == ("sell", "4", "market")
    wait_for(lambda: client.get_open_position("SPY").qty == "6", "the partial close to fill")
    far = client.submit_order(far_limit())
    (result,) = client.close_all_positions(cancel_orders=True)
    assert (result.symbol, result.status, result.body.qty) == ("SPY", 200, "6")
    assert client.get_order_by_id(far.id).status == OrderStatus.CANCELED
    wait_for(lambda: client.get_all_positions() == [], "the position to close")
    with pytest.raises(APIError) as e:
        client.get_open_position("SPY")
    assert (e.value.status_code, e.value.code) == (404, 40410000)
    assert e.value.message == "position does not exist"


def test_env_keys_are_enforced(
    start_sim: Callable[..., Sim], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", "PKREAL")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "SKREAL")
    sim = start_sim()
    with pytest.raises(APIError) as e:
        sim.trading().get_account()
    assert (e.value.status_code, e.value.code) == (401, 40110000)
    assert sim.trading("PKREAL", "SKREAL").get_account().status == "ACTIVE"


def test_trading_stream_receives_new_and_fill(start_sim: Callable[..., Sim]) -> None:
    sim = start_sim(autostart=True)
    stream = TradingStream(KEY, SECRET, paper=True, url_override=f"{sim.ws}/stream")
    updates: list[TradeUpdate] = []

    async def on_update(update: TradeUpdate) -> None:
        updates.append(update)
        if update.event == "fill":
            await stream.stop_ws()

    stream.subscribe_trade_updates(on_update)
    thread = threading.Thread(target=stream.run, daemon=True)
    thread.start()
    state = sim.server.app[STATE]
    wait_for(lambda: state.trade_clients, "the stream to listen")
    order = sim.trading().submit_order(market(3))
    thread.join(15)
    assert not thread.is_alive(), "the stream did not stop after the fill"
    assert [u.event for u in updates] == ["new", "fill"]
    new, fill = updates
    assert new.order.id == fill.order.id == order.id
    assert (fill.qty, fill.position_qty, fill.order.filled_qty) == (3.0, 3.0, "3")
    assert fill.price == float(fill.order.filled_avg_price)
    assert fill.execution_id is not None
    assert fill.timestamp > new.timestamp


def test_data_stream_msgpack_bars(start_sim: Callable[..., Sim]) -> None:
    sim = start_sim()
    stream = StockDataStream(KEY, SECRET, url_override=f"{sim.ws}/v2/iex")
    bars: list[Bar] = []

    async def on_bar(bar: Bar) -> None:
        bars.append(bar)
        if len(bars) == 3:
            await stream.stop_ws()

    stream.subscribe_bars(on_bar, "SPY")
    thread = threading.Thread(target=stream.run, daemon=True)
    thread.start()
    thread.join(15)
    assert not thread.is_alive(), "the stream did not stop after 3 bars"
    expected = load_minute_bars(SPY_MINUTE).iloc[:3]
    assert [b.timestamp for b in bars] == [t.to_pydatetime() for t in expected.index]
    assert [(b.symbol, b.open, b.close, b.volume) for b in bars] == [
        ("SPY", r.open, r.close, r.volume) for r in expected.itertuples()
    ]
    assert bars[0].trade_count is None
    assert bars[0].vwap is None
    assert sim.status()["started"] is True


@pytest.mark.asyncio
async def test_data_stream_json_protocol(start_sim: Callable[..., Sim]) -> None:
    sim = start_sim()
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{sim.ws}/v2/sip") as ws:
        assert await ws.receive_json() == [{"T": "success", "msg": "connected"}]
        await ws.send_json({"action": "subscribe", "bars": ["SPY"]})
        assert (await ws.receive_json())[0] == {
            "T": "error",
            "code": 401,
            "msg": "not authenticated",
        }
        await ws.send_json({"action": "auth", "key": KEY, "secret": SECRET})
        assert await ws.receive_json() == [{"T": "success", "msg": "authenticated"}]
        await ws.send_json({"action": "subscribe", "bars": ["SPY"], "trades": ["SPY"]})
        (sub,) = await ws.receive_json()
        assert (sub["T"], sub["bars"], sub["trades"], sub["corrections"]) == (
            "subscription",
            ["SPY"],
            ["SPY"],
            ["SPY"],
        )
        (bar,) = await ws.receive_json()
    assert bar == {
        "T": "b",
        "S": "SPY",
        "o": 126.71,
        "h": 126.74,
        "l": 126.66,
        "c": 126.72,
        "v": 2259046,
        "n": None,
        "vw": None,
        "t": "2011-01-03T14:30:00Z",
    }


def test_historical_bars_paging(
    start_sim: Callable[..., Sim], monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = start_sim(start="2011-01-04")  # 2011-01-03 is history, 01-04 is the future
    monkeypatch.setattr(sim_server, "MAX_BARS_PER_PAGE", 100)
    client = StockHistoricalDataClient(KEY, SECRET, url_override=sim.url)
    pages: list[dict[str, Any]] = []
    get = client.get

    def counting_get(*args: Any, **kwargs: Any) -> Any:
        pages.append(get(*args, **kwargs))
        return pages[-1]

    monkeypatch.setattr(client, "get", counting_get)
    request = StockBarsRequest(
        symbol_or_symbols=["SPY", "AAPL"],
        timeframe=TimeFrame.Minute,
        start=datetime(2011, 1, 3, tzinfo=UTC),
        end=datetime(2011, 1, 6, tzinfo=UTC),
    )
    bars = client.get_stock_bars(request).data
    assert list(bars) == ["SPY"]
    expected = load_minute_bars(SPY_MINUTE, end="2011-01-03")
    assert [b.timestamp for b in bars["SPY"]] == [t.to_pydatetime() for t in expected.index]
    assert [b.close for b in bars["SPY"]] == expected["close"].tolist()
    assert [len(p["bars"]["SPY"]) for p in pages] == [100, 100, 100, 90]
    assert pages[-1]["next_page_token"] is None

    pages.clear()
    limited = client.get_stock_bars(request.model_copy(update={"limit": 150})).data["SPY"]
    assert [len(p["bars"]["SPY"]) for p in pages] == [100, 50]
    assert [b.timestamp for b in limited] == [t.to_pydatetime() for t in expected.index[:150]]
