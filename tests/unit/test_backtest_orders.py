"""Order types, times in force, costs, latency, participation, portfolio, quotes and
sweeps of the backtester: fill rules on hand-made bars (and hypothesis), everything else
on the real data in data/."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import DAILY, LOB_DIR, SPY_MINUTE
from trader.backtest import (
    BacktestResult,
    ExecutionConfig,
    OrderType,
    TimeInForce,
    run_backtest,
    run_portfolio,
    run_quotes,
)
from trader.backtest.nb import LIMIT, MARKET, STOP, STOP_LIMIT, bar_fill_price_nb
from trader.backtest.sweep import rank_sweep, run_sweep
from trader.data import load_daily_csv, load_lobster, load_minute_bars
from trader.metrics import summary

EMA = {"fast": 5, "slow": 20, "rsi_window": 14, "rsi_overbought": 70.0, "qty": 100}


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return load_minute_bars(SPY_MINUTE, start="2011-01-03", end="2011-01-07")


def _schedule(n: int, at: dict[int, float]) -> np.ndarray:
    """A target schedule for the ``signal`` strategy: NaN (keep) except at ``at``."""
    s = np.full(n, np.nan)
    for i, v in at.items():
        s[i] = v
    return s


def check_accounting(r: BacktestResult, close: pd.Series) -> None:
    """The identities that must hold at every bar of every run."""
    f = r.fills
    bar_idx = f["bar"].to_numpy()
    paid = np.zeros(len(r.bars))
    traded = np.zeros(len(r.bars))
    np.add.at(paid, bar_idx, (f["qty"] * f["price"] + f["commission"]).to_numpy())
    np.add.at(traded, bar_idx, f["qty"].to_numpy())
    np.testing.assert_allclose(
        r.bars["cash"], r.initial_cash - np.cumsum(paid), rtol=1e-12, atol=1e-6
    )
    np.testing.assert_array_equal(r.bars["position"], np.cumsum(traded))
    np.testing.assert_allclose(
        r.bars["equity"],
        r.bars["cash"] + r.bars["position"] * close.to_numpy(),
        rtol=1e-12,
        atol=1e-6,
    )
    o = r.orders
    by_order = f.groupby("order_id")["qty"].sum().abs()
    np.testing.assert_allclose(o.loc[by_order.index, "filled"], by_order, rtol=1e-12)
    assert (o["filled"] <= o["qty"]).all()
    assert (o.loc[o["status"] == "filled", "filled"] == o.loc[o["status"] == "filled", "qty"]).all()
    vwap = (f["qty"].abs() * f["price"]).groupby(f["order_id"]).sum() / by_order
    np.testing.assert_allclose(o.loc[vwap.index, "avg_price"], vwap, rtol=1e-12)
    # every fill lies in its order's life: after arrival, not after it ended
    of = o.loc[f["order_id"].to_numpy()]
    assert (f.index >= of["ts_arrival"].to_numpy()).all()
    done = of["ts_done"].to_numpy()
    assert ((pd.isna(done)) | (f.index <= done)).all()
    assert (np.sign(f["qty"]).to_numpy() == of["side"].to_numpy()).all()


# -- fill rules on one bar ---------------------------------------------------------------
# o=100, h=103, l=99, c=101: the low is nearer the open, so the path is 100 -> 99 -> 103 -> 101
BAR = (100.0, 103.0, 99.0, 101.0)


@pytest.mark.parametrize(
    ("side", "otype", "limit", "stop", "expected"),
    [
        (1, MARKET, np.nan, np.nan, (100.0, 0, True)),
        (1, LIMIT, 99.5, np.nan, (99.5, 0, False)),  # the path dips to 99
        (1, LIMIT, 101.0, np.nan, (100.0, 0, False)),  # already below the limit: the open
        (1, LIMIT, 98.0, np.nan, (np.nan, 0, False)),
        (-1, LIMIT, 102.0, np.nan, (102.0, 0, False)),
        (-1, LIMIT, 104.0, np.nan, (np.nan, 0, False)),
        (1, STOP, np.nan, 102.0, (102.0, 1, True)),  # triggered on the way 99 -> 103
        (1, STOP, np.nan, 99.5, (100.0, 1, True)),  # open already beyond the stop
        (-1, STOP, np.nan, 99.5, (99.5, 1, True)),
        (-1, STOP, np.nan, 98.0, (np.nan, 0, False)),
        (1, STOP_LIMIT, 102.5, 102.0, (102.0, 1, False)),  # trigger price within the limit
        (1, STOP_LIMIT, 101.5, 102.0, (101.5, 1, False)),  # after 103 the path falls to 101
        (1, STOP_LIMIT, 100.5, 102.0, (np.nan, 1, False)),  # triggered, limit never reached
    ],
)
def test_bar_fill_price_when_path_open_low_high_close_then_documented_fills(
    side: int, otype: int, limit: float, stop: float, expected: tuple[float, int, bool]
) -> None:
    price, trig, market_like = bar_fill_price_nb(side, otype, limit, stop, 0, *BAR)
    np.testing.assert_equal(price, expected[0])
    assert (trig, market_like) == expected[1:]


def test_bar_fill_price_when_high_nearer_then_high_visited_first() -> None:
    # o=100, h=100.5, l=97, c=98: path 100 -> 100.5 -> 97 -> 98. A sell stop at 99 and a
    # sell limit at 100.4 both fill; a buy stop-limit (stop 100.2, limit 98) triggers on
    # the way up and fills at 98 on the way down.
    b = (100.0, 100.5, 97.0, 98.0)
    assert bar_fill_price_nb(-1, STOP, np.nan, 99.0, 0, *b)[0] == 99.0
    assert bar_fill_price_nb(-1, LIMIT, 100.4, np.nan, 0, *b)[0] == 100.4
    assert bar_fill_price_nb(1, STOP_LIMIT, 98.0, 100.2, 0, *b)[:2] == (98.0, 1)
    # already triggered on an earlier bar: a limit order from this bar's open
    assert bar_fill_price_nb(1, STOP_LIMIT, 100.2, 200.0, 1, *b)[0] == 100.0


@settings(max_examples=300, deadline=None)
@given(
    o=st.floats(50, 150),
    up=st.floats(0, 10),
    down=st.floats(0, 10),
    c_frac=st.floats(0, 1),
    side=st.sampled_from([1, -1]),
    otype=st.sampled_from([MARKET, LIMIT, STOP, STOP_LIMIT]),
    lim=st.floats(40, 160),
    stp=st.floats(40, 160),
)
def test_bar_fill_price_when_any_bar_then_price_in_range_and_respects_limit_and_stop(
    o: float,
    up: float,
    down: float,
    c_frac: float,
    side: int,
    otype: int,
    lim: float,
    stp: float,
) -> None:
    h, lo = o + up, o - down
    c = lo + c_frac * (h - lo)
    price, trig, market_like = bar_fill_price_nb(side, otype, lim, stp, 0, o, h, lo, c)
    if np.isnan(price):
        assert otype != MARKET
        return
    assert lo <= price <= h
    if otype in (LIMIT, STOP_LIMIT):
        assert side * (price - lim) <= 0  # at the limit or better
        assert not market_like
    if otype in (STOP, STOP_LIMIT):
        assert trig == 1
        if otype == STOP:
            assert side * (price - stp) >= 0  # a stop never fills before its price


# -- orders on real minute bars --------------------------------------------------------
def test_market_order_when_costs_then_next_open_with_slippage_and_commission_formula(
    bars: pd.DataFrame,
) -> None:
    n = len(bars)
    sig = _schedule(n, {10: 300, 50: -200, 400: 0})
    cfg = ExecutionConfig(
        commission_per_share=0.005,
        commission_bps=0.3,
        commission_min=1.0,
        slippage_bps=2.0,
        spread_bps=2.0,
    )
    r = run_backtest(bars, "signal", {"qty": 1}, config=cfg, signal=sig)
    f = r.fills
    np.testing.assert_array_equal(f["bar"], [11, 51, 401])
    np.testing.assert_array_equal(f["qty"], [300, -500, 200])
    opens = bars["open"].to_numpy()[[11, 51, 401]]
    side = np.sign(f["qty"].to_numpy())
    np.testing.assert_allclose(f["price"], opens * (1 + side * 3e-4), rtol=1e-13)
    q, p = f["qty"].abs().to_numpy(), f["price"].to_numpy()
    np.testing.assert_allclose(
        f["commission"], np.maximum(1.0, q * 0.005 + q * p * 0.3e-4), rtol=1e-13
    )
    np.testing.assert_allclose(f["slippage"], q * opens * 3e-4, rtol=1e-12)
    check_accounting(r, bars["close"])


def test_latency_when_longer_than_a_bar_then_fill_at_first_bar_after_arrival(
    bars: pd.DataFrame,
) -> None:
    sig = _schedule(len(bars), {10: 100})
    for latency_s, fill_bar in ((0, 11), (1, 12), (60, 12), (90, 13)):
        cfg = ExecutionConfig(latency_ns=latency_s * 1_000_000_000)
        r = run_backtest(bars, "signal", config=cfg, signal=sig)
        assert r.fills["bar"].tolist() == [fill_bar], latency_s
        arrival = r.orders["ts_arrival"].iloc[0]
        assert arrival == bars.index[10] + pd.Timedelta(seconds=60 + latency_s)


def test_participation_cap_when_order_exceeds_volume_share_then_partial_fills(
    bars: pd.DataFrame,
) -> None:
    sig = _schedule(len(bars), {5: 200_000})
    cfg = ExecutionConfig(max_participation=0.01, cash_check=False)
    r = run_backtest(bars, "signal", config=cfg, signal=sig)
    f = r.fills
    assert len(f) > 1
    assert f["qty"].sum() == 200_000
    caps = np.floor(0.01 * bars["volume"].to_numpy()[f["bar"].to_numpy()])
    assert (f["qty"].to_numpy()[:-1] == caps[:-1]).all()  # every fill but the last at the cap
    assert f["qty"].iloc[-1] <= caps[-1]
    assert (np.diff(f["bar"]) >= 1).all()
    assert r.orders["status"].tolist() == ["filled"]
    assert len(r.orders) == 1
    check_accounting(r, bars["close"])


def test_cash_check_when_target_unaffordable_then_buys_what_cash_pays(
    bars: pd.DataFrame,
) -> None:
    sig = _schedule(len(bars), {3: 10_000})
    r = run_backtest(
        bars,
        "signal",
        config=ExecutionConfig(commission_bps=1.0),
        initial_cash=50_000.0,
        signal=sig,
    )
    assert (r.bars["cash"] >= 0).all()
    bought = r.fills["qty"].sum()
    assert 0 < bought < 10_000
    assert r.bars["cash"].iloc[-1] < r.fills["price"].iloc[-1] * 1.001  # nothing more affordable
    check_accounting(r, bars["close"])


def test_day_limit_when_never_reached_then_expires_next_session_and_is_resent(
    bars: pd.DataFrame,
) -> None:
    sig = _schedule(len(bars), {3: 100})
    cfg = ExecutionConfig(order_type=OrderType.LIMIT, limit_offset_bps=500)
    r = run_backtest(bars, "signal", config=cfg, signal=sig)
    assert r.fills.empty
    o = r.orders
    assert len(o) == 5  # one per session of the week: expired, then resent
    assert o["status"].iloc[:-1].eq("expired").all()
    assert o["status"].iloc[-1] == "working"
    days = o["ts_decision"].dt.tz_convert("America/New_York").dt.date
    assert days.nunique() == 5
    np.testing.assert_allclose(
        o["limit"], np.round(bars["close"].to_numpy()[o["bar"].to_numpy()] * 0.95, 2), rtol=1e-12
    )


def test_gtc_and_ioc_when_limit_far_away_then_working_or_cancelled_each_decision(
    bars: pd.DataFrame,
) -> None:
    sig = _schedule(len(bars), {3: 100})
    gtc = run_backtest(
        bars,
        "signal",
        signal=sig,
        config=ExecutionConfig(
            order_type=OrderType.LIMIT, limit_offset_bps=500, time_in_force=TimeInForce.GTC
        ),
    )
    assert gtc.orders["status"].tolist() == ["working"]
    ioc = run_backtest(
        bars,
        "signal",
        signal=sig,
        config=ExecutionConfig(
            order_type=OrderType.LIMIT, limit_offset_bps=500, time_in_force=TimeInForce.IOC
        ),
    )
    # sent after the decision bar, cancelled after its bar, resent at the next decision
    assert len(ioc.orders) == len(bars) - 3
    assert ioc.orders["status"].iloc[:-1].eq("cancelled").all()
    assert ioc.fills.empty


def test_stop_and_limit_entries_when_ema_strategy_then_fills_obey_prices(
    bars: pd.DataFrame,
) -> None:
    for cfg in (
        ExecutionConfig(order_type=OrderType.STOP, stop_offset_bps=2, slippage_bps=1),
        ExecutionConfig(order_type=OrderType.LIMIT, limit_offset_bps=2),
        ExecutionConfig(
            order_type=OrderType.STOP_LIMIT,
            stop_offset_bps=2,
            limit_offset_bps=1,
            time_in_force=TimeInForce.GTC,
        ),
    ):
        r = run_backtest(bars, params=EMA, config=cfg)
        assert len(r.fills) > 20, cfg.order_type
        of = r.orders.loc[r.fills["order_id"].to_numpy()]
        side = of["side"].to_numpy()
        raw = (
            r.fills["price"].to_numpy()
            - r.fills["slippage"].to_numpy() / r.fills["qty"].abs().to_numpy() * side
        )
        hi = bars["high"].to_numpy()[r.fills["bar"].to_numpy()]
        lo = bars["low"].to_numpy()[r.fills["bar"].to_numpy()]
        assert (raw <= hi + 1e-9).all()
        assert (raw >= lo - 1e-9).all()
        if cfg.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT):
            assert (side * (raw - of["limit"].to_numpy()) <= 1e-9).all()
        else:
            assert (side * (raw - of["stop"].to_numpy()) >= -1e-9).all()
        check_accounting(r, bars["close"])


def test_no_look_ahead_when_data_truncated_then_decisions_and_fills_unchanged(
    bars: pd.DataFrame,
) -> None:
    cfg = ExecutionConfig(
        order_type=OrderType.STOP_LIMIT,
        stop_offset_bps=1,
        limit_offset_bps=2,
        time_in_force=TimeInForce.GTC,
        latency_ns=75_000_000_000,
        max_participation=0.002,
        commission_per_share=0.005,
        commission_min=1.0,
        slippage_bps=1,
    )
    params = {**EMA, "qty": 3000}
    full = run_backtest(bars, params=params, config=cfg)
    static = [
        "symbol",
        "bar",
        "ts_decision",
        "ts_arrival",
        "side",
        "type",
        "target",
        "limit",
        "stop",
    ]
    assert len(full.fills) > len(full.orders) > 20  # partial fills happen
    for cut in (137, 800, 1500):
        part = run_backtest(bars.iloc[:cut], params=params, config=cfg)
        pd.testing.assert_frame_equal(part.fills, full.fills[full.fills["bar"] < cut])
        pd.testing.assert_frame_equal(part.bars, full.bars.iloc[:cut])
        decided = full.orders[full.orders["bar"] < cut]
        pd.testing.assert_frame_equal(part.orders[static], decided[static])


# -- portfolio ---------------------------------------------------------------------------
def test_portfolio_when_three_daily_symbols_then_shared_cash_and_identities() -> None:
    daily = {s: load_daily_csv(p, adjusted=True).loc["2009":"2012"] for s, p in DAILY.items()}
    cfg = ExecutionConfig(commission_per_share=0.005, commission_min=1.0, slippage_bps=5)
    params = {"fast": 10, "slow": 40, "rsi_window": 14, "rsi_overbought": 75.0, "qty": 400}
    pr = run_portfolio(daily, params=params, initial_cash=100_000.0, config=cfg)
    assert set(pr.fills["symbol"]) == set(DAILY)
    marked = (pr.positions * pr.close.ffill().fillna(0)).sum(axis=1)
    np.testing.assert_allclose(pr.equity["equity"], pr.equity["cash"] + marked, rtol=1e-12)
    assert (pr.equity["cash"] >= 0).all()
    # each symbol's slice satisfies the single-symbol identities
    for s in DAILY:
        check_accounting(pr.symbol(s), pr.close[s].ffill())
    # a one-symbol portfolio is exactly run_backtest
    one = run_portfolio({"MSFT": daily["MSFT"]}, params=params, config=cfg)
    single = run_backtest(daily["MSFT"], params=params, config=cfg)
    np.testing.assert_array_equal(one.equity["equity"], single.bars["equity"])
    pd.testing.assert_frame_equal(one.fills.drop(columns="symbol"), single.fills)


# -- quotes ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lobster() -> pd.DataFrame:
    msg = LOB_DIR / "AAPL_2012-06-21_34200000_37800000_message_50.csv"
    book = LOB_DIR / "AAPL_2012-06-21_34200000_37800000_orderbook_L1-of-50.csv"
    return load_lobster(msg, book, "2012-06-21")


def test_quotes_when_lobster_hour_then_fills_at_touch_within_displayed_size(
    lobster: pd.DataFrame,
) -> None:
    params = {"fast": 200, "slow": 1000, "rsi_window": 500, "rsi_overbought": 70.0, "qty": 500}
    cfg = ExecutionConfig(latency_ns=250_000, commission_per_share=0.0035, slippage_bps=0.0)
    r = run_quotes(lobster, params=params, config=cfg)
    f = r.fills
    assert len(r.orders) > 5
    assert len(f) > len(r.orders)
    at = lobster.iloc[f["bar"].to_numpy()]
    buy = f["qty"].to_numpy() > 0
    np.testing.assert_array_equal(f["price"].to_numpy()[buy], at["ask_price"].to_numpy()[buy])
    np.testing.assert_array_equal(f["price"].to_numpy()[~buy], at["bid_price"].to_numpy()[~buy])
    shown = np.where(buy, at["ask_size"], at["bid_size"])
    assert (f["qty"].abs().to_numpy() <= shown).all()
    # never the book the decision saw: the first fill of an order is after its decision
    first = f.groupby("order_id")["bar"].min()
    assert (first.to_numpy() > r.orders.loc[first.index, "bar"].to_numpy()).all()
    check_accounting(r, r.bars["close"].ffill())


# -- sweeps ------------------------------------------------------------------------------
def test_sweep_when_grid_then_stats_equal_single_backtests_and_metrics(
    bars: pd.DataFrame,
) -> None:
    grid = {"fast": [3, 5, 8], "slow": [5, 20, 30]}
    cfg = ExecutionConfig(commission_per_share=0.005, slippage_bps=1.0)
    res = run_sweep(
        bars, grid, fixed={"rsi_window": 14, "qty": 100}, config=cfg, chunk_size=4, progress=False
    )
    assert len(res) == 7
    assert res.attrs["n_invalid"] == 2
    for _, row in res.iterrows():
        p = {"fast": int(row["fast"]), "slow": int(row["slow"]), "rsi_window": 14, "qty": 100}
        m = summary(run_backtest(bars, params=p, config=cfg))
        assert row["n_fills"] == m["n_trades"]
        for k in (
            "total_return",
            "final_equity",
            "max_drawdown",
            "sharpe",
            "commission",
            "exposure",
        ):
            assert row[k] == pytest.approx(m[k], rel=1e-9, abs=1e-12), k
    ranked = rank_sweep(res, "sharpe")
    assert ranked["sharpe"].is_monotonic_decreasing
    assert rank_sweep(res, "max_drawdown")["max_drawdown"].is_monotonic_increasing
