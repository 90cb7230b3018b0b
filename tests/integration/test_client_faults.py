"""Our Alpaca client against the simulator with faults on: 503s that were never
processed and responses lost after the order was accepted. No order may be created
twice and every order must be known afterwards."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from live.alpaca import AlpacaREST
from live.sim import SimConfig, SimServer
from trader.exceptions import TemporaryError

pytestmark = pytest.mark.integration
N_ORDERS = 60


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
    async with AlpacaREST(url, "PKTEST", "SKTEST") as rest:
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
        async with AlpacaREST(server.url, "PKTEST", "SKTEST", timeout_s=5) as rest:
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
