"""Matplotlib figures for notebooks (matplotlib is the project's one plotting library)."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from trader.backtest import BacktestResult
from trader.metrics import drawdown


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
