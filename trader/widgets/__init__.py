"""ipywidgets panels for JupyterLab and Voilà.

:class:`LivePanel` is a client of a running daemon's control API (it keeps no state of
its own and updates in the background); :class:`BacktestPanel` re-runs a backtest when
a researcher moves a parameter slider.
"""

from trader.widgets.backtest import BacktestPanel
from trader.widgets.live import LivePanel

__all__ = ["BacktestPanel", "LivePanel"]
