"""Our Alpaca client against the simulator with faults on: 503s that were never
processed, 429s, responses lost after the order was accepted, and dropped streams. No
order may be created twice, every order must be known afterwards, and every fill must
be applied exactly once (the stream's, or a REST backfill's after a reconnect)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from live.alpaca import AlpacaREST, market_data, trade_updates
from live.fills import Fill, FillBook
from live.ratelimit import RateLimiter
from live.reconcile import missing_fills
from live.sim import SimConfig, SimServer
from live.sim.server import STATE
from trader.exceptions import TemporaryError

pytestmark = pytest.mark.integration
N_ORDERS = 60


def fast() -> RateLimiter:
    """A limiter that does not slow the test (the budget is not what these tests test;
    tests/unit/test_ratelimit.py does)."""
    return RateLimiter(rate_per_min=60_000, burst=1000)


def _order(coid: str) -> dict[str, str]:
    return {
        "symbol": "SPY",
        "qty": "1",
        "side": "buy",
        "type": "market",
        "time_in_force": "day",
        "client_order_id": coid,
    }


async def _broker_view(url: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/sim/status") as r:
        status = await r.json()
    async with AlpacaREST(url, "PKTEST", "SKTEST", limiter=fast()) as rest:
        for _ in range(50):  # faults stay on: retry the read until it goes through
            try:
                return status, await rest.list_orders("all", limit=500)
            except TemporaryError:
                continue
    raise AssertionError("could not list orders through the faults")


@pytest.mark.asyncio
async def test_submit_order_idempotent_when_faults_then_each_order_exactly_once() -> None:
    cfg = SimConfig(fault_5xx_rate=0.15, fault_lost_response_rate=0.15, fault_seed=20110103)
    server = SimServer(cfg)
    await server.start()
    try:
        coids = [f"fault-test-{i:03d}" for i in range(N_ORDERS)]
        async with AlpacaREST(server.url, "PKTEST", "SKTEST", timeout_s=5, limiter=fast()) as rest:
            acks = {
                c: await rest.submit_order_idempotent(_order(c), max_attempts=12) for c in coids
            }
            # Submitting the same intents again (a restart replaying what it had sent)
            # resolves to the same broker orders instead of creating new ones.
            again = {
                c: await rest.submit_order_idempotent(_order(c), max_attempts=12)
                for c in coids[:10]
            }
        status, broker = await _broker_view(server.url)
    finally:
        await server.stop()
    assert status["faults_injected"]["5xx"] > 5
    assert status["faults_injected"]["lost_response"] > 5
    assert [acks[c]["client_order_id"] for c in coids] == coids
    assert {c: again[c]["id"] for c in again} == {c: acks[c]["id"] for c in again}
    assert sorted(o["client_order_id"] for o in broker) == sorted(coids)  # none twice
    assert len({o["id"] for o in broker}) == N_ORDERS
    assert sum(Decimal(o["qty"]) for o in broker) == N_ORDERS


@pytest.mark.asyncio
async def test_429s_are_retried_without_duplicates() -> None:
    server = SimServer(SimConfig(fault_429_rate=0.2, fault_seed=7))
    await server.start()
    try:
        async with AlpacaREST(server.url, "PKTEST", "SKTEST", timeout_s=5, limiter=fast()) as rest:
            for c in range(12):
                await rest.submit_order_idempotent(_order(f"rl-{c}"), max_attempts=20)
        status, broker = await _broker_view(server.url)
    finally:
        await server.stop()
    assert status["faults_injected"]["429"] > 1
    assert sorted(o["client_order_id"] for o in broker) == sorted(f"rl-{c}" for c in range(12))


async def all_filled(rest: AlpacaREST) -> None:
    """Wait until the broker has no open order (market orders: all filled)."""
    while await rest.list_orders("open"):
        await asyncio.sleep(0.05)


class Backfilled(Fill):
    """A fill recovered over REST (to count them)."""

    def __init__(self, fill: Fill) -> None:
        super().__init__(**fill.__dict__)


class Client:
    """What execution does with the stream, in miniature: fills through a FillBook from
    the stream, and a REST backfill of every order each time the stream is back."""

    def __init__(self, url: str, rest: AlpacaREST) -> None:
        self.rest, self.book = rest, FillBook()
        self.fills: list[Fill] = []
        self.up = asyncio.Event()
        self.ws = url.replace("http://", "ws://") + "/stream"
        self.orders: dict[str, str] = {}  # client_order_id -> broker id
        self.qty: dict[str, Decimal] = {}  # broker id -> shares ordered
        self.reconnects = 0

    async def listen(self) -> None:
        async for upd in trade_updates(self.ws, "PKTEST", "SKTEST", self.up):
            if upd["event"] in ("fill", "partial_fill"):
                fill = self.book.on_stream(upd)
                if fill is not None:
                    self.fills.append(fill)

    async def watch(self) -> None:
        await self.up.wait()
        while True:
            while self.up.is_set():
                await asyncio.sleep(0.01)
            await self.up.wait()
            self.reconnects += 1
            await self.backfill()

    async def backfill(self) -> None:
        """What execution does after a reconnect: read the unsettled orders, then the
        FILL activities they are missing, each through the same FillBook."""
        unsettled = [o for o in self.orders.values() if self.book.filled_qty(o) < self.qty[o]]
        orders = [await self.rest.get_order(o) for o in unsettled]
        for upd in await missing_fills(self.rest, orders, self.book):
            fill = self.book.on_stream(upd)
            if fill is not None:
                self.fills.append(Backfilled(fill))


@pytest.mark.asyncio
async def test_no_fill_lost_or_doubled_through_5xx_lost_responses_and_dropped_streams() -> None:
    cfg = SimConfig(
        speed=6000,
        autostart=True,
        fault_5xx_rate=0.1,
        fault_lost_response_rate=0.1,
        fault_ws_drop_s=0.4,
        fault_seed=20110104,
    )
    server = SimServer(cfg)
    await server.start()
    try:
        async with AlpacaREST(server.url, "PKTEST", "SKTEST", timeout_s=5, limiter=fast()) as rest:
            client = Client(server.url, rest)
            tasks = [asyncio.create_task(client.listen()), asyncio.create_task(client.watch())]
            await asyncio.wait_for(client.up.wait(), 10)
            # A gap the test controls: orders that fill while nobody listens.
            tasks[0].cancel()
            client.up.clear()
            for i in range(5):
                ack = await rest.submit_order_idempotent(_order(f"gap-{i}"), max_attempts=12)
                client.orders[ack["client_order_id"]] = ack["id"]
                client.qty[ack["id"]] = Decimal(ack["qty"])
            await all_filled(rest)
            tasks[0] = asyncio.create_task(client.listen())
            await asyncio.wait_for(client.up.wait(), 10)
            for _ in range(500):  # the backfill's reads may meet injected faults too
                if sum(isinstance(f, Backfilled) for f in client.fills) == 5:
                    break
                await asyncio.sleep(0.02)
            assert sum(isinstance(f, Backfilled) for f in client.fills) == 5
            # Then many orders with every fault on.
            for i in range(40):
                body = _order(f"storm-{i}") | {"side": "sell" if i % 3 == 0 else "buy"}
                body["qty"] = str(1 + i % 4)
                ack = await rest.submit_order_idempotent(body, max_attempts=12)
                client.orders[ack["client_order_id"]] = ack["id"]
                client.qty[ack["id"]] = Decimal(ack["qty"])
            await all_filled(rest)
            await client.backfill()  # what the next reconnect would do
            for t in tasks:
                t.cancel()
            broker = {o["client_order_id"]: o for o in await rest.all_orders()}
            position = await rest.get("/positions/SPY")
        status = server.app[STATE].status()
    finally:
        await server.stop()
    assert status["faults_injected"]["ws_drops"] >= 2
    assert status["faults_injected"]["5xx"] > 0
    assert status["faults_injected"]["lost_response"] > 0
    assert sorted(broker) == sorted(client.orders)  # each order exactly once
    ids = [f.execution_id for f in client.fills]
    assert len(ids) == len(set(ids))
    for coid, order in broker.items():  # no fill lost, none counted twice
        got = sum((f.qty for f in client.fills if f.client_order_id == coid), Decimal(0))
        assert got == Decimal(order["filled_qty"]), coid
    signed = sum((f.qty if f.side == "buy" else -f.qty for f in client.fills), Decimal(0))
    assert signed == Decimal(position["qty"])


@pytest.mark.asyncio
async def test_stale_feed_watchdog_reconnects_a_silent_stream() -> None:
    server = SimServer(SimConfig(speed=6000, fault_stall_s=0.3))
    await server.start()
    reasons: list[str] = []
    bars: list[str] = []
    try:
        stream = market_data(
            server.url.replace("http://", "ws://") + "/v2/iex",
            "PKTEST",
            "SKTEST",
            ["SPY"],
            stale_after_s=0.4,
            market_open=lambda: True,
            on_reconnect=reasons.append,
        )
        async for msg in stream:
            bars.append(msg["t"])
            if len(reasons) >= 2 and len(bars) > 40:
                break
        stalled = server.app[STATE].status()["faults_injected"]["stalled"]
    finally:
        await server.stop()
    assert all("no market data for 0.4 s during market hours" in r for r in reasons[:2])
    assert stalled >= 2
    assert bars == sorted(set(bars))  # data flowed again after each reconnect, in order
