"""FillBook: each execution applied once across the stream and REST backfills."""

from __future__ import annotations

from decimal import Decimal

import pytest

from live.fills import FillBook

D = Decimal


def update(exec_id: str, qty: str, price: str, cum: str, status: str = "partially_filled") -> dict:
    order = {"id": "o-1", "client_order_id": "c-1", "symbol": "SPY", "side": "buy"}
    order |= {"filled_qty": cum, "status": status}
    return {"event": "fill", "execution_id": exec_id, "qty": qty, "price": price, "order": order}


def test_partial_fills_sum_and_redeliveries_are_dropped() -> None:
    book = FillBook()
    first = book.on_stream(update("e1", "3", "100", "3"))
    assert first is not None
    assert (first.qty, first.price, first.cum_qty) == (D(3), D(100), D(3))
    assert book.on_stream(update("e1", "3", "100", "3")) is None  # redelivered
    second = book.on_stream(update("e2", "7", "101", "10", "filled"))
    assert second is not None
    assert book.filled_qty("o-1") == 10
    assert book.duplicates == 1


def test_backfilled_activities_dedupe_with_late_stream_events_by_the_part_they_cover() -> None:
    book = FillBook()
    assert book.on_stream(update("e1", "2", "100", "2")) is not None
    # e2 (3 @ 101) was missed while the stream was down; the REST backfill brings it
    # under its activity id, which need not be the stream's execution_id.
    act = book.on_stream(update("20110103::act-2", "3", "101", "5"))
    assert act is not None
    assert (act.qty, act.cum_qty) == (D(3), D(5))
    late = update("e2", "3", "101", "5")
    assert not book.is_new(late)
    assert book.on_stream(late) is None  # late stream event
    assert not book.is_new(late)  # now known by its id too
    assert book.filled_qty("o-1") == 5
    assert book.duplicates == 1


def test_is_new_when_asked_then_nothing_recorded() -> None:
    book = FillBook()
    upd = update("e1", "2", "100", "2")
    assert book.is_new(upd)
    assert book.is_new(upd)  # asking does not apply it
    assert book.filled_qty("o-1") == 0
    assert book.on_stream(upd) is not None
    assert not book.is_new(update("20110103143000123::9b1e", "2", "100", "2"))  # same part


def test_out_of_order_fills_fill_the_gaps() -> None:
    book = FillBook()
    assert book.on_stream(update("e3", "5", "102", "10", "filled")) is not None  # (5, 10]
    assert book.filled_qty("o-1") == 5
    assert book.on_stream(update("e1", "2", "100", "2")) is not None  # (0, 2]
    assert book.on_stream(update("e2", "3", "101", "5")) is not None  # (2, 5]
    assert book.filled_qty("o-1") == 10
    assert book.on_stream(update("a-2", "3", "101", "5")) is None


@pytest.mark.parametrize(
    "bad",
    [
        {"execution_id": "e9", "qty": "1", "price": "1"},  # no order
        update("e9", "0", "100", "1"),
        update("e9", "1", "NaN", "1"),
        update("e9", "5", "100", "3"),  # more than the order's filled_qty
    ],
)
def test_malformed_fill_events_are_errors_naming_the_execution(bad: dict) -> None:
    with pytest.raises(ValueError, match="e9"):
        FillBook().on_stream(bad)
