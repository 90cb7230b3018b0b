"""A research panel: one slider per strategy parameter; moving one re-runs the backtest
and redraws the statistics and the equity/drawdown chart."""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import matplotlib.pyplot as plt
import pandas as pd
from pydantic import ValidationError

from trader.backtest import BacktestResult, run_backtest
from trader.metrics import summary
from trader.metrics.plots import plot_equity_drawdown
from trader.strategy import get_strategy
from trader.widgets.render import png, table

#: Statistics shown next to the chart (keys of :func:`trader.metrics.summary`).
SHOWN = ("total_return", "sharpe", "max_drawdown", "n_trades", "win_rate", "profit_factor")


def _slider(name: str, field: Any, value: Any) -> w.Widget:
    """A slider for one pydantic field at ``value``: bounds from its ``ge``/``gt``/
    ``le``/``lt`` constraints, else up to 4x the larger of its default and ``value``."""
    lo: float | None = None
    hi: float | None = None
    for m in field.metadata:
        lo = getattr(m, "ge", None) or getattr(m, "gt", None) or lo
        hi = getattr(m, "le", None) or getattr(m, "lt", None) or hi
    common = {
        "description": name,
        "continuous_update": False,
        "style": {"description_width": "110px"},
    }
    if field.annotation is int:
        return w.IntSlider(
            value=int(value),
            min=int(lo or 1),
            max=int(hi or 4 * max(int(field.default), int(value), 3)),
            **common,
        )
    return w.FloatSlider(
        value=float(value),
        min=float(lo or 0.0),
        max=float(hi or 4 * max(float(field.default), float(value), 1.0)),
        step=0.5,
        **common,
    )


class BacktestPanel:
    """Sliders for ``strategy``'s parameters over a backtest of ``bars``.

    Parameters
    ----------
    bars : DataFrame
        From a :mod:`trader.data` loader (validated OHLCV, UTC index).
    strategy : str
        A name in :data:`trader.strategy.STRATEGIES`.
    params : dict, optional
        Starting parameter values (the strategy's defaults otherwise).
    **backtest_kwargs
        Passed to :func:`trader.backtest.run_backtest` (``initial_cash`` USD,
        ``commission_bps``, ``slippage_bps``).

    Raises
    ------
    ConfigurationError
        Unknown strategy.
    pydantic.ValidationError
        Invalid starting parameters.
    """

    def __init__(
        self,
        bars: pd.DataFrame,
        strategy: str = "ema_rsi",
        params: dict[str, Any] | None = None,
        **backtest_kwargs: Any,
    ) -> None:
        spec = get_strategy(strategy)
        start = spec.params(params or {})
        self.bars = bars
        self.strategy = strategy
        self.backtest_kwargs = backtest_kwargs
        self.sliders = {
            name: _slider(name, field, getattr(start, name))
            for name, field in spec.params_type.model_fields.items()
        }
        self.stats = w.HTML()
        self.stats.add_class("trader-backtest-stats")
        self.message = w.HTML()
        self.chart = w.Image(format="png", layout=w.Layout(width="700px"))
        for s in self.sliders.values():
            s.observe(lambda _: self.run(), names="value")
        self.widget = w.HBox(
            [
                w.VBox([*self.sliders.values(), self.message, self.stats]),
                self.chart,
            ]
        )
        self.result: BacktestResult | None = None
        self.run()

    @property
    def params(self) -> dict[str, Any]:
        """The parameters the sliders show."""
        return {k: s.value for k, s in self.sliders.items()}

    def run(self) -> None:
        """Backtest with the sliders' parameters and redraw; invalid parameters (such as
        ``fast >= slow``) are reported in the panel and leave the last result shown."""
        try:
            result = run_backtest(self.bars, self.strategy, self.params, **self.backtest_kwargs)
        except ValidationError as e:
            self.message.value = (
                f"<span style='color:#c62828'>invalid parameters: "
                f"{'; '.join(err['msg'] for err in e.errors())}</span>"
            )
            return
        self.result = result
        self.message.value = ""
        stats = summary(result)
        self.stats.value = table(
            ((k, f"{stats[k]:.4g}") for k in SHOWN if k in stats), ("statistic", "value")
        )
        fig = plot_equity_drawdown(result, title=f"{self.strategy} {self.params}")
        self.chart.value = png(fig)
        plt.close(fig)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
