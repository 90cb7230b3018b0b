"""Backtest results: the kernels' record arrays, with pandas views of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple

import numpy as np
import pandas as pd

from trader.backtest.enums import FILL_DTYPE, ORDER_DTYPE, OrderStatus, OrderType, TimeInForce


class BacktestRecords(NamedTuple):
    """The raw outputs of a kernel run (see :mod:`trader.backtest.nb`)."""

    orders: np.ndarray
    """Shape (n_orders,), :data:`~trader.backtest.enums.ORDER_DTYPE`."""
    fills: np.ndarray
    """Shape (n_fills,), :data:`~trader.backtest.enums.FILL_DTYPE`."""
    cash: np.ndarray
    """Shape (n,), float64: end-of-bar cash, USD."""
    equity: np.ndarray
    """Shape (n,), float64: end-of-bar equity, USD."""
    position: np.ndarray
    """Shape (n, m), float64: end-of-bar position per symbol, shares."""


def _ts(values: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(values, utc=True), name="ts")


def orders_frame(orders: np.ndarray, symbols: list[str] | None = None) -> pd.DataFrame:
    """Orders as a DataFrame indexed by order id.

    Times become UTC timestamps (``ts_done`` NaT while live), ``type``, ``tif`` and
    ``status`` their lower-case names, ``symbol`` the name when ``symbols`` is given.
    """
    if orders.dtype != ORDER_DTYPE:
        raise ValueError(f"orders must have ORDER_DTYPE, got {orders.dtype}")
    df = pd.DataFrame(orders).set_index("id")
    for col in ("ts_decision", "ts_arrival"):
        df[col] = pd.to_datetime(df[col], utc=True)
    done = df["ts_done"].to_numpy()
    df["ts_done"] = pd.to_datetime(np.where(done < 0, np.iinfo(np.int64).min, done), utc=True)
    df["type"] = _names(df["type"], OrderType)
    df["time_in_force"] = _names(df.pop("tif"), TimeInForce)
    df["status"] = _names(df["status"], OrderStatus)
    if symbols is not None:
        df["symbol"] = _categorical(df["symbol"], symbols)
    return df


def _categorical(codes: pd.Series, names: list[str]) -> np.ndarray:
    """Integer codes as an object array of ``names`` (one fancy-indexing pass)."""
    return np.asarray(names, dtype=object)[codes.to_numpy(np.int64)]


def _names(codes: pd.Series, enum: type[IntEnum]) -> np.ndarray:
    """Enum codes as the members' lower-case names."""
    return _categorical(codes, [m.name.lower() for m in sorted(enum, key=int)])


def fills_frame(fills: np.ndarray, symbols: list[str] | None = None) -> pd.DataFrame:
    """Fills as a DataFrame indexed by ``ts`` (UTC; the bar start or event time).

    Columns ``bar``, ``qty`` (signed shares), ``price`` (USD), ``commission`` (USD),
    ``slippage`` (USD), ``order_id``, and ``symbol`` (the name) when ``symbols`` is given.
    """
    if fills.dtype != FILL_DTYPE:
        raise ValueError(f"fills must have FILL_DTYPE, got {fills.dtype}")
    df = pd.DataFrame(fills)
    df.index = _ts(df.pop("ts_event").to_numpy())
    sym = df.pop("symbol")
    if symbols is not None:
        df["symbol"] = _categorical(sym, symbols)
    return df[
        ["bar", "qty", "price", "commission", "slippage", "order_id"]
        + (["symbol"] if symbols is not None else [])
    ]


@dataclass(frozen=True)
class BacktestResult:
    """Outputs of a single-symbol backtest (:func:`trader.backtest.run_backtest`).

    Attributes
    ----------
    bars : DataFrame
        Per bar (index ``ts``, UTC bar start): ``close`` (USD), ``cash`` (USD),
        ``position`` (shares), ``equity`` (USD), all after the bar's close.
    fills : DataFrame
        :func:`fills_frame` of the fills.
    initial_cash : float
        USD.
    orders : DataFrame
        :func:`orders_frame` of the orders (empty when built by hand).
    records : BacktestRecords or None
        The kernel's record arrays.
    """

    bars: pd.DataFrame
    fills: pd.DataFrame
    initial_cash: float
    orders: pd.DataFrame = field(default_factory=pd.DataFrame)
    records: BacktestRecords | None = None


@dataclass(frozen=True)
class PortfolioResult:
    """Outputs of a multi-symbol backtest (:func:`trader.backtest.run_portfolio`).

    Attributes
    ----------
    equity : DataFrame
        Per bar (index ``ts``): ``cash`` and ``equity``, USD, after the bar's close.
    positions : DataFrame
        Per bar, one column per symbol: shares after the bar's close.
    close : DataFrame
        The close prices used to mark positions, USD (NaN: no bar).
    fills, orders : DataFrame
        With a ``symbol`` column (see :func:`fills_frame`, :func:`orders_frame`).
    initial_cash : float
        USD.
    records : BacktestRecords
    """

    equity: pd.DataFrame
    positions: pd.DataFrame
    close: pd.DataFrame
    fills: pd.DataFrame
    orders: pd.DataFrame
    initial_cash: float
    records: BacktestRecords

    def symbol(self, name: str) -> BacktestResult:
        """One symbol's slice as a :class:`BacktestResult` for :mod:`trader.metrics`.

        Its ``cash`` is that symbol's own cash flows (initial cash plus fills), so that
        ``equity = cash + position * close`` holds for the slice too.
        """
        fills = self.fills[self.fills["symbol"] == name]
        flows = np.zeros(len(self.equity))
        paid = (fills["qty"] * fills["price"] + fills["commission"]).to_numpy()
        np.add.at(flows, fills["bar"].to_numpy(), -paid)
        cash = pd.Series(self.initial_cash + np.cumsum(flows), index=self.equity.index)
        close = self.close[name].ffill()
        pos = self.positions[name]
        bars = pd.DataFrame(
            {"close": close, "cash": cash, "position": pos, "equity": cash + pos * close.fillna(0)}
        )
        return BacktestResult(
            bars=bars,
            fills=fills.drop(columns="symbol"),
            initial_cash=self.initial_cash,
            orders=self.orders[self.orders["symbol"] == name],
        )


__all__ = [
    "BacktestRecords",
    "BacktestResult",
    "PortfolioResult",
    "fills_frame",
    "orders_frame",
]
