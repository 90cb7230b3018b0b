"""The strategy warm-up (:mod:`live.warmup`) on the real SPY bars: the Alpaca client's
``bars()`` paging against the simulator, the engine's warm-up from the simulator's
history with the seam to the stream, and the session rule (a restarted engine ends in
the same state as one that never stopped)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest
import requests
import zmq

import live.sim.server as sim_server
from live.alpaca import AlpacaREST
from live.config import BrokerEndpoints
from live.context import ComponentContext
from live.db import migrate
from live.engine import Engine, warm_up_from_broker
from live.market_hours import session_of
from tests.conftest import SPY_MINUTE
from tests.integration.conftest import KEY, SECRET, Sim, wait_for, writer_context
from tests.integration.test_chaos import Rig, _wait
from tests.integration.test_ml_live_session import LOOSE_RISK
from trader import REPO_ROOT
from trader.data import BAR_STRUCT, load_minute_bars, to_bar_array
from trader.exceptions import TemporaryError
from trader.promote import GateResult, promote
from trader.strategy import WARMUP_BARS, get_strategy

pytestmark = pytest.mark.integration
PARAMS = {"fast": 3, "slow": 8, "rsi_window": 5, "rsi_overbought": 90.0, "qty": 10}
SPEC = get_strategy("ema_rsi")
P = SPEC.params(PARAMS).to_array()


def _bars(start: str, end: str) -> pd.DataFrame:
    return load_minute_bars(SPY_MINUTE, session="regular", start=start, end=end)


def test_alpaca_bars_pages_through_the_simulator(
    start_sim: Callable[..., Sim], monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = start_sim(start="2011-01-04")  # 2011-01-03 is history, 01-04 the future
    monkeypatch.setattr(sim_server, "MAX_BARS_PER_PAGE", 100)
    day = _bars("2011-01-03", "2011-01-03")
    ts = day.index.as_unit("ns").asi8.tolist()

    async def fetch(**kw: Any) -> list[dict[str, Any]]:
        async with AlpacaREST(sim.url, KEY, SECRET) as rest:
            got = await rest.bars(["SPY", "AAPL"], "1Min", "2011-01-03", **kw)
        assert set(got) <= {"SPY"}
        return got.get("SPY", [])

    def times(rows: list[dict[str, Any]]) -> list[int]:
        return [pd.Timestamp(r["t"]).value for r in rows]

    every = asyncio.run(fetch(end="2011-01-05"))  # 4 pages of <= 100; 01-04 not ended
    assert times(every) == ts
    assert [r["c"] for r in every] == day["close"].tolist()
    assert times(asyncio.run(fetch(limit=150))) == ts[:150]  # 100 + 50
    newest = asyncio.run(fetch(end="2011-01-03T20:00:00Z", limit=250, sort="desc"))
    assert times(newest) == ts[ts.index(pd.Timestamp("2011-01-03T20:00Z").value) :: -1][:250]
    assert asyncio.run(fetch(end="2011-01-02")) == []


@pytest.fixture
def engine_ctx(tmp_path: Path) -> Callable[..., ComponentContext]:
    """Factory: the context of an engine whose broker is ``url`` trading ``ema_rsi``
    with :data:`PARAMS` (or, with ``ml=True``, the committed ``models/ml_threshold/1``);
    the audit socket has no writer: events stay queued."""
    models = tmp_path / "models"
    promote(models, "ema_rsi", "t", PARAMS, {}, [GateResult("t", 1, ">=", 0)], [SPY_MINUTE])

    def make(url: str, ml: bool = False) -> ComponentContext:
        ctx = writer_context("", tmp_path / "var")
        broker = BrokerEndpoints(
            mode="sim",
            trading_url=url,
            trade_stream_url=url.replace("http", "ws") + "/stream",
            data_stream_url=url.replace("http", "ws") + "/v2/iex",
            key_id=KEY,
            secret_key=SECRET,
        )
        artefact = ("ml_threshold", "1", REPO_ROOT / "models") if ml else ("ema_rsi", "t", models)
        cfg = ctx.cfg.model_copy(
            update=dict(zip(("strategy", "strategy_version", "models_dir"), artefact, strict=True))
        )
        return dataclasses.replace(ctx, cfg=cfg, broker=broker)

    return make


def _sessions(rec: np.ndarray) -> np.ndarray:
    """The XNYS session (its open, ns) of each bar."""
    return np.array([session_of(t).open_ns for t in rec["ts_event"].tolist()])


def _payload(r: np.void) -> bytes:
    return BAR_STRUCT.pack(*(r[k].item() for k in r.dtype.names))


def test_engine_warms_up_from_the_simulator_and_joins_the_stream_without_a_gap(
    start_sim: Callable[..., Sim], engine_ctx: Callable[..., ComponentContext]
) -> None:
    sim = start_sim(start="2011-01-04", speed=600.0, autostart=True)  # a bar per 0.1 s
    wait_for(lambda: sim.status()["bars_sent"] >= 20, "20 bars of 2011-01-04")
    zctx: zmq.Context[Any] = zmq.Context()
    try:
        eng = Engine(engine_ctx(sim.url), zctx)
        warm_up_from_broker(eng, eng.ctx)
        w = eng.warmup
        prev, day = (
            to_bar_array(_bars("2011-01-03", "2011-01-03")),
            _bars("2011-01-04", "2011-01-04"),
        )
        rec = to_bar_array(day)
        k = w["in_session"]  # the 2011-01-04 bars that had ended at the fetch
        assert (w["status"], w["before_session"], w["bars"]) == ("warm", WARMUP_BARS, 390 + k)
        assert k >= 20
        assert w["first_bar_ts"] == prev["ts_event"][-WARMUP_BARS]
        assert w["last_bar_ts"] == rec["ts_event"][k - 1] == eng.last_bar_ts
        # the rule: the fold of the 390 bars before the session and the session's bars
        closes = np.concatenate([prev["close"][-WARMUP_BARS:], rec["close"][:k]])
        assert np.array_equal(eng.state, SPEC.warm_state(P, closes))

        # The seam: the last history bar streamed again is dropped, not stepped twice.
        state = eng.state.copy()
        eng.on_bar(_payload(rec[k - 1]))
        assert (eng.stale_bars, eng.bars) == (1, 0)
        assert np.array_equal(eng.state, state)
        # The first streamed bar comes 5 bars later: the 4 in between are fetched first.
        wait_for(lambda: sim.status()["bars_sent"] >= k + 6, "the bars after the warm-up")
        eng.on_bar(_payload(rec[k + 4]))
        caught = eng.warmup["caught_up"]
        assert caught["bars"] == 4
        assert (caught["first_bar_ts"], caught["last_bar_ts"]) == tuple(
            rec["ts_event"][[k, k + 3]].tolist()
        )
        assert (eng.bars, eng.last_bar_ts) == (1, rec["ts_event"][k + 4])
        closes = np.concatenate([prev["close"][-WARMUP_BARS:], rec["close"][: k + 5]])
        assert np.array_equal(eng.state, SPEC.warm_state(P, closes))
        kinds = [(e[1], e[2]["status"]) for e in eng.audit._pending]
        assert kinds[:2] == [("strategy_warmup", "warm"), ("strategy_warmup", "caught_up")]
        # A dropped stream: the feed announces the new connection, whose first bar comes
        # 4 bars after the last one stepped; those 4 are fetched first.
        eng.on_feed_connected()
        wait_for(lambda: sim.status()["bars_sent"] >= k + 10, "the bars after the drop")
        eng.on_bar(_payload(rec[k + 9]))
        caught = eng.warmup["caught_up"]
        assert (caught["bars"], caught["first_bar_ts"], caught["last_bar_ts"]) == (
            4,
            *rec["ts_event"][[k + 5, k + 8]].tolist(),
        )
        closes = np.concatenate([prev["close"][-WARMUP_BARS:], rec["close"][: k + 10]])
        assert np.array_equal(eng.state, SPEC.warm_state(P, closes))
    finally:
        zctx.destroy(linger=0)


def test_engine_when_history_unavailable_then_refuses_or_starts_cold_audited(
    engine_ctx: Callable[..., ComponentContext],
) -> None:
    ctx = engine_ctx("http://127.0.0.1:1")  # nothing listens there
    zctx: zmq.Context[Any] = zmq.Context()
    try:
        eng = Engine(ctx, zctx)
        with pytest.raises(TemporaryError, match="bar history for the strategy warm-up"):
            warm_up_from_broker(eng, ctx)
        cfg = ctx.cfg.model_copy(
            update={"recovery": ctx.cfg.recovery.model_copy(update={"cold_start": True})}
        )
        eng = Engine(dataclasses.replace(ctx, cfg=cfg), zctx)
        warm_up_from_broker(eng, eng.ctx)
        assert eng.warmup["status"] == "cold"
        assert "bar history" in eng.warmup["reason"]
        ((_, event, fields),) = eng.audit._pending
        assert (event, fields["status"]) == ("strategy_warmup", "cold")
    finally:
        zctx.destroy(linger=0)


def _restart_mid_session(ctx: ComponentContext, rec: np.ndarray, restart: int) -> list[float]:
    """Stream ``rec`` to one engine; warm a second up at bar ``restart`` on the rule's
    bars (the 390 before its session and the session's so far) and stream it the rest.
    Both must hold the same strategy state (kernel and model features) at every bar
    after; returns the targets after the restart."""
    first = int(np.flatnonzero(_sessions(rec) == _sessions(rec)[restart])[0])
    zctx: zmq.Context[Any] = zmq.Context()
    try:
        running, restarted = Engine(ctx, zctx), Engine(ctx, zctx)

        def same() -> bool:
            if running.model is None or restarted.model is None:
                return np.array_equal(restarted.state, running.state)
            return np.array_equal(restarted.state, running.state) and np.array_equal(
                restarted.model.state, running.model.state
            )

        for r in rec[:restart]:
            running.on_bar(_payload(r))
        restarted.warm_up(rec[first - WARMUP_BARS : restart], WARMUP_BARS, 0.0)
        assert same()
        targets = []
        for r in rec[restart:]:
            running.on_bar(_payload(r))
            restarted.on_bar(_payload(r))
            assert same()
            assert restarted.target == running.target
            targets.append(running.target)
        return targets
    finally:
        zctx.destroy(linger=0)


def test_restarted_engine_ends_in_the_state_of_one_that_never_stopped(
    engine_ctx: Callable[..., ComponentContext],
) -> None:
    """Three sessions streamed, the restart 100 bars into the third; and the state at a
    session's first bar is the fold of the 390 bars before it."""
    rec = to_bar_array(_bars("2011-01-03", "2011-01-05"))
    third = int(np.flatnonzero(_sessions(rec) == _sessions(rec)[-1])[0])
    ctx = engine_ctx("")  # no broker: bars are given, the gate denies (no account)
    targets = _restart_mid_session(ctx, rec, third + 100)
    assert len(set(targets)) == 2  # the strategy went long and flat after the restart
    before = rec["close"][third - WARMUP_BARS : third]
    assert np.array_equal(SPEC.warm_state(P, before), _state_at(ctx, rec, third))


def test_restarted_ml_engine_holds_the_features_of_one_that_never_stopped(
    engine_ctx: Callable[..., ComponentContext],
) -> None:
    """The same with the ONNX model's streaming features (``models/ml_threshold/1``)."""
    rec = to_bar_array(_bars("2011-01-03", "2011-01-05"))
    third = int(np.flatnonzero(_sessions(rec) == _sessions(rec)[-1])[0])
    targets = _restart_mid_session(engine_ctx("", ml=True), rec, third + 100)
    assert len(set(targets)) == 2


def _state_at(ctx: ComponentContext, rec: np.ndarray, i: int) -> np.ndarray:
    """The state of an engine streamed ``rec[:i]`` and then rebuilt for bar ``i``'s
    session (its rebuild without stepping bar ``i``)."""
    zctx: zmq.Context[Any] = zmq.Context()
    try:
        eng = Engine(ctx, zctx)
        for r in rec[:i]:
            eng.on_bar(_payload(r))
        eng._rebuild(int(rec["ts_event"][i]))
        return eng.state.copy()
    finally:
        zctx.destroy(linger=0)


def _rule_targets(rec: np.ndarray, first: int) -> np.ndarray:
    """The rule of :mod:`live.warmup`, written out: the strategy's target at every bar
    from ``first`` on, the state rebuilt at each session's first bar from the 390 bars
    before it (an implementation apart from the engine's ring)."""
    day = _sessions(rec)
    close = rec["close"].tolist()
    out, state = [], SPEC.new_state()
    for i in range(first, len(rec)):
        if i == first or day[i] != day[i - 1]:
            state = SPEC.warm_state(P, rec["close"][max(0, i - WARMUP_BARS) : i])
        out.append(SPEC.step_nb(state, P, close[i], np.nan))
    return np.array(out)


@pytest.mark.timeout(300)
def test_engine_killed_mid_session_restarts_warm_and_sends_the_uninterrupted_orders(
    tmp_path: Path, database: str
) -> None:
    """kill -9 of the engine while it holds a position on the real 2011-01-04; the
    daemon stops, starts again on the simulator that kept replaying, and its engine
    warms up on the 390 bars before the session and the session's so far. Every intent
    of both sessions carries the target of an uninterrupted run at its bar, and each
    session sends exactly the uninterrupted run's orders over the bars it traded (the
    restart's first bar may also catch up what the kill left undone)."""
    migrate(database)
    # A bar per 0.1 s: the restart (~45 s on a loaded 2-core machine) lands mid-session
    # (of 2011-01-04, or of 01-05 on a slow day).
    rig = Rig(
        tmp_path, database, 0, start="2011-01-04", end="2011-01-05", speed=600.0,
        risk_toml=LOOSE_RISK,
    )  # fmt: skip

    def sent(n: int) -> bool:  # n intents sent by this session's engine
        return bool(rig.get("/status")["components"]["engine"]["intents"] >= n)

    try:
        rig.start()
        _wait(lambda: sent(3) and rig.broker("/positions"), "3 orders and a position")
        os.kill(rig.component_pid("engine"), signal.SIGKILL)
        assert rig.wait_exit() == 1  # a component died: the session stops
        rig.start()
        _wait(lambda: sent(3), "3 orders after the restart")
        requests.post(f"{rig.sim_url}/sim/drop_streams", timeout=10).raise_for_status()
        _wait(lambda: sent(6), "3 orders after the streams dropped")
        rig.stop()
    finally:
        rig.close()
    with psycopg.connect(database) as c:
        summaries = [r[0] for r in c.execute("SELECT summary FROM sessions ORDER BY started_at")]
        warm = c.execute(
            "SELECT session_id, status, metadata FROM order_audit_trail"
            " WHERE event_type = 'strategy_warmup' ORDER BY id"
        ).fetchall()
        intents = c.execute(
            "SELECT session_id, (metadata->>'bar_ts')::bigint, (metadata->>'target')::float8,"
            " CASE side WHEN 'buy' THEN qty ELSE -qty END FROM order_audit_trail"
            " WHERE event_type = 'intent' ORDER BY id"
        ).fetchall()
    rec = to_bar_array(_bars("2011-01-03", "2011-01-05"))
    ts = rec["ts_event"][WARMUP_BARS:].tolist()  # the replayed bars
    rule = _rule_targets(rec, WARMUP_BARS)
    targets = dict(zip(ts, rule.tolist(), strict=True))
    orders = {t: d for t, d in zip(ts, np.diff(rule, prepend=0.0).tolist(), strict=True) if d}
    first, second = (s["session_id"] for s in summaries)
    w1 = [(st, m) for sid, st, m in warm if sid == first]
    w2 = [(st, m) for sid, st, m in warm if sid == second]
    # The first start warmed up on the 390 bars before the day; the restart on those
    # and the day's bars up to it, ending on the uninterrupted run's target. Later
    # events are bars caught up (at the first streamed bar, after a dropped stream).
    assert [(st, m["bars"], m["in_session"]) for st, m in w1[:1]] == [("warm", WARMUP_BARS, 0)]
    assert [st for st, _ in w1[1:] + w2[1:]] == ["caught_up"] * (len(w1) + len(w2) - 2)
    restart = w2[0][1]
    assert (w2[0][0], restart["before_session"], restart["in_session"] > 0) == (
        "warm",
        WARMUP_BARS,
        True,
    )
    assert restart["target"] == targets[restart["last_bar_ts"]]
    # Every intent carries the uninterrupted run's target at its bar.
    assert [(t, target) for _, t, target, _ in intents] == [
        (t, targets[t]) for _, t, _, _ in intents
    ]
    # Each session sent the uninterrupted run's orders over the bars it traded, but for
    # the bars it stepped without orders (caught up) and the bar after them, whose
    # order also does what they would have (checked by its target above).
    seam = ts.index(restart["last_bar_ts"]) + 1  # the restart's first live bar
    traded = {
        first: (ts[0], summaries[0]["last_bar_ts"], set()),
        second: (ts[seam], summaries[1]["last_bar_ts"], {ts[seam]}),
    }
    for sid, events in ((first, w1), (second, w2)):
        for st, m in events:
            if st == "caught_up":
                i, j = ts.index(m["first_bar_ts"]), ts.index(m["last_bar_ts"])
                traded[sid][2].update(ts[i : j + 2])
    for sid, (lo, hi, skipped) in traded.items():
        live = {
            t: float(q) for s, t, _, q in intents if s == sid and lo <= t <= hi and t not in skipped
        }
        want = {t: d for t, d in orders.items() if lo <= t <= hi and t not in skipped}
        assert live == want, (sid, lo, hi, sorted(skipped))
        assert len(want) >= 2, f"session {sid} traded too little to compare"
