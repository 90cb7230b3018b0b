"""Backtesting: the event-driven numba engine (:mod:`trader.backtest.nb`) over bars,
portfolios of bars and level-1 quotes, with orders, costs and results as record arrays.

See :mod:`trader.backtest.nb` for the timing, intrabar and fill conventions.
"""

from trader.backtest.config import DAY_NS, ExecutionConfig
from trader.backtest.engine import (
    infer_bar_ns,
    run_backtest,
    run_portfolio,
    run_quotes,
    session_days,
)
from trader.backtest.enums import FILL_DTYPE, ORDER_DTYPE, OrderStatus, OrderType, TimeInForce
from trader.backtest.result import (
    BacktestRecords,
    BacktestResult,
    PortfolioResult,
    fills_frame,
    orders_frame,
)

__all__ = [
    "DAY_NS",
    "FILL_DTYPE",
    "ORDER_DTYPE",
    "BacktestRecords",
    "BacktestResult",
    "ExecutionConfig",
    "OrderStatus",
    "OrderType",
    "PortfolioResult",
    "TimeInForce",
    "fills_frame",
    "infer_bar_ns",
    "orders_frame",
    "run_backtest",
    "run_portfolio",
    "run_quotes",
    "session_days",
]
