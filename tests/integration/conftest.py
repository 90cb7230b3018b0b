"""Fixtures of the integration tests: a :class:`SimServer` in a background thread with its
own event loop (recipe of alpaca.md §8), so the official alpaca-py SDK's synchronous
clients talk to it over real sockets; an audit writer process on a real Postgres."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from alpaca.trading.client import TradingClient

from live.audit import run_writer
from live.bus import Bus
from live.config import load_config
from live.context import ComponentContext
from live.db import migrate
from live.sim import SimConfig, SimServer
from tests.integration.daemon import Session, run_daemon

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


def writer_context(dsn: str, var: Path, session_id: str = "s1") -> ComponentContext:
    """A component context for an audit writer on ``dsn`` (the broker is never called)."""
    ipc = var / "ipc"
    ipc.mkdir(parents=True, exist_ok=True)
    return ComponentContext.offline(session_id, load_config(var_dir=var), Bus(ipc), dsn)


def start_writer(ctx: ComponentContext) -> Any:
    """Start :func:`live.audit.run_writer` in a spawned process."""
    p = mp.get_context("spawn").Process(target=run_writer, args=(ctx,), daemon=True)
    p.start()
    return p


@pytest.fixture
def audit_writer(database: str, tmp_path: Path) -> Iterator[ComponentContext]:
    """A migrated database with a running audit writer; yields its context."""
    migrate(database)
    ctx = writer_context(database, tmp_path)
    p = start_writer(ctx)
    yield ctx
    p.terminate()
    p.join(20)


@pytest.fixture(scope="package")
def control_session(tmp_path_factory: pytest.TempPathFactory, pg_server: str) -> Iterator[Session]:
    """One ``sim`` daemon shared by the control-API and browser-panel tests (a daemon
    start and stop cost ~30 s). It replays the whole of January 2011 at 300x so it
    outlives the tests in between; each module resumes it before use."""
    with run_daemon(tmp_path_factory.mktemp("control"), pg_server, "2011-01-31", 300.0) as s:
        yield s
