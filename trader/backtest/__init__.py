"""Backtesting: run a registered strategy over real bars with the numba loop in ``nb``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from trader.backtest.nb import FILL_DTYPE, backtest_bars_nb
from trader.data import to_bar_array
from trader.strategy import get_strategy


@dataclass(frozen=True)
class BacktestResult:
    """Outputs of :func:`run_backtest`.

    Attributes
    ----------
    bars : DataFrame
        Per bar (index ``ts``, UTC bar start): ``close`` (USD), ``cash`` (USD),
        ``position`` (shares), ``equity`` (USD), all after the bar's close.
    fills : DataFrame
        One row per fill: ``ts`` (UTC), ``bar`` (int), ``qty`` (signed shares),
        ``price`` (USD), ``commission`` (USD).
    initial_cash : float
        USD.
    """

    bars: pd.DataFrame
    fills: pd.DataFrame
    initial_cash: float


def run_backtest(
    bars: pd.DataFrame,
    strategy: str = "ema_rsi",
    params: dict[str, Any] | None = None,
    *,
    initial_cash: float = 100_000.0,
    commission_bps: float = 0.0,
    slippage_bps: float = 0.0,
    signal: np.ndarray | None = None,
) -> BacktestResult:
    """Backtest ``strategy`` on ``bars``; orders fill at the next bar's open.

    Parameters
    ----------
    bars : DataFrame
        From a :mod:`trader.data` loader (validated OHLCV, UTC index).
    strategy : str
        A name in :data:`trader.strategy.STRATEGIES`.
    params : dict, optional
        Strategy parameters; defaults of the strategy's parameter object otherwise.
    initial_cash : float
        USD.
    signal : ndarray, shape (len(bars),), float64, optional
        External input of the step kernel per bar, known at that bar's close (a model's
        output); NaN (the default) for rule strategies.
    commission_bps, slippage_bps : float
        Costs in basis points of traded notional (>= 0).

    Raises
    ------
    ConfigurationError
        Unknown strategy.
    pydantic.ValidationError
        Invalid strategy parameters.
    ValueError
        Negative costs, non-positive cash, or a signal of the wrong shape.
    """
    if commission_bps < 0 or slippage_bps < 0:
        raise ValueError(f"costs must be >= 0 bps, got {commission_bps=}, {slippage_bps=}")
    if initial_cash <= 0:
        raise ValueError(f"initial_cash must be > 0 USD, got {initial_cash}")
    spec = get_strategy(strategy)
    p = spec.params(params or {})
    rec = to_bar_array(bars)
    n = len(rec)
    sig = np.full(n, np.nan) if signal is None else np.ascontiguousarray(signal, dtype=np.float64)
    if sig.shape != (n,):
        raise ValueError(f"signal must have shape ({n},), got {sig.shape}")
    cash, position, equity = np.empty(n), np.empty(n), np.empty(n)
    fills = np.zeros(n, dtype=FILL_DTYPE)
    n_fills = backtest_bars_nb(
        spec.step_nb,
        rec["ts_event"],
        rec["open"],
        rec["close"],
        sig,
        p.to_array(),
        spec.new_state(),
        float(initial_cash),
        float(commission_bps),
        float(slippage_bps),
        cash,
        position,
        equity,
        fills,
    )
    frame = pd.DataFrame(
        {"close": rec["close"], "cash": cash, "position": position, "equity": equity},
        index=bars.index,
    )
    f = pd.DataFrame(fills[:n_fills])
    f.index = pd.DatetimeIndex(pd.to_datetime(f.pop("ts_event"), utc=True), name="ts")
    return BacktestResult(bars=frame, fills=f, initial_cash=float(initial_cash))


__all__ = ["FILL_DTYPE", "BacktestResult", "run_backtest"]
