"""The engine starts from the book, the day's P&L baseline and the circuit breaker
restored from Postgres; the baseline resets at the first bar at or after a later XNYS
session's open; a restored open breaker keeps its cool-down and is not audited again."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest
import zmq

from live.config import update_limits
from live.context import ComponentContext
from live.engine import Engine
from live.recovery import RestoredState, ledger_from_fills
from live.risk import nb
from tests.conftest import SPY_MINUTE
from tests.integration.conftest import writer_context
from trader.data import BAR_STRUCT
from trader.data.loaders import load_minute_bars

FILLS = [
    ("e1", "SPY", "buy", Decimal(10), Decimal("127.00")),
    ("e2", "SPY", "buy", Decimal(5), Decimal("127.50")),
    ("e3", "SPY", "sell", Decimal(12), Decimal("128.25")),
]
OPEN_2011_01_14 = int(pd.Timestamp("2011-01-14 09:30", tz="America/New_York").value)


@pytest.fixture
def start_engine(tmp_path: Path) -> Iterator[Any]:
    """Factory: an :class:`Engine` started from ``FILLS`` and a restored ``day`` record."""
    zctx = zmq.Context()
    engines: list[Engine] = []  # alive until the context is destroyed

    def start(day: dict[str, Any]) -> Engine:
        restored = RestoredState(ledger_from_fills(FILLS), day=day).engine_state()
        ctx = dataclasses.replace(writer_context("", tmp_path), restored=restored)
        engines.append(Engine(ctx, zctx))
        return engines[-1]

    yield start
    zctx.destroy(linger=0)


def test_breaker_open_before_a_restart_stays_open_for_the_cool_down_it_had_left(
    audit_writer: ComponentContext,
) -> None:
    limits = {
        "daily_loss": 1e6,
        "drawdown": 1e6,
        "drawdown_window_s": 300,
        "max_errors": 5,
        "error_window_s": 60,
        "cooldown_s": 1800,
    }
    cfg = audit_writer.cfg.model_copy(
        update={"risk": update_limits(audit_writer.cfg.risk, {"breaker": limits})}
    )
    ny = "America/New_York"
    tripped = int(pd.Timestamp("2011-01-14 10:00", tz=ny).value)
    record = {
        "state": "open",
        "reason": "rapid drawdown: P&L fell 1200.00 >= 1000 within 300 s",
        "since": tripped,
        "opened_at": tripped,
        "cooldown_end": tripped + 1800 * 10**9,
        "probe_client_order_id": None,
        "trips": 1,
        "loss_tripped_day": -1,
    }
    restored = RestoredState(ledger_from_fills(FILLS), breaker=record).engine_state()
    zctx = zmq.Context()
    try:
        eng = Engine(dataclasses.replace(audit_writer, cfg=cfg, restored=restored), zctx)
        assert eng.breaker is not None
        assert eng.breaker.describe() == record
        assert eng.gate.breaker == nb.BREAKER_OPEN
        bars = load_minute_bars(SPY_MINUTE, start="2011-01-14", end="2011-01-14")
        bars = bars[bars.index >= pd.Timestamp("2011-01-14 10:01", tz=ny)][:40]
        states = []
        for ts, b in zip(bars.index.asi8, bars.itertuples(), strict=True):
            eng.on_bar(BAR_STRUCT.pack(ts, ts, b.open, b.high, b.low, b.close, b.volume))
            states.append((int(ts), eng.breaker.name))
        eng.audit.close()
    finally:
        zctx.destroy(linger=0)
    # open until 10:30 New York (market time), half-open from the 10:30 bar on
    assert all((s == "open") == (t < record["cooldown_end"]) for t, s in states)
    with psycopg.connect(audit_writer.dsn) as c:
        events = c.execute(
            "SELECT status, metadata->>'from', (metadata->>'market_ts')::bigint"
            " FROM order_audit_trail WHERE event_type = 'circuit_breaker'"
        ).fetchall()
    # the trip was audited before the restart; only the end of its cool-down now
    assert events == [("half_open", "open", record["cooldown_end"])]


def _feed(eng: Engine, bars: pd.DataFrame) -> None:
    for ts, b in zip(bars.index.asi8, bars.itertuples(), strict=True):
        eng.on_bar(BAR_STRUCT.pack(ts, ts, b.open, b.high, b.low, b.close, b.volume))


def test_engine_when_restored_then_starts_from_the_book_and_day_baseline(
    start_engine: Any,
) -> None:
    ledger = ledger_from_fills(FILLS)
    # FIFO: 10 @ 127.00 closed (+12.50), 2 of 5 @ 127.50 closed (+1.50); 3 @ 127.50 open
    assert ledger.positions["SPY"].realized_pnl == Decimal("14.00")
    day = {
        "session": "2011-01-14",
        "open_ns": OPEN_2011_01_14,
        "day_start_pnl": "-3.25",
        "day_peak": 1.5,
    }
    eng = start_engine(day)
    pos = eng.ledger.positions["SPY"]
    assert list(pos.lots) == [(Decimal(3), Decimal("127.50"))]
    assert (pos.realized_pnl, pos.last_price) == (Decimal("14.00"), Decimal("128.25"))
    assert (eng.position_f, eng.cost_f, eng.realized_f) == (3.0, 382.5, 14.0)
    assert (eng.session, eng.day_start_pnl, eng.day_peak_f) == ("2011-01-14", Decimal("-3.25"), 1.5)


def test_restart_keeps_the_day_in_the_same_session_and_resets_it_at_the_next_open(
    start_engine: Any,
) -> None:
    bars = load_minute_bars(SPY_MINUTE, session="all")
    local = bars.index.tz_convert("America/New_York")
    day = {
        "session": "2011-01-14",
        "open_ns": OPEN_2011_01_14,
        "day_start_pnl": "-3.25",
        "day_peak": 100.0,
    }
    # A restart later on Friday 2011-01-14: the baseline and the peak carry on.
    eng = start_engine(day)
    friday = bars[(local >= pd.Timestamp("2011-01-14 15:00", tz="America/New_York"))]
    _feed(eng, friday[:30])
    assert (eng.session, eng.day_start_pnl) == ("2011-01-14", Decimal("-3.25"))
    assert eng.day_peak_f == 100.0
    # A restart on Tuesday 01-18 (Monday was a holiday) before the open: the pre-market
    # bars still count against Friday's baseline; the 09:30 bar starts the new day.
    eng = start_engine(day)
    tuesday = bars[local.strftime("%Y-%m-%d") == "2011-01-18"]
    pre = tuesday[tuesday.index < pd.Timestamp("2011-01-18 09:30", tz="America/New_York")]
    _feed(eng, pre)
    assert len(pre) > 100
    assert (eng.session, eng.day_start_pnl, eng.day_peak_f) == (
        "2011-01-14",
        Decimal("-3.25"),
        100.0,
    )
    last_mark = eng.total_pnl  # P&L marked at the last pre-market bar
    _feed(eng, tuesday[len(pre) : len(pre) + 1])
    assert eng.session == "2011-01-18"
    assert eng.day_start_pnl == last_mark != Decimal("-3.25")
    assert eng.session_open_ns == tuesday.index[len(pre)].value
    assert eng.day_peak_f == pytest.approx(max(0.0, float(eng.total_pnl - last_mark)))
