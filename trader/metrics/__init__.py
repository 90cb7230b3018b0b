"""Performance statistics of a backtest's equity curve, fills and round-trip trades.

Conventions: returns are simple returns (fractions, 0.01 = 1%); daily returns are
close-to-close on New York calendar dates; annualisation uses :data:`TRADING_DAYS`
periods per year; money is USD. Ratios with a zero denominator are ``inf`` (signed)
when the numerator is non-zero and NaN when it is zero too.

References
----------
- C. R. Bacon, *Practical Portfolio Performance Measurement and Attribution*, 2nd ed.,
  Wiley, 2008 (annualised return and annualised risk).
- W. F. Sharpe, "The Sharpe Ratio", *Journal of Portfolio Management* 21(1), 1994.
- F. A. Sortino and L. N. Price, "Performance Measurement in a Downside Risk Framework",
  *Journal of Investing* 3(3), 1994.
- T. W. Young, "Calmar Ratio: A Smoother Tool", *Futures*, October 1991.
- M. López de Prado, *Advances in Financial Machine Learning*, Wiley, 2018, ch. 14
  "Backtest Statistics" (time under water, hit ratio, annualised turnover).
- R. Pardo, *The Evaluation and Optimization of Trading Strategies*, 2nd ed., Wiley,
  2008 (win rate, profit factor, average win / average loss).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from trader.backtest import BacktestResult
from trader.metrics.trades import round_trips, trade_list

#: Trading days per year used to annualise daily statistics.
TRADING_DAYS = 252

#: Time zone whose calendar defines days and months.
MARKET_TZ = "America/New_York"


def _ratio(num: float, den: float) -> float:
    """``num / den``; ``±inf`` when only ``den`` is 0, NaN when both are (or either is NaN)."""
    if np.isnan(num) or np.isnan(den):
        return float("nan")
    if den == 0.0:
        return float("nan") if num == 0.0 else float(np.copysign(np.inf, num))
    return num / den


def _local_index(index: pd.Index) -> pd.DatetimeIndex:
    """The index in New York time (a tz-naive index is taken as already local)."""
    idx = pd.DatetimeIndex(index)
    return idx if idx.tz is None else idx.tz_convert(MARKET_TZ)


def daily_returns(equity: pd.Series) -> pd.Series:
    """Close-to-close daily simple returns of an intraday or daily equity curve.

    The day is the New York calendar date of each timestamp; the first day's return is
    measured from its first value.
    """
    by_day = equity.groupby(pd.DatetimeIndex(equity.index).tz_convert(MARKET_TZ).date)
    last = by_day.last()
    prev = last.shift(1)
    prev.iloc[0] = by_day.first().iloc[0]
    return last / prev - 1.0


def monthly_returns(equity: pd.Series) -> pd.DataFrame:
    """Calendar-month simple returns of an equity curve, as a year x month table.

    Month-end to month-end on the New York calendar: ``last(m) / last(m-1) - 1``, the
    first month measured from its first value (so the compounded table equals the total
    return of the curve).

    Parameters
    ----------
    equity : Series
        USD, on a DatetimeIndex (UTC or tz-naive local time).

    Returns
    -------
    DataFrame
        Index ``year`` (int), columns ``1..12`` (month), values fractions; NaN for
        months without data.
    """
    local = _local_index(equity.index)
    by_month = equity.groupby([local.year.rename("year"), local.month.rename("month")])
    last = by_month.last()
    prev = last.shift(1)
    prev.iloc[0] = by_month.first().iloc[0]
    table = (last / prev - 1.0).unstack("month")
    return table.reindex(columns=range(1, 13))


def max_drawdown(equity: pd.Series) -> float:
    """Largest peak-to-trough fall of ``equity``, as a positive fraction (0.1 = 10%)."""
    peak = equity.cummax()
    return float(((peak - equity) / peak).max())


def drawdown(equity: pd.Series) -> pd.Series:
    """Drawdown from the running peak at each point, as a non-positive fraction."""
    return equity / equity.cummax() - 1.0


class DrawdownDuration(NamedTuple):
    """The longest spell under water of an equity curve (see :func:`max_drawdown_duration`)."""

    bars: int
    """Bars from the peak to the recovery (or to the last bar if not recovered)."""
    duration: pd.Timedelta
    """Calendar time from the peak's timestamp to the recovery's (or the last bar's)."""
    start: pd.Timestamp | None
    """Timestamp of the peak the spell starts from (None if never under water)."""
    end: pd.Timestamp | None
    """Timestamp of the recovery, or of the last bar if not recovered (None if never
    under water)."""
    recovered: bool
    """Whether the curve regained the peak (if not, ``bars``/``duration`` are lower bounds)."""


def max_drawdown_duration(equity: pd.Series) -> DrawdownDuration:
    """Longest time under water: from a running peak to the first point back at or above it.

    A spell starts at the last point at the high-water mark before equity falls below it
    and ends at the first point where equity is back at or above that mark, or at the
    last point if it never is. Its length in bars is the number of steps between the two
    points (``[100, 90, 95, 100]``: 3 bars); the spell with the most bars is returned,
    with its calendar duration (which includes nights and weekends for intraday bars).
    "Time under water" as in López de Prado (2018), ch. 14; the duration of the maximum
    drawdown spell in Magdon-Ismail and Atiya, "Maximum Drawdown", *Risk* 17(10), 2004.

    Parameters
    ----------
    equity : Series
        USD (any positive scale), on a DatetimeIndex in time order.

    Returns
    -------
    DrawdownDuration
        ``bars`` (int), ``duration`` (Timedelta), ``start``/``end`` timestamps and
        ``recovered``; ``bars == 0`` and ``duration == 0`` if equity never falls below
        its running peak.
    """
    v = equity.to_numpy(dtype=np.float64)
    under = v < np.maximum.accumulate(v)
    if not under.any():
        return DrawdownDuration(0, pd.Timedelta(0), None, None, True)
    edges = np.diff(np.r_[0, under.astype(np.int8), 0])
    first_under = np.flatnonzero(edges == 1)  # first bar of each under-water run
    after_run = np.flatnonzero(edges == -1)  # first bar after each run (n if unrecovered)
    starts = first_under - 1  # the peak (bar 0 is never under water)
    ends = np.minimum(after_run, len(v) - 1)
    k = int(np.argmax(ends - starts))
    idx = pd.DatetimeIndex(equity.index)
    start, end = idx[int(starts[k])], idx[int(ends[k])]
    return DrawdownDuration(
        int(ends[k] - starts[k]), end - start, start, end, bool(after_run[k] < len(v))
    )


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


def annualised_return(returns: pd.Series, periods_per_year: int = TRADING_DAYS) -> float:
    """Geometric (compound) annualised return.

    ``prod(1 + r) ** (periods_per_year / n) - 1`` for ``n`` periodic simple returns
    (Bacon 2008, annualised return ``(1 + R) ** (1 / years) - 1`` with
    ``years = n / periods_per_year``).

    Parameters
    ----------
    returns : Series
        Simple returns per period (fractions), e.g. :func:`daily_returns`.
    periods_per_year : int
        Periods in a year (252 trading days for daily returns).

    Returns
    -------
    float
        Fraction per year; -1.0 if the compounded growth is <= 0 (total loss); NaN for
        no returns.
    """
    if len(returns) == 0:
        return float("nan")
    growth = float(np.prod(1.0 + returns.to_numpy(dtype=np.float64)))
    if growth <= 0.0:
        return -1.0
    return float(growth ** (periods_per_year / len(returns)) - 1.0)


def annualised_volatility(returns: pd.Series, periods_per_year: int = TRADING_DAYS) -> float:
    """Annualised volatility: ``std(r, ddof=1) * sqrt(periods_per_year)``.

    Square-root-of-time scaling of the sample standard deviation of periodic returns
    (Bacon 2008, annualised risk). Fraction per year (0.2 = 20%); NaN when fewer than
    two returns.
    """
    if len(returns) < 2:
        return float("nan")
    return float(returns.std(ddof=1)) * float(np.sqrt(periods_per_year))


def downside_deviation(returns: pd.Series, target: float = 0.0) -> float:
    """Downside deviation per period: ``sqrt(mean(min(r - target, 0) ** 2))``.

    The mean is over all ``n`` returns, not only those below the target (Sortino and
    Price 1994). Same unit as ``returns`` (fraction per period); NaN for no returns.
    """
    if len(returns) == 0:
        return float("nan")
    shortfall = np.minimum(returns.to_numpy(dtype=np.float64) - target, 0.0)
    return float(np.sqrt(np.mean(shortfall**2)))


def sortino_ratio(
    returns: pd.Series, periods_per_year: int = TRADING_DAYS, target: float = 0.0
) -> float:
    """Annualised Sortino ratio with a minimum acceptable return ``target`` (default 0).

    ``mean(r - target) / downside_deviation(r, target) * sqrt(periods_per_year)``
    (F. A. Sortino and L. N. Price, "Performance Measurement in a Downside Risk
    Framework", Journal of Investing, 1994). NaN when fewer than two returns; ``+inf``
    when no return is below the target and the mean excess is positive.

    Since the downside deviation (target 0) never exceeds the sample standard deviation
    when ``mean(r) >= 0``, the Sortino ratio is then >= the Sharpe ratio; both always
    have the sign of ``mean(r)``.
    """
    if len(returns) < 2:
        return float("nan")
    excess = float(returns.mean()) - target
    return _ratio(excess, downside_deviation(returns, target)) * float(np.sqrt(periods_per_year))


def calmar_ratio(equity: pd.Series, periods_per_year: int = TRADING_DAYS) -> float:
    """Calmar ratio: annualised return over maximum drawdown, on the whole curve.

    ``annualised_return(daily_returns(equity)) / max_drawdown(equity)`` (T. W. Young,
    "Calmar Ratio: A Smoother Tool", Futures, 1991; Young used the last 36 months, here
    the whole period). Unitless (fraction per year / fraction).
    """
    return _ratio(annualised_return(daily_returns(equity), periods_per_year), max_drawdown(equity))


def win_rate(pnl: pd.Series) -> float:
    """Share of round trips that made money: ``count(pnl > 0) / n``.

    The hit ratio of López de Prado (2018), ch. 14. A round trip with ``pnl <= 0``
    counts as a loss, so ``win_rate * n + n_losses == n``. Fraction; NaN for no trades.

    Parameters
    ----------
    pnl : Series
        USD per round trip, net of commissions (``trade_list(result)["pnl"]``).
    """
    return float("nan") if len(pnl) == 0 else float((pnl > 0).mean())


def profit_factor(pnl: pd.Series) -> float:
    """Gross profit over gross loss: ``sum(pnl[pnl > 0]) / -sum(pnl[pnl < 0])``.

    Pardo (2008). Unitless; ``inf`` with profits and no losses, NaN with neither.

    Parameters
    ----------
    pnl : Series
        USD per round trip, net of commissions.
    """
    return _ratio(float(pnl[pnl > 0].sum()), -float(pnl[pnl < 0].sum()))


def average_win(pnl: pd.Series) -> float:
    """Mean P&L of the winning round trips (``pnl > 0``), USD; NaN if none (Pardo 2008)."""
    wins = pnl[pnl > 0]
    return float("nan") if len(wins) == 0 else float(wins.mean())


def average_loss(pnl: pd.Series) -> float:
    """Mean P&L of the losing round trips (``pnl <= 0``), USD (<= 0); NaN if none
    (Pardo 2008)."""
    losses = pnl[pnl <= 0]
    return float("nan") if len(losses) == 0 else float(losses.mean())


def turnover(result: BacktestResult, *, per_year: bool = True) -> float:
    """Traded notional over average equity.

    ``sum(|qty| * price) / mean(equity)`` over all fills (both buys and sells, so
    buying and later selling the whole equity once is a turnover of 2) and all bars;
    with ``per_year`` divided by the length of the backtest in years,
    ``n_days / TRADING_DAYS`` with ``n_days`` the New York dates with bars (the
    annualised turnover of López de Prado 2018, ch. 14).

    Returns
    -------
    float
        Times per year (``per_year=True``) or times over the whole backtest.
    """
    notional = float((result.fills["qty"].abs() * result.fills["price"]).sum())
    total = _ratio(notional, float(result.bars["equity"].mean()))
    if not per_year:
        return total
    n_days = len(np.unique(_local_index(result.bars.index).date))
    return total / (n_days / TRADING_DAYS)


def exposure(position: pd.Series) -> float:
    """Share of bars holding a non-zero position (after the bar's close), fraction.

    The "exposure time" of e.g. backtesting.py's statistics; NaN for no bars.
    """
    return float("nan") if len(position) == 0 else float((position != 0).mean())


def summary(result: BacktestResult) -> dict[str, float]:
    """Headline metrics of a backtest (every value a float, so it serialises to JSON).

    Returns
    -------
    dict
        - ``total_return``: fraction, ``final_equity / initial_cash - 1``;
        - ``sharpe``: annualised from daily returns (:func:`sharpe_ratio`);
        - ``max_drawdown``: positive fraction;
        - ``n_trades``: number of fills;
        - ``final_equity``: USD;
        - ``commission``: USD paid;
        - ``annual_return``: fraction per year, geometric from daily returns
          (:func:`annualised_return`);
        - ``annual_volatility``: fraction, annualised std of daily returns;
        - ``sortino``: annualised from daily returns, target 0 (:func:`sortino_ratio`);
        - ``calmar``: ``annual_return / max_drawdown`` (:func:`calmar_ratio`);
        - ``max_drawdown_duration_bars``: bars, longest spell under water;
        - ``max_drawdown_duration_days``: the same spell in calendar days (float);
        - ``n_round_trips``, ``n_wins``, ``n_losses``: closed round trips
          (:func:`~trader.metrics.trades.trade_list`), winners ``pnl > 0``, losers
          ``pnl <= 0``;
        - ``win_rate``: fraction of round trips; ``profit_factor``: unitless;
        - ``avg_win``, ``avg_loss``: USD per round trip (``avg_loss <= 0``);
        - ``turnover_per_year``: traded notional / average equity per year;
          ``turnover_total``: the same over the whole backtest (:func:`turnover`);
        - ``exposure``: fraction of bars with a position.
    """
    equity = result.bars["equity"]
    rets = daily_returns(equity)
    curve = pd.concat([pd.Series([result.initial_cash]), equity])
    mdd = max_drawdown(curve)
    ann = annualised_return(rets)
    dd_time = max_drawdown_duration(equity)
    pnl = trade_list(result)["pnl"]
    return {
        "total_return": float(equity.iloc[-1] / result.initial_cash - 1.0),
        "sharpe": sharpe_ratio(rets),
        "max_drawdown": mdd,
        "n_trades": float(len(result.fills)),
        "final_equity": float(equity.iloc[-1]),
        "commission": float(result.fills["commission"].sum()),
        "annual_return": ann,
        "annual_volatility": annualised_volatility(rets),
        "sortino": sortino_ratio(rets),
        "calmar": _ratio(ann, mdd),
        "max_drawdown_duration_bars": float(dd_time.bars),
        "max_drawdown_duration_days": dd_time.duration / pd.Timedelta(days=1),
        "n_round_trips": float(len(pnl)),
        "n_wins": float((pnl > 0).sum()),
        "n_losses": float((pnl <= 0).sum()),
        "win_rate": win_rate(pnl),
        "profit_factor": profit_factor(pnl),
        "avg_win": average_win(pnl),
        "avg_loss": average_loss(pnl),
        "turnover_per_year": turnover(result, per_year=True),
        "turnover_total": turnover(result, per_year=False),
        "exposure": exposure(result.bars["position"]),
    }


__all__ = [
    "MARKET_TZ",
    "TRADING_DAYS",
    "DrawdownDuration",
    "annualised_return",
    "annualised_volatility",
    "average_loss",
    "average_win",
    "calmar_ratio",
    "daily_returns",
    "downside_deviation",
    "drawdown",
    "exposure",
    "max_drawdown",
    "max_drawdown_duration",
    "monthly_returns",
    "profit_factor",
    "round_trips",
    "sharpe_ratio",
    "sortino_ratio",
    "summary",
    "trade_list",
    "turnover",
    "win_rate",
]
