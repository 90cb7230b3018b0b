"""The engine starts from the book and the day's P&L baseline restored from Postgres."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path

import zmq

from live.engine import Engine
from live.recovery import RestoredState, ledger_from_fills
from tests.integration.conftest import writer_context


def test_engine_when_restored_then_starts_from_the_book_and_day_baseline(
    tmp_path: Path,
) -> None:
    fills = [
        ("e1", "SPY", "buy", Decimal(10), Decimal("127.00")),
        ("e2", "SPY", "buy", Decimal(5), Decimal("127.50")),
        ("e3", "SPY", "sell", Decimal(12), Decimal("128.25")),
    ]
    ledger = ledger_from_fills(fills)
    # FIFO: 10 @ 127.00 closed (+12.50), 2 of 5 @ 127.50 closed (+1.50); 3 @ 127.50 open
    assert ledger.positions["SPY"].realized_pnl == Decimal("14.00")
    day = {"utc_day": 14977, "day_start_pnl": "-3.25", "day_peak": 1.5}
    restored = RestoredState(ledger, day=day).engine_state()
    ctx = dataclasses.replace(writer_context("", tmp_path), restored=restored)
    zctx = zmq.Context()
    try:
        eng = Engine(ctx, zctx)
        pos = eng.ledger.positions["SPY"]
        assert list(pos.lots) == [(Decimal(3), Decimal("127.50"))]
        assert (pos.realized_pnl, pos.last_price) == (Decimal("14.00"), Decimal("128.25"))
        assert (eng.position_f, eng.cost_f, eng.realized_f) == (3.0, 382.5, 14.0)
        assert (eng.utc_day, eng.day_start_pnl, eng.day_peak_f) == (14977, Decimal("-3.25"), 1.5)
    finally:
        zctx.destroy(linger=0)
