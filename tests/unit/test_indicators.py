"""Indicator kernels against pandas references on real SPY closes; streaming == array."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import SPY_MINUTE
from trader.data import load_minute_bars
from trader.indicators import ema, nb, rsi


@pytest.fixture(scope="module")
def close() -> pd.Series:
    return load_minute_bars(SPY_MINUTE)["close"]


@pytest.mark.parametrize("window", [1, 2, 12, 26, 200])
def test_ema_when_real_closes_then_equals_pandas_ewm(close: pd.Series, window: int) -> None:
    expected = close.ewm(span=window, adjust=False).mean()
    expected.iloc[: window - 1] = np.nan
    pd.testing.assert_series_equal(ema(close, window), expected, check_names=False, rtol=1e-12)


def _rsi_reference(close: pd.Series, window: int) -> pd.Series:
    """Wilder's RSI with pandas: SMA seed of the first `window` changes, then
    ewm(alpha=1/window, adjust=False) (Wilder's smoothing)."""
    change = close.diff()
    gain, loss = change.clip(lower=0.0), (-change).clip(lower=0.0)

    def wilder(x: pd.Series) -> pd.Series:
        seeded = x.copy()
        seeded.iloc[: window + 1] = np.nan
        seeded.iloc[window] = x.iloc[1 : window + 1].mean()
        return seeded.iloc[window:].ewm(alpha=1.0 / window, adjust=False).mean()

    rs = wilder(gain) / wilder(loss)
    out = 100.0 - 100.0 / (1.0 + rs)
    return out.reindex(close.index)


@pytest.mark.parametrize("window", [2, 14, 30])
def test_rsi_when_real_closes_then_equals_pandas_wilder_reference(
    close: pd.Series, window: int
) -> None:
    pd.testing.assert_series_equal(
        rsi(close, window), _rsi_reference(close, window), check_names=False, rtol=1e-9
    )


def test_rsi_when_prices_only_rise_then_100() -> None:
    out = nb.rsi_nb(np.arange(1.0, 30.0), 14)
    assert np.isnan(out[:14]).all()
    assert (out[14:] == 100.0).all()


def test_streaming_and_array_forms_when_same_input_then_identical(close: pd.Series) -> None:
    x = close.to_numpy()
    e_state, r_state = nb.ema_state_nb(), nb.rsi_state_nb()
    e_stream = np.array([nb.ema_update_nb(e_state, v, 26) for v in x])
    r_stream = np.array([nb.rsi_update_nb(r_state, v, 14) for v in x])
    np.testing.assert_array_equal(e_stream, nb.ema_nb(x, 26))
    np.testing.assert_array_equal(r_stream, nb.rsi_nb(x, 14))
