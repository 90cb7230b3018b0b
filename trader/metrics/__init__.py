"""Performance statistics of a backtest's equity curve and fills."""

from __future__ import annotations

import numpy as np
import pandas as pd

from trader.backtest import BacktestResult

#: Trading days per year used to annualise daily statistics.
TRADING_DAYS = 252


def daily_returns(equity: pd.Series) -> pd.Series:
    """Close-to-close daily simple returns of an intraday or daily equity curve.

    The day is the New York calendar date of each timestamp; the first day's return is
    measured from its first value.
    """
    by_day = equity.groupby(pd.DatetimeIndex(equity.index).tz_convert("America/New_York").date)
    last = by_day.last()
    prev = last.shift(1)
    prev.iloc[0] = by_day.first().iloc[0]
    return last / prev - 1.0


def max_drawdown(equity: pd.Series) -> float:
    """Largest peak-to-trough fall of ``equity``, as a positive fraction (0.1 = 10%)."""
    peak = equity.cummax()
    return float(((peak - equity) / peak).max())


def drawdown(equity: pd.Series) -> pd.Series:
    """Drawdown from the running peak at each point, as a non-positive fraction."""
    return equity / equity.cummax() - 1.0


def sharpe_ratio(returns: pd.Series, periods_per_year: int = TRADING_DAYS) -> float:
    """Annualised Sharpe ratio with a zero risk-free rate.

    ``mean(r) / std(r, ddof=1) * sqrt(periods_per_year)`` (W. F. Sharpe, "The Sharpe
    Ratio", Journal of Portfolio Management, 1994). NaN when fewer than two returns or
    zero volatility.
    """
    if len(returns) < 2:
        return float("nan")
    sd = float(returns.std(ddof=1))
    return (
        float("nan") if sd == 0.0 else float(returns.mean()) / sd * float(np.sqrt(periods_per_year))
    )


def summary(result: BacktestResult) -> dict[str, float]:
    """Headline metrics of a backtest.

    Returns
    -------
    dict
        ``total_return`` (fraction), ``sharpe`` (annualised from daily returns),
        ``max_drawdown`` (positive fraction), ``n_trades`` (fills), ``final_equity``
        (USD), ``commission`` (USD paid).
    """
    equity = result.bars["equity"]
    return {
        "total_return": float(equity.iloc[-1] / result.initial_cash - 1.0),
        "sharpe": sharpe_ratio(daily_returns(equity)),
        "max_drawdown": max_drawdown(pd.concat([pd.Series([result.initial_cash]), equity])),
        "n_trades": float(len(result.fills)),
        "final_equity": float(equity.iloc[-1]),
        "commission": float(result.fills["commission"].sum()),
    }


__all__ = ["daily_returns", "drawdown", "max_drawdown", "sharpe_ratio", "summary"]
