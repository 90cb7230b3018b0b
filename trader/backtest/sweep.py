"""Parameter sweeps: every combination of a grid backtested in parallel on all cores.

The sets run through :func:`trader.backtest.nb.sweep_bars_nb` (numba threads, one
compiled kernel shared by all of them) in chunks, with a tqdm progress bar between
chunks. Each set gets the same fill and cost model as :func:`run_backtest`, and the
statistics computed in the kernel agree with :mod:`trader.metrics` (tested).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numba
import numpy as np
import pandas as pd
from pydantic import ValidationError
from tqdm.auto import tqdm

from trader.backtest.config import ExecutionConfig
from trader.backtest.engine import _spec, infer_bar_ns, resolve_config, session_days
from trader.backtest.nb import SWEEP_STATS, sweep_bars_nb
from trader.data import BAR_COLUMNS, validate_bars
from trader.metrics import TRADING_DAYS
from trader.strategy import StrategySpec


def parameter_grid(
    strategy: str | StrategySpec,
    grid: Mapping[str, Sequence[Any]],
    fixed: Mapping[str, Any] | None = None,
) -> tuple[pd.DataFrame, np.ndarray, int]:
    """Every valid combination of ``grid`` (plus ``fixed`` values) for ``strategy``.

    Returns
    -------
    (table, vectors, n_invalid) : (DataFrame, ndarray, int)
        The valid sets (one column per grid key), their kernel parameter vectors
        (shape (g, n_params) float64), and how many combinations the parameter object
        rejected (e.g. ``fast >= slow``).

    Raises
    ------
    ValueError
        An empty grid, an empty value list, a key both in ``grid`` and ``fixed``, or no
        valid combination.
    """
    spec = _spec(strategy)
    fixed = dict(fixed or {})
    if not grid or any(len(v) == 0 for v in grid.values()):
        raise ValueError(f"sweep grid must name at least one value per key, got {dict(grid)}")
    if set(grid) & set(fixed):
        raise ValueError(f"keys both swept and fixed: {sorted(set(grid) & set(fixed))}")
    keys = list(grid)
    rows, vectors, invalid = [], [], 0
    for combo in itertools.product(*(grid[k] for k in keys)):
        values = dict(zip(keys, combo, strict=True))
        try:
            p = spec.params({**fixed, **values})
        except ValidationError:
            invalid += 1
            continue
        rows.append(values)
        vectors.append(p.to_array())
    if not rows:
        raise ValueError(f"no valid parameter set in grid {dict(grid)} with {fixed}")
    return pd.DataFrame(rows, columns=keys), np.vstack(vectors), invalid


def run_sweep(
    bars: pd.DataFrame,
    grid: Mapping[str, Sequence[Any]],
    strategy: str | StrategySpec = "ema_rsi",
    *,
    fixed: Mapping[str, Any] | None = None,
    initial_cash: float = 100_000.0,
    config: ExecutionConfig | None = None,
    commission_bps: float | None = None,
    slippage_bps: float | None = None,
    chunk_size: int = 500,
    n_threads: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Backtest every combination of ``grid`` on ``bars``, in parallel.

    Parameters
    ----------
    bars : DataFrame
        One symbol's validated OHLCV bars (UTC index).
    grid : mapping of parameter name -> values
        The swept parameters; every combination is run (invalid ones skipped).
    strategy, initial_cash, config, commission_bps, slippage_bps
        As :func:`trader.backtest.run_backtest`.
    fixed : mapping, optional
        Parameters held constant.
    chunk_size : int
        Sets per kernel call (the progress bar advances per chunk).
    n_threads : int, optional
        numba threads (default: all cores).
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    DataFrame
        One row per valid set: the grid columns, then ``total_return``,
        ``final_equity`` (USD), ``max_drawdown``, ``sharpe`` (daily, annualised),
        ``n_fills``, ``commission`` (USD), ``exposure`` (fraction of bars held); in grid
        order. ``attrs["n_invalid"]`` counts the skipped combinations.

    Raises
    ------
    ValueError
        As :func:`parameter_grid`, or ``chunk_size < 1``.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    spec = _spec(strategy)
    cfg = resolve_config(config, commission_bps, slippage_bps)
    table, vectors, n_invalid = parameter_grid(spec, grid, fixed)
    validate_bars(bars, "run_sweep bars")
    n = len(bars)
    cols = [np.ascontiguousarray(bars[c].to_numpy(np.float64).reshape(n, 1)) for c in BAR_COLUMNS]
    ts = pd.DatetimeIndex(bars.index).as_unit("ns").asi8
    day = session_days(bars.index)
    fc = cfg.to_array(cfg.bar_ns or infer_bar_ns(bars.index))
    sig = np.full((n, 1), np.nan)
    before = numba.get_num_threads()
    if n_threads is not None:
        numba.set_num_threads(n_threads)
    try:
        out = []
        with tqdm(total=len(vectors), desc="sweep", unit="set", disable=not progress) as bar:
            for s in range(0, len(vectors), chunk_size):
                block = np.ascontiguousarray(vectors[s : s + chunk_size])
                args: tuple[Any, ...] = (
                    spec.step_nb,
                    ts,
                    day,
                    *cols,
                    sig,
                    block,
                    spec.state_size,
                    fc,
                    float(initial_cash),
                    float(TRADING_DAYS),
                )
                out.append(sweep_bars_nb(*args))
                bar.update(len(block))
    finally:
        numba.set_num_threads(before)
    stats = pd.DataFrame(np.vstack(out), columns=list(SWEEP_STATS))
    stats["n_fills"] = stats["n_fills"].astype(np.int64)
    result = pd.concat([table, stats], axis=1)
    result.attrs["n_invalid"] = n_invalid
    return result


def rank_sweep(results: pd.DataFrame, by: str = "sharpe", top: int | None = None) -> pd.DataFrame:
    """Sort a :func:`run_sweep` table best first by ``by`` (NaN last); ``max_drawdown``
    ranks ascending, every other statistic descending.

    Raises
    ------
    KeyError
        If ``by`` is not a column.
    """
    if by not in results.columns:
        raise KeyError(f"no column {by!r} in the sweep results; have {list(results.columns)}")
    ranked = results.sort_values(by, ascending=by == "max_drawdown", na_position="last")
    return ranked if top is None else ranked.head(top)


__all__ = ["parameter_grid", "rank_sweep", "run_sweep"]
