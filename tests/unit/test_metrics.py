"""Metrics, FIFO round trips and plots: hand-computed cases and identities on a real SPY
minute-bar backtest."""

from __future__ import annotations

import json
from collections.abc import Iterator

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure

from tests.conftest import SPY_MINUTE
from trader.backtest import BacktestResult, run_backtest
from trader.data import load_minute_bars
from trader.metrics import (
    annualised_return,
    annualised_volatility,
    average_loss,
    average_win,
    calmar_ratio,
    daily_returns,
    downside_deviation,
    exposure,
    max_drawdown,
    max_drawdown_duration,
    monthly_returns,
    profit_factor,
    sharpe_ratio,
    sortino_ratio,
    summary,
    trade_list,
    turnover,
    win_rate,
)
from trader.metrics.plots import (
    plot_equity_drawdown,
    plot_monthly_returns,
    plot_sweep_heatmap,
    plot_trades,
)
from trader.metrics.trades import TRADE_COLUMNS

plt.switch_backend("Agg")

PARAMS = {"fast": 12, "slow": 26, "rsi_window": 14, "rsi_overbought": 70.0, "qty": 100}
T0 = pd.Timestamp("2011-01-03 15:00", tz="UTC")  # 10:00 New York


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def spy() -> BacktestResult:
    """ema_rsi on real SPY minute bars, 2011-01-03..2011-01-28 (19 trading days); the
    position is flat after the last bar, so every fill belongs to a closed round trip."""
    bars = load_minute_bars(SPY_MINUTE, start="2011-01-03", end="2011-01-28")
    return run_backtest(bars, params=PARAMS, commission_bps=1.0, slippage_bps=1.0)


def _minutes(n: int, start: pd.Timestamp = T0) -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq="1min", name="ts")


def _result_from_fills(
    fills: list[tuple[int, float, float, float]], n_bars: int, initial_cash: float = 10_000.0
) -> BacktestResult:
    """A consistent BacktestResult from (bar, qty, price, commission) fills, close 10 USD."""
    idx = _minutes(n_bars)
    f = pd.DataFrame(fills, columns=["bar", "qty", "price", "commission"])
    f.index = pd.DatetimeIndex(idx[f["bar"].to_numpy()], name="ts")
    flow = np.zeros(n_bars)
    qty = np.zeros(n_bars)
    np.add.at(flow, f["bar"].to_numpy(), -(f["qty"] * f["price"] + f["commission"]).to_numpy())
    np.add.at(qty, f["bar"].to_numpy(), f["qty"].to_numpy())
    close = np.full(n_bars, 10.0)
    cash, position = initial_cash + np.cumsum(flow), np.cumsum(qty)
    bars = pd.DataFrame(
        {"close": close, "cash": cash, "position": position, "equity": cash + position * close},
        index=idx,
    )
    return BacktestResult(bars=bars, fills=f, initial_cash=initial_cash)


#: Buy 100 @ 10, add 50 @ 12, sell 120 @ 13 (closes 100 + 20: partial close of the second
#: lot), sell 80 @ 11 (closes the last 30 and flips to 50 short), buy 50 @ 9 (flat).
#: Commissions are 1 cent per share, 0.9 cent on the last fill.
HAND_FILLS = [
    (1, 100.0, 10.0, 1.0),
    (2, 50.0, 12.0, 0.5),
    (4, -120.0, 13.0, 1.2),
    (7, -80.0, 11.0, 0.8),
    (9, 50.0, 9.0, 0.45),
]


# ---------------------------------------------------------------- FIFO round trips


def test_trade_list_when_partial_close_and_flip_then_fifo_round_trips_by_hand() -> None:
    r = _result_from_fills(HAND_FILLS, n_bars=10)
    t = trade_list(r)
    assert list(t.columns) == list(TRADE_COLUMNS)
    expected = pd.DataFrame(
        {
            "side": ["long", "long", "long", "short"],
            "qty": [100.0, 20.0, 30.0, 50.0],
            "entry_price": [10.0, 12.0, 12.0, 11.0],
            "exit_price": [13.0, 13.0, 11.0, 9.0],
            "entry_bar": [1, 2, 2, 7],
            "exit_bar": [4, 4, 7, 9],
            "bars_held": [3, 2, 5, 2],
            "commission": [2.0, 0.4, 0.6, 0.95],
            "gross_pnl": [300.0, 20.0, -30.0, 100.0],
            "pnl": [298.0, 19.6, -30.6, 99.05],
            "return": [0.298, 19.6 / 240, -30.6 / 360, 99.05 / 550],
        }
    )
    pd.testing.assert_frame_equal(
        t[expected.columns], expected, check_dtype=False, rtol=1e-12, atol=1e-12
    )
    idx = r.bars.index
    assert list(t["entry_ts"]) == [idx[1], idx[2], idx[2], idx[7]]
    assert list(t["exit_ts"]) == [idx[4], idx[4], idx[7], idx[9]]
    assert list(t["duration"]) == [pd.Timedelta(minutes=m) for m in (3, 2, 5, 2)]
    # flat at the end: realised P&L is the whole equity change, commissions all charged
    assert r.bars["position"].iloc[-1] == 0
    assert t["pnl"].sum() == pytest.approx(386.05, abs=1e-9)
    assert t["pnl"].sum() == pytest.approx(r.bars["equity"].iloc[-1] - r.initial_cash, abs=1e-9)
    assert t["commission"].sum() == pytest.approx(r.fills["commission"].sum(), abs=1e-12)


def test_trade_list_when_position_left_open_then_open_lot_not_a_round_trip() -> None:
    t = trade_list(_result_from_fills(HAND_FILLS[:-1], n_bars=10))
    assert len(t) == 3
    assert (t["side"] == "long").all()
    assert t["qty"].sum() == 150.0  # the 50 short shares opened at bar 7 are still open
    empty = trade_list(_result_from_fills(HAND_FILLS[:2], n_bars=10))
    assert empty.empty
    assert list(empty.columns) == list(TRADE_COLUMNS)


def test_trade_list_when_short_first_then_short_round_trip_pnl_sign() -> None:
    t = trade_list(_result_from_fills([(1, -10.0, 20.0, 0.0), (3, 10.0, 15.0, 0.0)], n_bars=5))
    assert list(t["side"]) == ["short"]
    assert t["pnl"].iloc[0] == pytest.approx(50.0)
    assert t["return"].iloc[0] == pytest.approx(0.25)


# ---------------------------------------------------------------- hand-made curves


def test_max_drawdown_duration_when_several_spells_then_longest_by_hand() -> None:
    eq = pd.Series([100, 110, 105, 100, 108, 110, 120, 115, 120, 118.0], index=_minutes(10))
    d = max_drawdown_duration(eq)
    # spells: peak at 1 recovered at 5 (4 bars), 6 -> 8 (2 bars), 8 -> end (1 bar, open)
    assert (d.bars, d.duration, d.recovered) == (4, pd.Timedelta(minutes=4), True)
    assert (d.start, d.end) == (eq.index[1], eq.index[5])


def test_max_drawdown_duration_when_not_recovered_then_runs_to_last_bar() -> None:
    idx = pd.DatetimeIndex(
        [T0, T0 + pd.Timedelta(hours=1), T0 + pd.Timedelta(days=1), T0 + pd.Timedelta(days=3)]
    )
    d = max_drawdown_duration(pd.Series([100.0, 90.0, 95.0, 99.0], index=idx))
    assert (d.bars, d.duration, d.recovered) == (3, pd.Timedelta(days=3), False)
    flat = max_drawdown_duration(pd.Series([1.0, 2.0, 2.0, 3.0], index=idx))
    assert (flat.bars, flat.duration, flat.start) == (0, pd.Timedelta(0), None)


def test_trade_stats_when_hand_made_pnl_then_by_hand() -> None:
    pnl = pd.Series([100.0, -50.0, 30.0, -20.0, 0.0])
    assert profit_factor(pnl) == pytest.approx(130.0 / 70.0)
    assert win_rate(pnl) == pytest.approx(0.4)
    assert average_win(pnl) == pytest.approx(65.0)
    assert average_loss(pnl) == pytest.approx(-70.0 / 3)  # the break-even trade is a loss
    assert profit_factor(pd.Series([10.0, 5.0])) == np.inf
    assert np.isnan(profit_factor(pd.Series([], dtype=float)))
    assert np.isnan(win_rate(pd.Series([], dtype=float)))


def test_return_stats_when_hand_made_returns_then_by_hand() -> None:
    r = pd.Series([0.02, -0.01, 0.03, -0.02])
    # mean 0.005, downside deviation sqrt((0.01^2 + 0.02^2) / 4) = sqrt(1.25e-4)
    assert downside_deviation(r) == pytest.approx(np.sqrt(1.25e-4))
    assert sortino_ratio(r) == pytest.approx(np.sqrt(252 / 5))
    alt = pd.Series([0.01, -0.01, 0.01, -0.01])
    assert annualised_volatility(alt) == pytest.approx(0.01 * np.sqrt(4 / 3) * np.sqrt(252))
    half_year = pd.Series(np.full(126, 1.21 ** (1 / 126) - 1))
    assert annualised_return(half_year) == pytest.approx(0.4641)
    assert annualised_return(pd.Series([0.5, -1.0])) == -1.0
    assert sortino_ratio(pd.Series([0.01, 0.02])) == np.inf


def test_calmar_when_daily_curve_then_annual_return_over_drawdown() -> None:
    idx = pd.DatetimeIndex([T0 + pd.Timedelta(days=d) for d in range(4)])
    eq = pd.Series([100.0, 110.0, 99.0, 121.0], index=idx)
    # daily returns 0, +10%, -10%, +22.2%: growth 1.21 over 4 days; drawdown 10%
    assert calmar_ratio(eq) == pytest.approx((1.21 ** (252 / 4) - 1) / 0.1)


def test_turnover_and_exposure_when_hand_made_then_by_hand() -> None:
    idx = _minutes(3).append(_minutes(3, T0 + pd.Timedelta(days=1)))  # two New York days
    bars = pd.DataFrame(
        {"close": 10.0, "cash": 0.0, "position": [0, 100, 100, 0, -50, 0.0], "equity": 10_000.0},
        index=idx,
    )
    fills = pd.DataFrame(
        {"bar": [1, 3, 4, 5], "qty": [100.0, -100.0, -50.0, 50.0], "price": 10.0},
        index=idx[[1, 3, 4, 5]],
    ).assign(commission=0.0)
    r = BacktestResult(bars=bars, fills=fills, initial_cash=10_000.0)
    assert turnover(r, per_year=False) == pytest.approx(3000.0 / 10_000)
    assert turnover(r) == pytest.approx(0.3 * 252 / 2)
    assert exposure(bars["position"]) == pytest.approx(3 / 6)


def test_monthly_returns_when_ten_percent_a_month_then_table_compounds_to_total() -> None:
    days = pd.bdate_range("2010-11-01", "2012-02-29").tz_localize("UTC") + pd.Timedelta(hours=15)
    months = (days.year - 2010) * 12 + days.month - 11
    eq = pd.Series(100.0 * 1.1 ** np.asarray(months), index=days)
    table = monthly_returns(eq)
    assert list(table.index) == [2010, 2011, 2012]
    assert list(table.columns) == list(range(1, 13))
    assert table.loc[2010, 11] == pytest.approx(0.0)  # first month: from its first value
    assert table.stack().dropna().iloc[1:].to_numpy() == pytest.approx(np.full(15, 0.1))
    assert table.isna().sum().sum() == 3 * 12 - 16
    growth = float(np.prod(1 + table.stack().dropna().to_numpy()))
    assert growth - 1 == pytest.approx(eq.iloc[-1] / eq.iloc[0] - 1)


@settings(max_examples=200, database=None, deadline=None)
@given(st.lists(st.floats(-0.05, 0.05, allow_nan=False), min_size=2, max_size=60))
def test_sortino_when_mean_non_negative_then_at_least_sharpe(values: list[float]) -> None:
    """Downside deviation (target 0) <= sample std whenever mean >= 0, so Sortino >= Sharpe;
    both have the sign of the mean. Nothing is guaranteed for a negative mean."""
    r = pd.Series(values)
    sharpe, sortino, mean = sharpe_ratio(r), sortino_ratio(r), float(r.mean())
    if np.isnan(sharpe):  # zero volatility
        return
    assert np.sign(sortino) == np.sign(sharpe) == np.sign(mean)
    if mean >= 0:
        assert sortino >= sharpe * (1 - 1e-12)


# ---------------------------------------------------------------- real SPY backtest


def test_trade_list_when_spy_backtest_ends_flat_then_pnl_sums_to_equity_change(
    spy: BacktestResult,
) -> None:
    assert spy.bars["position"].iloc[-1] == 0  # precondition of the identities below
    t = trade_list(spy)
    assert len(t) == len(spy.fills) // 2 > 50  # 100-share entries and exits, no pyramiding
    assert (t["side"] == "long").all()
    assert (t["qty"] == 100).all()
    assert (t["bars_held"] > 0).all()
    assert (t["exit_ts"] > t["entry_ts"]).all()
    assert t["pnl"].sum() == pytest.approx(spy.bars["equity"].iloc[-1] - spy.initial_cash, rel=1e-9)
    assert t["commission"].sum() == pytest.approx(spy.fills["commission"].sum(), rel=1e-12)
    # a 100-share long's gross P&L is 100 x the price change between its two fills
    np.testing.assert_allclose(t["gross_pnl"], 100 * (t["exit_price"] - t["entry_price"]))
    fill_price = spy.fills.set_index("bar")["price"]
    np.testing.assert_array_equal(t["entry_price"], fill_price.loc[t["entry_bar"]])
    np.testing.assert_array_equal(t["exit_price"], fill_price.loc[t["exit_bar"]])


def test_summary_when_spy_backtest_then_keys_and_identities(spy: BacktestResult) -> None:
    m = summary(spy)
    old = {"total_return", "sharpe", "max_drawdown", "n_trades", "final_equity", "commission"}
    assert old <= m.keys()
    assert all(type(v) is float for v in m.values())
    json.loads(json.dumps(m))  # the promote manifest stores these
    assert m["n_trades"] == len(spy.fills)
    assert m["commission"] == pytest.approx(spy.fills["commission"].sum())
    assert m["total_return"] == pytest.approx(spy.bars["equity"].iloc[-1] / spy.initial_cash - 1)
    n = m["n_round_trips"]
    assert n == len(trade_list(spy))
    assert m["win_rate"] * n + m["n_losses"] == pytest.approx(n)
    assert m["n_wins"] + m["n_losses"] == n
    assert m["avg_win"] > 0 >= m["avg_loss"]
    assert m["profit_factor"] == pytest.approx(
        m["avg_win"] * m["n_wins"] / -(m["avg_loss"] * m["n_losses"])
    )
    # 19 trading days compound to the total return
    assert (1 + m["annual_return"]) ** (19 / 252) == pytest.approx(1 + m["total_return"])
    assert m["calmar"] == pytest.approx(m["annual_return"] / m["max_drawdown"])
    assert np.sign(m["sortino"]) == np.sign(m["sharpe"])
    assert m["annual_volatility"] == pytest.approx(
        daily_returns(spy.bars["equity"]).std() * np.sqrt(252)
    )


def test_summary_when_spy_backtest_then_activity_metrics_cross_check_trades(
    spy: BacktestResult,
) -> None:
    m = summary(spy)
    t = trade_list(spy)
    # a long is held after the close of bars entry_bar .. exit_bar - 1
    assert m["exposure"] == pytest.approx(t["bars_held"].sum() / len(spy.bars))
    notional = float((t["qty"] * (t["entry_price"] + t["exit_price"])).sum())
    assert m["turnover_total"] == pytest.approx(notional / spy.bars["equity"].mean())
    assert m["turnover_per_year"] == pytest.approx(m["turnover_total"] * 252 / 19)


def test_max_drawdown_duration_when_spy_equity_then_matches_brute_force(
    spy: BacktestResult,
) -> None:
    eq = spy.bars["equity"].to_numpy()
    best, peak_i = 0, 0
    for i in range(1, len(eq)):
        if eq[i] >= eq[peak_i]:  # back at (or above) the peak: a spell ends if one began
            best, peak_i = (max(best, i - peak_i) if i - peak_i > 1 else best), i
    best = max(best, len(eq) - 1 - peak_i) if eq[-1] < eq[peak_i] else best
    d = max_drawdown_duration(spy.bars["equity"])
    assert d.bars == best > 0
    assert d.start is not None
    assert d.end is not None
    assert d.duration == d.end - d.start
    start = spy.bars.index.get_loc(d.start)
    assert eq[start] == eq[: start + 1].max()
    assert (eq[start + 1 : start + d.bars] < eq[start]).all()
    assert summary(spy)["max_drawdown_duration_bars"] == best
    assert max_drawdown(spy.bars["equity"]) > 0


# ---------------------------------------------------------------- plots


@pytest.fixture
def no_show(monkeypatch: pytest.MonkeyPatch) -> None:
    def _fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("plt.show() called")

    monkeypatch.setattr(plt, "show", _fail)


@pytest.mark.usefixtures("no_show")
def test_plot_trades_when_spy_backtest_then_fills_and_round_trips_drawn(
    spy: BacktestResult,
) -> None:
    fig = plot_trades(spy)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert len(ax.lines) == 1
    assert len(ax.lines[0].get_xdata()) == len(spy.bars)
    scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
    segments = [c for c in ax.collections if isinstance(c, LineCollection)]
    n_buys = int((spy.fills["qty"] > 0).sum())
    assert [len(c.get_offsets()) for c in scatters] == [n_buys, len(spy.fills) - n_buys]
    assert len(segments) == 1
    assert len(segments[0].get_segments()) == len(trade_list(spy))


@pytest.mark.usefixtures("no_show")
def test_plot_monthly_returns_when_sixteen_months_then_annotated_heatmap() -> None:
    days = pd.bdate_range("2010-11-01", "2012-02-29").tz_localize("UTC") + pd.Timedelta(hours=15)
    months = (days.year - 2010) * 12 + days.month - 11
    fig = plot_monthly_returns(pd.Series(100.0 * 1.1 ** np.asarray(months), index=days))
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2  # heatmap and colorbar
    ax = fig.axes[0]
    assert len(ax.images) == 1
    assert ax.images[0].get_array().shape == (3, 12)
    labels = sorted(t.get_text() for t in ax.texts)
    assert labels == ["0.0%"] + ["10.0%"] * 15
    assert [t.get_text() for t in ax.get_yticklabels()] == ["2010", "2011", "2012"]


@pytest.mark.usefixtures("no_show")
def test_plot_sweep_heatmap_when_grid_with_gap_then_cells_annotated() -> None:
    rows = [
        {"fast": f, "slow": s, "sharpe": f / s}
        for f in (5, 8, 12)
        for s in (20, 26, 30, 40)
        if (f, s) != (12, 40)
    ]
    fig = plot_sweep_heatmap(pd.DataFrame(rows), "fast", "slow", "sharpe")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    assert ax.images[0].get_array().shape == (4, 3)
    assert len(ax.texts) == 11  # the missing (12, 40) cell is blank
    assert [t.get_text() for t in ax.get_xticklabels()] == ["5", "8", "12"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("fast", "slow")
    with pytest.raises(ValueError, match="several rows"):
        plot_sweep_heatmap(pd.DataFrame(rows + rows[:1]), "fast", "slow", "sharpe")
    with pytest.raises(ValueError, match="no column"):
        plot_sweep_heatmap(pd.DataFrame(rows), "fast", "slow", "sortino")


@pytest.mark.usefixtures("no_show")
def test_plot_equity_drawdown_when_spy_backtest_then_two_axes(spy: BacktestResult) -> None:
    fig = plot_equity_drawdown(spy)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    assert len(fig.axes[0].collections) == 2  # buys, sells
