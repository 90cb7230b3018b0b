"""Fixtures of the integration tests that drive the simulator: a :class:`SimServer` in a
background thread with its own event loop (recipe of alpaca.md §8), so the official
alpaca-py SDK's synchronous clients talk to it over real sockets."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from alpaca.trading.client import TradingClient

from live.sim import SimConfig, SimServer

KEY, SECRET = "PKTEST", "SKTEST"
FAST = 6000.0  # 10 ms per replayed bar


@dataclass
class Sim:
    server: SimServer
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def ws(self) -> str:
        return self.url.replace("http://", "ws://")

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = requests.get(f"{self.url}/sim/status", timeout=5).json()
        return result

    def trading(self, key: str = KEY, secret: str = SECRET) -> TradingClient:
        client = TradingClient(key, secret, paper=True, url_override=self.url)
        client._retry_wait = 0
        return client


@pytest.fixture
def start_sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Sim]]:
    """Factory: start a simulator (``SimConfig`` overrides as keywords) in a thread."""
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    monkeypatch.delenv("APCA_API_SECRET_KEY", raising=False)
    sims: list[Sim] = []

    def start(**overrides: Any) -> Sim:
        server = SimServer(SimConfig(**{"speed": FAST, **overrides}))
        loop, ready = asyncio.new_event_loop(), threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(server.start())
            ready.set()
            loop.run_forever()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert ready.wait(10), "simulator did not start"
        sims.append(Sim(server, loop, thread))
        return sims[-1]

    yield start
    for sim in sims:
        asyncio.run_coroutine_threadsafe(sim.server.stop(), sim.loop).result(10)
        sim.loop.call_soon_threadsafe(sim.loop.stop)
        sim.thread.join(10)
        sim.loop.close()


def wait_for(predicate: Callable[[], Any], what: str, timeout_s: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")
