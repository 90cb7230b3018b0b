"""Circuit breaker and stops on real prices: the AAPL 2000-09-29 crash, SPY minutes."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from live.config import BreakerLimits, RiskLimits, StopLimits
from live.risk import RiskGate, nb
from live.risk.breaker import CircuitBreaker, Transition
from live.risk.stops import stop_params
from tests.conftest import DAILY, SPY_MINUTE
from tests.unit.test_risk import BASE
from trader.data.loaders import load_daily_csv, load_minute_bars

DAY = 86_400_000_000_000


def breaker(**kw: Any) -> CircuitBreaker:
    base = {
        "daily_loss": 1800,
        "drawdown": 1e9,
        "drawdown_window_s": 300,
        "max_errors": 3,
        "error_window_s": 60,
        "cooldown_s": 3 * 86_400,
    }
    return CircuitBreaker(BreakerLimits.model_validate({**base, **kw}))


def test_aapl_2000_09_29_crash_trips_daily_loss_limit_and_breaker_then_probe_closes_it() -> None:
    bars = load_daily_csv(DAILY["AAPL"]).loc["2000-09-01":"2000-10-31", "close"]
    gate = RiskGate(RiskLimits.model_validate({**BASE, "max_concentration": 1.0}), ("AAPL",))
    gate.set_account(1e6, 1e6)
    br = breaker()
    shares = 200.0
    transitions: list[Transition] = []
    prev = float(bars.iloc[0])
    for ts, close in zip(bars.index.asi8[1:], bars.to_numpy()[1:], strict=True):
        day_pnl = shares * (close - prev)  # marked from the previous session's close
        prev = close
        gate.update_price(0, close, ts)
        gate.set_position(0, shares, 0)
        gate.set_day(day_pnl, max(day_pnl, 0.0), 0)
        t = br.on_pnl(int(ts), day_pnl, int(ts) // DAY)
        if t is not None:
            transitions.append(t)
            gate.breaker = br.state
        buy = gate.check("AAPL", 10, close, now_ns=int(ts))
        if pd.Timestamp(ts).date() == pd.Timestamp("2000-09-29").date():
            assert day_pnl < -5000  # the real -52% close
            assert (buy.control, buy.value) == ("circuit_breaker", "open")
            gate.breaker = nb.BREAKER_CLOSED  # the day's loss limit alone also denies it
            d = gate.check("AAPL", 10, close, now_ns=int(ts))
            assert (d.control, float(d.value)) == ("daily_loss_limit", pytest.approx(day_pnl))
            gate.breaker = br.state
            assert gate.check("AAPL", -50, close, now_ns=int(ts)).approved  # exits pass
        if br.state == nb.BREAKER_PROBE_READY:
            assert buy.approved  # the probe
            br.on_sent(int(ts), "probe-1")
            gate.breaker = br.state
            assert gate.check("AAPL", 10, close, now_ns=int(ts)).control == "circuit_breaker"
            t = br.on_fill(int(ts), "probe-1")
            assert t is not None
            transitions.append(t)
            gate.breaker = br.state
    assert [(t.before, t.after) for t in transitions] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert pd.Timestamp(transitions[0].ts).date().isoformat() == "2000-09-29"
    assert "daily loss" in transitions[0].reason
    assert transitions[1].ts - transitions[0].ts >= 3 * DAY


def test_rapid_drawdown_on_real_spy_minutes_trips_at_the_first_window_fall() -> None:
    close = load_minute_bars(SPY_MINUTE, start="2011-01-04", end="2011-01-04")["close"]
    pnl = 1000.0 * (close - close.iloc[0])
    fall = pnl.rolling("300s").max() - pnl  # the fall within the trailing 5 minutes
    threshold = float(fall.quantile(0.99))
    first = fall.index[fall >= threshold][0]
    br = breaker(drawdown=threshold, drawdown_window_s=300)
    trips = [
        (ts, t)
        for ts, v in zip(pnl.index.asi8, pnl.to_numpy(), strict=True)
        if (t := br.on_pnl(int(ts), float(v), 0)) is not None and t.after == "open"
    ]
    assert trips[0][0] == first.value
    assert "rapid drawdown" in trips[0][1].reason


def test_error_burst_trips_and_failed_probe_reopens() -> None:
    br = breaker(max_errors=3, error_window_s=60, cooldown_s=30)
    s = 1_000_000_000
    assert br.on_error(0, "a") is None
    assert br.on_error(30 * s, "b") is None
    assert br.on_error(61 * s, "c") is None  # "a" left the window
    t = br.on_error(62 * s, "d")
    assert t is not None
    assert (t.before, t.after) == ("closed", "open")
    assert "3 broker errors" in t.reason
    assert br.on_pnl(80 * s, 0.0, 0) is None  # cool-down not over
    t = br.on_pnl(92 * s, 0.0, 0)
    assert t is not None
    assert t.after == "half_open"
    br.on_sent(93 * s, "probe")
    assert br.state == nb.BREAKER_PROBE_IN_FLIGHT
    t = br.on_error(94 * s, "probe")
    assert t is not None
    assert (t.before, t.after) == ("half_open", "open")
    assert br.describe()["trips"] == 2


def test_breaker_restored_from_its_record_keeps_its_cool_down_and_probe_without_a_transition() -> (
    None
):
    # Trip on the real AAPL 2000-09-29 close, then "restart" from the recorded state.
    bars = load_daily_csv(DAILY["AAPL"]).loc["2000-09-25":"2000-10-10", "close"]
    pnl = 200.0 * bars.diff().fillna(0.0)
    br = breaker(cooldown_s=3 * 86_400)
    ts = bars.index.asi8
    trip = next(t for i in range(len(ts)) if (t := br.on_pnl(int(ts[i]), pnl.iloc[i], i)))
    assert (trip.after, pd.Timestamp(trip.ts).date().isoformat()) == ("open", "2000-09-29")
    doc = br.describe()
    assert (doc["since"], doc["opened_at"]) == (trip.ts, trip.ts)
    assert doc["cooldown_end"] == trip.ts + 3 * DAY
    again = breaker(cooldown_s=3 * 86_400)
    again.restore(json.loads(json.dumps(doc)))  # as stored in risk_state (JSON)
    assert again.describe() == doc
    assert again.state == nb.BREAKER_OPEN
    # the same day's loss does not trip it again; the cool-down ends on market time
    after = [(int(t), float(v)) for t, v in zip(ts, pnl, strict=True) if t > trip.ts]
    moves = [(t, m) for t, v in after if (m := again.on_pnl(t, v, doc["loss_tripped_day"]))]
    assert [(m.before, m.after) for _, m in moves] == [("open", "half_open")]
    assert moves[0][0] == min(t for t, _ in after if t >= trip.ts + 3 * DAY)
    # a probe in flight is restored as such: its fill closes the breaker
    again.on_sent(moves[0][0], "probe-1")
    probing = breaker()
    probing.restore(json.loads(json.dumps(again.describe())))
    assert probing.state == nb.BREAKER_PROBE_IN_FLIGHT
    t = probing.on_fill(moves[0][0], "probe-1")
    assert t is not None
    assert (t.before, t.after) == ("half_open", "closed")
    with pytest.raises(ValueError, match="circuit breaker record"):
        probing.restore({"state": "ajar"})


def _run_stops(stops: dict[str, Any], close: pd.Series, entry: int = 0) -> tuple[int, int]:
    """Hold 100 shares bought at bar ``entry``; return (bar index, stop code) of the exit."""
    params = stop_params(StopLimits.model_validate(stops))
    assert params is not None
    state = nb.new_stop_state_nb()
    avg = float(close.iloc[entry])
    for i, (ts, c) in enumerate(zip(close.index.asi8, close.to_numpy(), strict=True)):
        pos = 100.0 if i >= entry else 0.0
        target, code = nb.stop_nb(state, params, 100.0, pos, avg, c, c, c, int(ts))
        if code:
            assert target == 0.0
            # held flat while the strategy keeps asking for a long
            assert nb.stop_nb(state, params, 100.0, 0.0, avg, c, c, c, int(ts))[0] == 0.0
            return i, code
    return -1, 0


@pytest.fixture(scope="module")
def aapl() -> pd.Series:
    return load_daily_csv(DAILY["AAPL"], adjusted=True).loc["2000-03-01":"2000-12-29", "close"]


def test_static_stop_fires_at_the_first_close_below_entry_less_bps(aapl: pd.Series) -> None:
    i, code = _run_stops({"static_bps": 1500}, aapl)
    below = np.flatnonzero(aapl.to_numpy() <= aapl.iloc[0] * 0.85)
    assert (i, code) == (below[0], nb.STOP_STATIC)


def test_trailing_stop_fires_at_the_first_fall_from_the_running_high(aapl: pd.Series) -> None:
    i, code = _run_stops({"trailing_bps": 1000}, aapl)
    fall = aapl / aapl.cummax() - 1
    assert (i, code) == (np.flatnonzero(fall.to_numpy() <= -0.10)[0], nb.STOP_TRAILING)


def test_atr_stop_uses_wilder_atr(aapl: pd.Series) -> None:
    i, code = _run_stops({"atr_multiple": 3, "atr_period": 14}, aapl)
    c = aapl.to_numpy()
    tr = np.abs(np.diff(c, prepend=np.nan))
    tr[0] = 0.0  # high = low = close: the first true range is 0
    atr = np.zeros_like(c)
    for k in range(len(c)):
        atr[k] = tr[: k + 1].mean() if k < 14 else atr[k - 1] + (tr[k] - atr[k - 1]) / 14
    hit = np.flatnonzero((np.arange(len(c)) >= 13) & (c - c[0] <= -3 * atr))
    assert (i, code) == (hit[0], nb.STOP_ATR)


def test_time_stop_fires_after_max_holding(aapl: pd.Series) -> None:
    i, code = _run_stops({"max_holding_s": 10 * 86_400}, aapl, entry=5)
    held = (aapl.index - aapl.index[5]) >= pd.Timedelta(days=10)
    assert (i, code) == (np.flatnonzero(held)[0], nb.STOP_TIME)


def test_stops_off_unless_a_stop_is_set() -> None:
    assert stop_params(None) is None
    assert stop_params(StopLimits()) is None
