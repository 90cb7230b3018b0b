"""Orchestration of the backtest kernels: bars, portfolios of bars, level-1 quotes.

The fill, cost and timing rules are those of :mod:`trader.backtest.nb`; the execution
model is an :class:`~trader.backtest.config.ExecutionConfig`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from trader.backtest.config import ExecutionConfig
from trader.backtest.enums import FILL_DTYPE, ORDER_DTYPE
from trader.backtest.nb import simulate_bars_nb, simulate_quotes_nb
from trader.backtest.result import (
    BacktestRecords,
    BacktestResult,
    PortfolioResult,
    fills_frame,
    orders_frame,
)
from trader.data import BAR_COLUMNS, validate_bars
from trader.data.loaders import NEW_YORK
from trader.strategy import StrategySpec, get_strategy

#: First guess of the order/fill buffers as a share of the events; a run that needs
#: more is repeated with the exact bound (one order and one fill per event and symbol).
_FIRST_CAPACITY = 0.125


def infer_bar_ns(index: pd.Index) -> int:
    """The bar length of a bar index, ns: the median gap between the first 100,001 bar
    starts (the bar length itself when most bars follow one another, as within
    sessions; from a prefix, so later data never changes it).

    Raises
    ------
    ValueError
        With fewer than two bars (pass ``ExecutionConfig(bar_ns=...)`` then).
    """
    ts = pd.DatetimeIndex(index).as_unit("ns").asi8
    if len(ts) < 2:
        raise ValueError("cannot infer the bar length from fewer than 2 bars; set bar_ns")
    return int(np.median(np.diff(ts[:100_001])))


_HOUR_NS = 3_600_000_000_000
_DAY_NS = 86_400_000_000_000


def session_days(index: pd.Index) -> np.ndarray:
    """New York calendar day of each timestamp, as int64 days since 1970-01-01.

    The UTC offset is looked up once per distinct UTC hour (New York's offset changes
    only on the hour), so 10M minute bars cost one pass, not a tz conversion each.
    """
    ts = pd.DatetimeIndex(index).as_unit("ns").asi8
    h = ts // _HOUR_NS
    if len(h) > 1 and (h[1:] >= h[:-1]).all():  # sorted: runs of equal hours, one pass
        first = np.r_[0, np.flatnonzero(h[1:] != h[:-1]) + 1]
        hours = h[first]
        inverse = np.repeat(np.arange(len(first)), np.diff(np.r_[first, len(h)]))
    else:
        hours, inverse = np.unique(h, return_inverse=True)
    starts = pd.DatetimeIndex(pd.to_datetime(hours * _HOUR_NS, utc=True))
    offset = starts.tz_convert(NEW_YORK).tz_localize(None).asi8 - starts.tz_localize(None).asi8
    return ((ts + offset[inverse]) // _DAY_NS).astype(np.int64)


def resolve_config(
    config: ExecutionConfig | None, commission_bps: float | None, slippage_bps: float | None
) -> ExecutionConfig:
    """``config`` (default :class:`ExecutionConfig`) with the two shortcut costs applied.

    Raises
    ------
    pydantic.ValidationError
        If a shortcut cost is negative.
    """
    cfg = config or ExecutionConfig()
    update: dict[str, Any] = {}
    if commission_bps is not None:
        update["commission_bps"] = commission_bps
    if slippage_bps is not None:
        update["slippage_bps"] = slippage_bps
    return ExecutionConfig(**{**cfg.model_dump(), **update}) if update else cfg


def _spec(strategy: str | StrategySpec) -> StrategySpec:
    return strategy if isinstance(strategy, StrategySpec) else get_strategy(strategy)


def _signal(signal: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    if signal is None:
        return np.full(shape, np.nan)
    out = np.ascontiguousarray(signal, dtype=np.float64)
    if out.shape != shape:
        raise ValueError(f"{what} must have shape {shape}, got {out.shape}")
    return out


def _run(
    kernel: Callable[..., tuple[int, int]],
    args: tuple[Any, ...],
    state_pos: int,
    cash: float,
    position_shape: tuple[int, ...],
) -> BacktestRecords:
    """Call a simulate kernel with fresh output buffers (and a fresh copy of the step
    state ``args[state_pos]``), growing the order/fill buffers to the exact bound, one
    record per event and symbol, if the first guess was too small."""
    n_slots = int(np.prod(position_shape))
    n_events = position_shape[0]
    capacity = max(1024, int(n_slots * _FIRST_CAPACITY))
    while True:
        call = list(args)
        call[state_pos] = args[state_pos].copy()
        orders = np.empty(capacity, dtype=ORDER_DTYPE)
        fills = np.empty(capacity, dtype=FILL_DTYPE)
        cash_out, equity_out = np.empty(n_events), np.empty(n_events)
        position = np.empty(position_shape)
        n_orders, n_fills = kernel(*call, cash, orders, fills, cash_out, equity_out, position)
        if n_orders >= 0:
            return BacktestRecords(
                orders[:n_orders].copy(), fills[:n_fills].copy(), cash_out, equity_out, position
            )
        capacity = max(n_slots, capacity + 1)


def _single_result(
    rec: BacktestRecords,
    close: np.ndarray,
    position: np.ndarray,
    index: pd.Index,
    initial_cash: float,
) -> BacktestResult:
    """The result of a one-symbol run: per-event close (USD), cash, position and equity
    on ``index``, with the order and fill records."""
    frame = pd.DataFrame(
        {"close": close, "cash": rec.cash, "position": position, "equity": rec.equity},
        index=index,
    )
    return BacktestResult(
        bars=frame,
        fills=fills_frame(rec.fills),
        initial_cash=float(initial_cash),
        orders=orders_frame(rec.orders),
        records=rec,
    )


def run_backtest(
    bars: pd.DataFrame,
    strategy: str | StrategySpec = "ema_rsi",
    params: dict[str, Any] | None = None,
    *,
    initial_cash: float = 100_000.0,
    config: ExecutionConfig | None = None,
    commission_bps: float | None = None,
    slippage_bps: float | None = None,
    signal: np.ndarray | None = None,
    warmup: int = 0,
) -> BacktestResult:
    """Backtest ``strategy`` on one symbol's bars with the full order and cost model.

    Parameters
    ----------
    bars : DataFrame
        From a :mod:`trader.data` loader (validated OHLCV, UTC index of bar starts).
    strategy : str or StrategySpec
        A name in :data:`trader.strategy.STRATEGIES`, or a spec.
    params : dict, optional
        Strategy parameters; defaults of the strategy's parameter object otherwise.
    initial_cash : float
        USD.
    config : ExecutionConfig, optional
        Order type, time in force, costs, latency, participation (default: market DAY
        orders, no costs). ``bar_ns`` is inferred from the bars when unset.
    commission_bps, slippage_bps : float, optional
        Shortcuts overriding the config's costs, bps of traded notional (>= 0).
    signal : ndarray, shape (len(bars),), float64, optional
        External input of the step kernel per bar, known at that bar's close (a model's
        output); NaN (the default) for rule strategies.
    warmup : int
        Leading bars that only advance the strategy state (no orders, no fills), as
        the live engine's warm-up from the broker's history (:mod:`live.warmup`); the
        result covers the bars after them.

    Returns
    -------
    BacktestResult

    Raises
    ------
    ConfigurationError
        Unknown strategy.
    pydantic.ValidationError
        Invalid strategy parameters or execution config (e.g. a negative cost).
    ValueError
        Non-positive cash, a signal of the wrong shape, ``warmup`` outside
        ``[0, len(bars))``, or fewer than 2 bars without ``bar_ns``.
    DataError
        Bars that fail :func:`trader.data.validate_bars`.
    """
    if initial_cash <= 0:
        raise ValueError(f"initial_cash must be > 0 USD, got {initial_cash}")
    cfg = resolve_config(config, commission_bps, slippage_bps)
    spec = _spec(strategy)
    p = spec.params(params or {})
    validate_bars(bars, "run_backtest bars")
    if not 0 <= warmup < len(bars):
        raise ValueError(f"warmup must be in [0, {len(bars)}) bars, got {warmup}")
    all_signal = _signal(signal, (len(bars),), "signal")
    state = spec.warm_state(
        p.to_array(), bars["close"].to_numpy(np.float64)[:warmup], all_signal[:warmup]
    )
    bars, signal = bars.iloc[warmup:], all_signal[warmup:]
    n = len(bars)
    fc = cfg.to_array(cfg.bar_ns or infer_bar_ns(bars.index))
    ts = pd.DatetimeIndex(bars.index).as_unit("ns").asi8
    cols = [np.ascontiguousarray(bars[c].to_numpy(np.float64).reshape(n, 1)) for c in BAR_COLUMNS]
    sig = _signal(signal, (n,), "signal").reshape(n, 1)
    args = (
        spec.step_nb,
        ts,
        session_days(bars.index),
        *cols,
        sig,
        p.to_array().reshape(1, -1),
        state.reshape(1, -1),
        fc,
    )
    rec = _run(simulate_bars_nb, args, -2, float(initial_cash), (n, 1))
    return _single_result(rec, cols[3][:, 0], rec.position[:, 0], bars.index, initial_cash)


def run_portfolio(
    bars: Mapping[str, pd.DataFrame],
    strategy: str | StrategySpec = "ema_rsi",
    params: dict[str, Any] | Mapping[str, dict[str, Any]] | None = None,
    *,
    initial_cash: float = 100_000.0,
    config: ExecutionConfig | None = None,
    signals: Mapping[str, np.ndarray] | None = None,
) -> PortfolioResult:
    """Backtest one strategy on several symbols sharing one cash account.

    Bars are aligned on the union of their timestamps; a symbol without a bar at a
    timestamp is neither stepped nor filled there and is marked at its last close.
    Symbols are processed in the order of ``bars`` within each bar, so with
    ``cash_check`` an earlier symbol's buy is paid first.

    Parameters
    ----------
    bars : mapping of symbol -> DataFrame
        Validated OHLCV bars per symbol (UTC index).
    params : dict, or mapping of symbol -> dict, optional
        One parameter set for all symbols, or one per symbol (keys = the symbols).
    signals : mapping of symbol -> ndarray, optional
        External step input per symbol, shape (len of that symbol's bars,).
    strategy, initial_cash, config
        As :func:`run_backtest`.

    Raises
    ------
    ValueError
        No symbols, non-positive cash, per-symbol params not matching the symbols, or a
        signal of the wrong shape.
    ConfigurationError, pydantic.ValidationError, DataError
        As :func:`run_backtest`.
    """
    if not bars:
        raise ValueError("run_portfolio needs at least one symbol")
    if initial_cash <= 0:
        raise ValueError(f"initial_cash must be > 0 USD, got {initial_cash}")
    symbols = list(bars)
    cfg = config or ExecutionConfig()
    spec = _spec(strategy)
    per_symbol = params is not None and set(params) == set(symbols)
    if params is not None and not per_symbol and set(params) & set(symbols):
        raise ValueError(f"per-symbol params must cover exactly {symbols}, got {list(params)}")
    param_rows = [
        spec.params(dict(params[s]) if per_symbol and params else dict(params or {})).to_array()
        for s in symbols
    ]
    for s in symbols:
        validate_bars(bars[s], f"run_portfolio bars[{s!r}]")
    index = pd.DatetimeIndex(sorted(set().union(*(b.index for b in bars.values()))), name="ts")
    n, m = len(index), len(symbols)
    panel = {
        c: np.ascontiguousarray(
            np.column_stack([bars[s][c].reindex(index).to_numpy(np.float64) for s in symbols])
        )
        for c in BAR_COLUMNS
    }
    sig = np.full((n, m), np.nan)
    for k, s in enumerate(symbols):
        if signals is not None and s in signals:
            pos = index.get_indexer(bars[s].index)
            sig[pos, k] = _signal(signals[s], (len(bars[s]),), f"signals[{s!r}]")
    bar_ns = cfg.bar_ns or min(infer_bar_ns(b.index) for b in bars.values())
    ts = index.as_unit("ns").asi8
    args = (
        spec.step_nb,
        ts,
        session_days(index),
        *(panel[c] for c in BAR_COLUMNS),
        sig,
        np.vstack(param_rows),
        np.zeros((m, spec.state_size)),
        cfg.to_array(bar_ns),
    )
    rec = _run(simulate_bars_nb, args, -2, float(initial_cash), (n, m))
    return PortfolioResult(
        equity=pd.DataFrame({"cash": rec.cash, "equity": rec.equity}, index=index),
        positions=pd.DataFrame(rec.position, index=index, columns=symbols),
        close=pd.DataFrame(panel["close"], index=index, columns=symbols),
        fills=fills_frame(rec.fills, symbols),
        orders=orders_frame(rec.orders, symbols),
        initial_cash=float(initial_cash),
        records=rec,
    )


def run_quotes(
    quotes: pd.DataFrame,
    strategy: str | StrategySpec = "ema_rsi",
    params: dict[str, Any] | None = None,
    *,
    initial_cash: float = 100_000.0,
    config: ExecutionConfig | None = None,
    signal: np.ndarray | None = None,
) -> BacktestResult:
    """Backtest ``strategy`` on level-1 quote events, filling at the touch.

    The step kernel sees the mid of each event's book; orders arrive ``latency_ns``
    after the deciding event and fill against the displayed touch (rules in
    :mod:`trader.backtest.nb`). ``max_participation`` and ``spread_bps`` do not apply.

    Parameters
    ----------
    quotes : DataFrame
        From :func:`trader.data.load_lobster` (or any frame with a UTC index and
        ``bid_price, ask_price`` USD and ``bid_size, ask_size`` shares).
    strategy, params, initial_cash, signal
        As :func:`run_backtest` (``signal`` per event).
    config : ExecutionConfig, optional
        Order type, time in force, commission, ``slippage_bps``, ``latency_ns``.

    Returns
    -------
    BacktestResult
        ``bars`` has one row per event: ``close`` (the mid, USD), ``cash``,
        ``position``, ``equity``.

    Raises
    ------
    ValueError
        A missing column, decreasing times, non-positive cash, or a bad signal shape.
    """
    missing = {"bid_price", "ask_price", "bid_size", "ask_size"} - set(quotes.columns)
    if missing:
        raise ValueError(f"run_quotes: quotes lack columns {sorted(missing)}")
    if initial_cash <= 0:
        raise ValueError(f"initial_cash must be > 0 USD, got {initial_cash}")
    ts = pd.DatetimeIndex(quotes.index).as_unit("ns").asi8
    if len(ts) > 1 and (np.diff(ts) < 0).any():
        i = int(np.flatnonzero(np.diff(ts) < 0)[0]) + 1
        raise ValueError(f"run_quotes: row {i} ({quotes.index[i]}): time decreases")
    cfg = config or ExecutionConfig()
    spec = _spec(strategy)
    p = spec.params(params or {})
    n = len(quotes)
    col = {
        c: np.ascontiguousarray(quotes[c].to_numpy(np.float64))
        for c in ("bid_price", "ask_price", "bid_size", "ask_size")
    }
    args = (
        spec.step_nb,
        ts,
        col["bid_price"],
        col["ask_price"],
        col["bid_size"],
        col["ask_size"],
        _signal(signal, (n,), "signal"),
        p.to_array(),
        spec.new_state(),
        cfg.to_array(0),
    )
    rec = _run(simulate_quotes_nb, args, -2, float(initial_cash), (n,))
    mid = 0.5 * (col["bid_price"] + col["ask_price"])
    return _single_result(rec, mid, rec.position, quotes.index, initial_cash)


__all__ = [
    "infer_bar_ns",
    "resolve_config",
    "run_backtest",
    "run_portfolio",
    "run_quotes",
    "session_days",
]
