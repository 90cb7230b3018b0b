"""Matplotlib figures for notebooks (matplotlib is the project's one plotting library).

Every function returns a :class:`matplotlib.figure.Figure` created through pyplot (so
Jupyter's inline backend shows it) and never calls ``plt.show()``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from trader.backtest import BacktestResult
from trader.metrics import drawdown, monthly_returns
from trader.metrics.trades import trade_list

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def plot_equity_drawdown(result: BacktestResult, title: str = "") -> Figure:
    """Equity (USD) above, drawdown (%) below, trades marked on the equity curve."""
    fig, (ax_eq, ax_dd) = plt.subplots(
        2, 1, figsize=(11, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    eq = result.bars["equity"]
    x = range(len(eq))  # bar number: intraday gaps (nights, weekends) are not drawn
    ax_eq.plot(x, eq.to_numpy(), lw=1.0, color="tab:blue", label="equity")
    buys = result.fills[result.fills["qty"] > 0]["bar"].to_numpy()
    sells = result.fills[result.fills["qty"] < 0]["bar"].to_numpy()
    ax_eq.scatter(buys, eq.iloc[buys], marker="^", s=12, color="tab:green", label="buy")
    ax_eq.scatter(sells, eq.iloc[sells], marker="v", s=12, color="tab:red", label="sell")
    ax_eq.set_ylabel("equity (USD)")
    ax_eq.legend(loc="upper left")
    ax_eq.set_title(title)
    ax_dd.fill_between(x, drawdown(eq).to_numpy() * 100, 0, color="tab:red", alpha=0.4)
    ax_dd.set_ylabel("drawdown (%)")
    ax_dd.set_xlabel("bar")
    fig.tight_layout()
    return fig


def plot_trades(result: BacktestResult, title: str = "") -> Figure:
    """Close price (USD) against bar number with every fill and round trip marked.

    Buys are green ``^`` and sells red ``v`` at their fill price and bar; each round trip
    of :func:`~trader.metrics.trades.trade_list` is a segment from entry to exit, green
    if its net P&L is > 0 and red otherwise.

    Returns
    -------
    Figure
        One axes holding one line (the close), two scatter collections (buys, sells)
        and one line collection (one segment per round trip).
    """
    fig, ax = plt.subplots(figsize=(11, 5))
    close = result.bars["close"].to_numpy(dtype=np.float64)
    ax.plot(np.arange(len(close)), close, lw=0.8, color="0.35", label="close")
    fills = result.fills
    for is_buy, marker, color, label in (
        (True, "^", "tab:green", "buy"),
        (False, "v", "tab:red", "sell"),
    ):
        f = fills[(fills["qty"] > 0) == is_buy]
        ax.scatter(f["bar"], f["price"], marker=marker, s=24, color=color, label=label, zorder=3)
    trades = trade_list(result)
    segments = np.stack(
        [
            trades[["entry_bar", "entry_price"]].to_numpy(dtype=np.float64),
            trades[["exit_bar", "exit_price"]].to_numpy(dtype=np.float64),
        ],
        axis=1,
    ).reshape(-1, 2, 2)
    colors = np.where(trades["pnl"].to_numpy() > 0, "tab:green", "tab:red")
    ax.add_collection(LineCollection(list(segments), colors=list(colors), lw=1.5, alpha=0.8))
    ax.set_xlabel("bar")
    ax.set_ylabel("price (USD)")
    ax.set_title(title or f"{len(trades)} round trips, {len(fills)} fills")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def plot_monthly_returns(equity: pd.Series, title: str = "") -> Figure:
    """Heatmap of calendar-month returns (:func:`~trader.metrics.monthly_returns`).

    Years down, months across, each cell annotated in % and coloured on a red-green
    scale symmetric about 0; months without data are blank.

    Returns
    -------
    Figure
        The heatmap axes (one image, one text per month with data) and a colorbar axes.
    """
    table = monthly_returns(equity) * 100.0
    values = table.to_numpy(dtype=np.float64)
    finite = values[np.isfinite(values)]
    lim = float(np.abs(finite).max()) if finite.size else 0.0
    lim = lim if lim > 0 else 1.0
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.5 * len(table)), layout="constrained")
    image = ax.imshow(
        np.ma.masked_invalid(values),
        cmap="RdYlGn",
        norm=Normalize(-lim, lim),
        aspect="auto",
    )
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.1f}%", ha="center", va="center", fontsize=9)
    ax.set_xticks(range(12), _MONTHS)
    ax.set_yticks(range(len(table)), [str(y) for y in table.index])
    ax.set_title(title or "monthly returns (%)")
    fig.colorbar(image, ax=ax, label="return (%)")
    return fig


def plot_sweep_heatmap(
    df: pd.DataFrame, x: str, y: str, value: str, title: str = "", fmt: str = ".3g"
) -> Figure:
    """Heatmap of a parameter sweep: ``value`` for each (``x``, ``y``) pair.

    Parameters
    ----------
    df : DataFrame
        One row per parameter combination, with columns ``x``, ``y`` and ``value``
        (e.g. a metric of :func:`~trader.metrics.summary`).
    x, y : str
        Parameter columns shown across (x) and up (y), in sorted order.
    value : str
        The column coloured (viridis) and annotated with ``format(v, fmt)``; missing
        combinations are blank.
    title, fmt : str
        Axes title (default ``value``) and annotation format.

    Returns
    -------
    Figure
        The heatmap axes (one image, one text per finite cell) and a colorbar axes.

    Raises
    ------
    ValueError
        A column is missing, or a (x, y) pair appears more than once (filter the other
        swept parameters first).
    """
    missing = {x, y, value} - set(df.columns)
    if missing:
        raise ValueError(f"sweep table has no column(s) {sorted(missing)}")
    if df.duplicated([x, y]).any():
        raise ValueError(
            f"sweep table has several rows per ({x}, {y}) pair: filter or aggregate the "
            "other parameters first"
        )
    grid = df.pivot(index=y, columns=x, values=value).sort_index().sort_index(axis=1)
    values = grid.to_numpy(dtype=np.float64)
    fig, ax = plt.subplots(
        figsize=(1.5 + 0.8 * grid.shape[1], 1.5 + 0.5 * grid.shape[0]), layout="constrained"
    )
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", origin="lower", aspect="auto")
    finite = values[np.isfinite(values)]
    mid = (float(finite.min()) + float(finite.max())) / 2 if finite.size else 0.0
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            dark = v < mid  # the low half of viridis is dark
            ax.text(
                j,
                i,
                format(v, fmt),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if dark else "black",
            )
    ax.set_xticks(range(grid.shape[1]), [str(c) for c in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [str(r) for r in grid.index])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title or value)
    fig.colorbar(image, ax=ax, label=value)
    return fig


__all__ = ["plot_equity_drawdown", "plot_monthly_returns", "plot_sweep_heatmap", "plot_trades"]
