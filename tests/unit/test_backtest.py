"""Backtester: accounting identities, next-bar-open fills, costs and no look-ahead, on
real SPY minute bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import SPY_MINUTE
from trader.backtest import run_backtest
from trader.data import load_minute_bars
from trader.indicators import ema, rsi
from trader.metrics import max_drawdown, summary

PARAMS = {"fast": 12, "slow": 26, "rsi_window": 14, "rsi_overbought": 70.0, "qty": 100}


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return load_minute_bars(SPY_MINUTE, start="2011-01-03", end="2011-01-14")


def test_backtest_when_costs_then_cash_and_positions_reconcile_at_every_bar(
    bars: pd.DataFrame,
) -> None:
    r = run_backtest(bars, params=PARAMS, commission_bps=2.0, slippage_bps=3.0)
    # rebuild cash and position from the fills alone
    flows = pd.Series(0.0, index=bars.index)
    qty = pd.Series(0.0, index=bars.index)
    cost = r.fills["qty"] * r.fills["price"] + r.fills["commission"]
    flows.loc[r.fills.index] = -cost.to_numpy()
    qty.loc[r.fills.index] = r.fills["qty"].to_numpy()
    np.testing.assert_allclose(r.bars["cash"], r.initial_cash + flows.cumsum(), rtol=1e-12)
    np.testing.assert_allclose(r.bars["position"], qty.cumsum(), rtol=0, atol=0)
    np.testing.assert_allclose(
        r.bars["equity"], r.bars["cash"] + r.bars["position"] * bars["close"], rtol=1e-12
    )


def test_backtest_when_costs_then_fill_price_and_commission_follow_bps(bars: pd.DataFrame) -> None:
    r = run_backtest(bars, params=PARAMS, commission_bps=2.0, slippage_bps=3.0)
    opens = bars["open"].to_numpy()[r.fills["bar"].to_numpy()]
    side = np.sign(r.fills["qty"].to_numpy())
    np.testing.assert_allclose(r.fills["price"], opens * (1 + side * 3e-4), rtol=1e-12)
    notional = (r.fills["qty"].abs() * r.fills["price"]).to_numpy()
    np.testing.assert_allclose(r.fills["commission"], notional * 2e-4, rtol=1e-12)


def test_backtest_when_signal_on_close_then_fill_at_next_bar_from_pandas_signals(
    bars: pd.DataFrame,
) -> None:
    """Targets rebuilt independently with pandas indicators: every fill sits exactly one bar
    after the bar whose close changed the target."""
    close = bars["close"]
    fast, slow, r = ema(close, 12), ema(close, 26), rsi(close, 14)
    target, t = [], 0.0
    for f, s, x in zip(fast, slow, r, strict=True):
        if not (np.isnan(f) or np.isnan(s) or np.isnan(x)):
            t = 0.0 if f <= s else (100.0 if x < 70.0 else t)
        target.append(t)
    changes = np.flatnonzero(np.diff(np.r_[0.0, target]) != 0)
    result = run_backtest(bars, params=PARAMS)
    expected = changes[changes + 1 < len(bars)] + 1
    np.testing.assert_array_equal(result.fills["bar"].to_numpy(), expected)
    assert result.fills["qty"].abs().eq(100).all()


def test_backtest_when_data_truncated_then_earlier_decisions_unchanged(bars: pd.DataFrame) -> None:
    full = run_backtest(bars, params=PARAMS, commission_bps=1.0)
    for cut in (500, 1234, 3000):
        part = run_backtest(bars.iloc[:cut], params=PARAMS, commission_bps=1.0)
        pd.testing.assert_frame_equal(part.fills, full.fills[full.fills["bar"] < cut])
        pd.testing.assert_frame_equal(part.bars, full.bars.iloc[:cut])


def test_summary_when_backtest_then_metrics_consistent(bars: pd.DataFrame) -> None:
    r = run_backtest(bars, params=PARAMS, commission_bps=1.0)
    m = summary(r)
    assert m["n_trades"] == len(r.fills)
    assert m["final_equity"] == pytest.approx(r.bars["equity"].iloc[-1])
    assert m["total_return"] == pytest.approx(m["final_equity"] / 100_000 - 1)
    assert 0 <= m["max_drawdown"] < 0.05
    assert max_drawdown(pd.Series([100.0, 120.0, 90.0, 130.0])) == pytest.approx(0.25)


def test_run_backtest_when_bad_inputs_then_clear_errors(bars: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="commission_bps"):
        run_backtest(bars, commission_bps=-1)
    with pytest.raises(ValueError, match="must be below slow"):
        run_backtest(bars, params={"fast": 30, "slow": 10})
