"""The research panel re-runs the backtest when a slider moves (real SPY bars), and the
shared HTML rendering escapes what it is given."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import SPY_MINUTE
from trader.backtest import run_backtest
from trader.data import load_minute_bars
from trader.widgets import BacktestPanel
from trader.widgets.render import table, utilisation_bar


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return load_minute_bars(SPY_MINUTE, session="regular", start="2011-01-03", end="2011-01-05")


def test_moving_a_slider_reruns_the_backtest(bars: pd.DataFrame) -> None:
    panel = BacktestPanel(bars, "ema_rsi", {"fast": 12, "slow": 26})
    assert panel.result is not None
    before = panel.result
    assert panel.chart.value[:8] == b"\x89PNG\r\n\x1a\n"
    panel.sliders["fast"].value = 3
    panel.sliders["slow"].value = 8
    expected = run_backtest(bars, "ema_rsi", panel.params)
    assert panel.result is not before
    pd.testing.assert_frame_equal(panel.result.fills, expected.fills)
    assert len(expected.fills) != len(before.fills)
    assert f"{float(len(expected.fills)):.4g}" in panel.stats.value


def test_invalid_parameters_are_reported_and_keep_the_last_result(bars: pd.DataFrame) -> None:
    panel = BacktestPanel(bars, "ema_rsi", {"fast": 5, "slow": 20})
    last = panel.result
    panel.sliders["fast"].value = 30  # fast >= slow
    assert "fast (30) must be below slow (20)" in panel.message.value
    assert panel.result is last


def test_sliders_follow_the_parameter_constraints(bars: pd.DataFrame) -> None:
    panel = BacktestPanel(bars)
    rsi = panel.sliders["rsi_overbought"]
    assert (rsi.min, rsi.max) == (0.0, 100.0)
    assert panel.sliders["qty"].min == 1
    assert set(panel.params) == {"fast", "slow", "rsi_window", "rsi_overbought", "qty"}


def test_table_escapes_cells_and_reports_empty() -> None:
    html = table([("<b>SPY</b>", 10)], ("symbol", "shares"))
    assert "&lt;b&gt;SPY&lt;/b&gt;" in html
    assert "<td>10</td>" in html
    assert table([], ("a",), empty="flat") == "<i>flat</i>"
    assert "57%" in utilisation_bar(0.57)
    assert utilisation_bar(None) == "per order"
