"""Benchmark: backtester throughput beside a bare numba loop, pure Python, vectorbt and
backtrader, on the real SPY minute bars (tiled) and the LOBSTER AAPL hour, plus a sweep.

One run prints, side by side:

* the full model (market DAY orders, commission per share + bps + minimum, slippage +
  half spread, 5% volume participation, cash check) of the EMA/RSI strategy over the 7,800
  regular-session SPY bars of January 2011 tiled to >= 10M bars (each copy shifted by 35
  days), as bar events per second of the kernel on one core, and end to end through
  ``run_backtest`` (validation and DataFrames included);
* the floor: a bare numba loop calling the same step kernel, filling at the next open
  with no order records, costs or checks;
* a pure-Python loop of the same strategy and fills, on a slice, checked against the
  engine on that slice (fills and final equity to the cent);
* vectorbt ``Portfolio.from_signals`` and backtrader on the same signals (the EMA/RSI
  rule from ``trader.indicators``' array kernels) and the same fill assumptions (next
  bar's open, bps commission on the slipped price, bps slippage): the number of fills
  and the final equity must match ours to the cent (exit code 1 otherwise);
* ``run_quotes`` over the LOBSTER AAPL hour (events per second);
* a sweep of 10,000 parameter sets over the SPY month (wall time, sets per second).

Needs the ``bench`` extra (vectorbt, backtrader), installed by ``make bench``. Asserts
nothing about time; the machine may be shared, so figures vary between runs.

Run: ``make bench BENCH=backtest`` or ``.venv/bin/python bench/backtest.py [--bars N]``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from numba import njit

from trader import REPO_ROOT
from trader.backtest import ExecutionConfig, run_backtest, run_quotes
from trader.backtest.engine import _run, infer_bar_ns, session_days
from trader.backtest.nb import simulate_bars_nb
from trader.backtest.sweep import run_sweep
from trader.data import BAR_COLUMNS, load_lobster, load_minute_bars
from trader.indicators.nb import ema_nb, rsi_nb
from trader.strategy import get_strategy

SPY = REPO_ROOT / "data/intraday/SPY_2011-01_1min.csv"
LOB = REPO_ROOT / "data/lob"
PARAMS = {"fast": 12, "slow": 26, "rsi_window": 14, "rsi_overbought": 70.0, "qty": 100}
CASH = 10_000_000.0  # the demo strategy loses over 1,283 months: cash never binds
COMMISSION_BPS, SLIPPAGE_BPS = 0.5, 1.0
FULL = ExecutionConfig(
    commission_per_share=0.005,
    commission_bps=COMMISSION_BPS,
    commission_min=1.0,
    slippage_bps=SLIPPAGE_BPS,
    spread_bps=1.0,
    max_participation=0.05,
)
#: The assumptions vectorbt and backtrader can express too.
COMPARABLE = ExecutionConfig(
    commission_bps=COMMISSION_BPS, slippage_bps=SLIPPAGE_BPS, cash_check=False
)


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Smallest wall time of ``repeat`` calls (seconds) and the last result."""
    best, out = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def tile(bars: pd.DataFrame, n_min: int) -> pd.DataFrame:
    """Repeat ``bars`` until at least ``n_min`` rows, each copy 35 days after the last."""
    k = -(-n_min // len(bars))
    shift = np.repeat(np.arange(k, dtype=np.int64) * 35 * 86_400_000_000_000, len(bars))
    ts = np.tile(pd.DatetimeIndex(bars.index).as_unit("ns").asi8, k) + shift
    out = pd.DataFrame(np.tile(bars.to_numpy(), (k, 1)), columns=bars.columns)
    out.index = pd.DatetimeIndex(pd.to_datetime(ts, utc=True), name="ts")
    return out


def kernel_args(bars: pd.DataFrame, cfg: ExecutionConfig) -> tuple[Any, ...]:
    """The arguments ``run_backtest`` gives the kernel (without its validation/frames)."""
    spec = get_strategy("ema_rsi")
    n = len(bars)
    cols = [np.ascontiguousarray(bars[c].to_numpy(np.float64).reshape(n, 1)) for c in BAR_COLUMNS]
    return (
        spec.step_nb,
        pd.DatetimeIndex(bars.index).as_unit("ns").asi8,
        session_days(bars.index),
        *cols,
        np.full((n, 1), np.nan),
        spec.params(PARAMS).to_array().reshape(1, -1),
        spec.new_state().reshape(1, -1),
        cfg.to_array(infer_bar_ns(bars.index)),
    )


@njit
def bare_loop_nb(
    step_nb: Any,
    open_: np.ndarray,
    close: np.ndarray,
    params: np.ndarray,
    state: np.ndarray,
    cash: float,
) -> tuple[float, int]:
    """The floor: the step kernel, a fill at the next open, equity; nothing else."""
    position = 0.0
    pending = 0.0
    n_fills = 0
    equity = cash
    for i in range(close.shape[0]):
        if pending != 0.0:
            cash -= pending * open_[i]
            position += pending
            n_fills += 1
        target = step_nb(state, params, close[i], np.nan)
        pending = target - position
        equity = cash + position * close[i]
    return equity, n_fills


def python_loop(open_: list[float], close: list[float], p: dict[str, Any]) -> tuple[float, int]:
    """The same strategy and comparable fills in plain Python (floats, lists)."""
    fast, slow, rw, ob, qty = p["fast"], p["slow"], p["rsi_window"], p["rsi_overbought"], p["qty"]
    af, as_ = 2.0 / (fast + 1), 2.0 / (slow + 1)
    ef = es = prev = gain = loss = 0.0
    target = position = pending = 0.0
    cash, equity, n_fills = CASH, CASH, 0
    slip, bps = SLIPPAGE_BPS * 1e-4, COMMISSION_BPS * 1e-4
    for i, c in enumerate(close):
        if pending != 0.0:
            side = 1.0 if pending > 0 else -1.0
            px = open_[i] + side * open_[i] * slip
            cash -= pending * px + abs(pending) * px * bps
            position += pending
            n_fills += 1
            pending = 0.0
        if i == 0:
            ef = es = c
        else:
            ef += af * (c - ef)
            es += as_ * (c - es)
            ch = c - prev
            g, lo = (ch, 0.0) if ch > 0 else (0.0, -ch if ch < 0 else 0.0)
            if i <= rw:
                gain += g / rw
                loss += lo / rw
            else:
                gain = (gain * (rw - 1) + g) / rw
                loss = (loss * (rw - 1) + lo) / rw
        prev = c
        seen = i + 1
        if seen >= fast and seen >= slow and seen > rw:
            r = 100.0 if loss == 0.0 else 100.0 - 100.0 / (1.0 + gain / loss)
            if ef <= es:
                target = 0.0
            elif r < ob:
                target = qty
        pending = target - position
        equity = cash + position * c
    return equity, n_fills


def signals(close: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entries, exits and target shares of the EMA/RSI rule from the array kernels."""
    fast, slow = ema_nb(close, PARAMS["fast"]), ema_nb(close, PARAMS["slow"])
    r = rsi_nb(close, PARAMS["rsi_window"])
    warm = ~(np.isnan(fast) | np.isnan(slow) | np.isnan(r))
    entries = warm & (fast > slow) & (r < PARAMS["rsi_overbought"])
    exits = warm & (fast <= slow)
    target = pd.Series(np.where(exits, 0.0, np.where(entries, PARAMS["qty"], np.nan)))
    return entries, exits, target.ffill().fillna(0.0).to_numpy()


def run_vectorbt(bars: pd.DataFrame) -> tuple[float, int]:
    import vectorbt as vbt

    entries, exits, _ = signals(bars["close"].to_numpy())
    # decided on bar i's close, executed at bar i+1's open
    entries, exits = np.r_[False, entries[:-1]], np.r_[False, exits[:-1]]
    pf = vbt.Portfolio.from_signals(
        bars["close"].to_numpy(),
        entries,
        exits,
        price=bars["open"].to_numpy(),
        size=PARAMS["qty"],
        size_type="amount",
        fees=COMMISSION_BPS * 1e-4,
        slippage=SLIPPAGE_BPS * 1e-4,
        init_cash=CASH,
    )
    return float(pf.final_value()), int(pf.orders.count())


def run_backtrader(bars: pd.DataFrame) -> tuple[float, int]:
    import backtrader as bt

    class TargetData(bt.feeds.PandasData):  # type: ignore[misc]
        lines = ("target",)
        params = (("target", -1),)

    class FollowTarget(bt.Strategy):  # type: ignore[misc]
        def __init__(self) -> None:
            self.sent, self.n_fills = 0.0, 0

        def notify_order(self, order: Any) -> None:
            if order.status == order.Completed:
                self.n_fills += 1

        def next(self) -> None:
            t = float(self.data.target[0])
            if t != self.sent:
                self.order_target_size(target=t)
                self.sent = t

    df = bars.copy()
    df.index = df.index.tz_localize(None)
    df["target"] = signals(bars["close"].to_numpy())[2]
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(TargetData(dataname=df))
    cerebro.addstrategy(FollowTarget)
    cerebro.broker.setcash(CASH)
    cerebro.broker.setcommission(commission=COMMISSION_BPS * 1e-4)
    cerebro.broker.set_slippage_perc(SLIPPAGE_BPS * 1e-4, slip_match=True, slip_out=True)
    strat = cerebro.run()[0]
    return float(cerebro.broker.getvalue()), int(strat.n_fills)


def row(name: str, events: int, seconds: float, ref: float | None, note: str = "") -> float:
    rate = events / seconds
    ratio = f"{ref / rate:9.1f}x" if ref else " " * 10
    print(f"{name:<44}{events:>12,}{seconds:>10.3f}{rate:>14,.0f} {ratio}  {note}")
    return rate


def main() -> int:
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--bars", type=int, default=10_000_000, help="tile SPY to at least this")
    a.add_argument("--python-bars", type=int, default=300_000)
    a.add_argument("--backtrader-bars", type=int, default=40_000)
    a.add_argument("--sweep-sets", type=int, default=10_000)
    args = a.parse_args()
    month = load_minute_bars(SPY)
    big = tile(month, args.bars)
    n = len(big)
    ok = True
    print(
        f"EMA/RSI {PARAMS} on real SPY 1-min bars ({len(month):,} regular-session bars of "
        f"January 2011 tiled to {n:,}); one core; shared 2-core machine"
    )
    print(f"{'':<44}{'events':>12}{'seconds':>10}{'events/s':>14} {'ours/this':>10}")

    # warm-up (compilation) on a slice, then the timed runs
    small = big.iloc[:5000]
    for cfg in (FULL, COMPARABLE):
        _run(simulate_bars_nb, kernel_args(small, cfg), -2, CASH, (len(small), 1))
    args_full = kernel_args(big, FULL)
    t_full, rec = best_of(lambda: _run(simulate_bars_nb, args_full, -2, CASH, (n, 1)), 3)
    ours = row(
        "ours: full fill and cost model (kernel)",
        n,
        t_full,
        None,
        f"{len(rec.orders):,} orders, {len(rec.fills):,} fills",
    )
    args_cmp = kernel_args(big, COMPARABLE)
    t_cmp, rec_cmp = best_of(lambda: _run(simulate_bars_nb, args_cmp, -2, CASH, (n, 1)), 3)
    ours_cmp = row(
        "ours: comparable model (kernel)",
        n,
        t_cmp,
        None,
        f"{len(rec_cmp.fills):,} fills, final equity {rec_cmp.equity[-1]:,.2f}",
    )
    t_e2e, _ = best_of(lambda: run_backtest(big, params=PARAMS, config=FULL, initial_cash=CASH), 1)
    row("ours: run_backtest end to end (full model)", n, t_e2e, ours)

    spec = get_strategy("ema_rsi")
    o, c = big["open"].to_numpy(), big["close"].to_numpy()
    p = spec.params(PARAMS).to_array()
    bare_loop_nb(spec.step_nb, o[:100], c[:100], p, spec.new_state(), CASH)
    t_bare, _ = best_of(lambda: bare_loop_nb(spec.step_nb, o, c, p, spec.new_state(), CASH), 3)
    row("floor: bare numba loop (step + next-open fill)", n, t_bare, ours)

    m = min(args.python_bars, n)
    t_py, (py_eq, py_fills) = best_of(lambda: python_loop(list(o[:m]), list(c[:m]), PARAMS), 1)
    sl = _run(simulate_bars_nb, kernel_args(big.iloc[:m], COMPARABLE), -2, CASH, (m, 1))
    same = len(sl.fills) == py_fills and round(sl.equity[-1], 2) == round(py_eq, 2)
    ok &= same
    row(
        "pure Python loop (same strategy and fills)",
        m,
        t_py,
        ours_cmp,
        f"fills {py_fills:,} vs ours {len(sl.fills):,}, equity {py_eq:,.2f} vs "
        f"{sl.equity[-1]:,.2f}: {'match' if same else 'MISMATCH'}",
    )

    run_vectorbt(big.iloc[:2000])  # compile vectorbt's kernels
    t_vbt, (vbt_eq, vbt_fills) = best_of(lambda: run_vectorbt(big), 2)
    same = vbt_fills == len(rec_cmp.fills) and round(vbt_eq, 2) == round(rec_cmp.equity[-1], 2)
    ok &= same
    row(
        "vectorbt Portfolio.from_signals (+ signals)",
        n,
        t_vbt,
        ours_cmp,
        f"fills {vbt_fills:,}, equity {vbt_eq:,.2f}: {'match' if same else 'MISMATCH'}",
    )

    b = min(args.backtrader_bars, n)
    t_bt, (bt_eq, bt_fills) = best_of(lambda: run_backtrader(big.iloc[:b]), 1)
    sl = _run(simulate_bars_nb, kernel_args(big.iloc[:b], COMPARABLE), -2, CASH, (b, 1))
    same = bt_fills == len(sl.fills) and round(bt_eq, 2) == round(sl.equity[-1], 2)
    ok &= same
    row(
        "backtrader (same signals as a data line)",
        b,
        t_bt,
        ours_cmp,
        f"fills {bt_fills:,} vs ours {len(sl.fills):,}, equity {bt_eq:,.2f} vs "
        f"{sl.equity[-1]:,.2f}: {'match' if same else 'MISMATCH'}",
    )

    print()
    quotes = load_lobster(
        LOB / "AAPL_2012-06-21_34200000_37800000_message_50.csv",
        LOB / "AAPL_2012-06-21_34200000_37800000_orderbook_L1-of-50.csv",
        "2012-06-21",
    )
    qp = {"fast": 200, "slow": 1000, "rsi_window": 500, "rsi_overbought": 70.0, "qty": 500}
    qcfg = ExecutionConfig(latency_ns=250_000, commission_per_share=0.0035, slippage_bps=0.5)
    run_quotes(quotes.iloc[:1000], params=qp, config=qcfg)
    t_q, qr = best_of(lambda: run_quotes(quotes, params=qp, config=qcfg), 5)
    row(
        "ours: run_quotes, LOBSTER AAPL hour (end to end)",
        len(quotes),
        t_q,
        None,
        f"{len(qr.orders)} orders, {len(qr.fills)} fills at the touch",
    )

    side = round(math.sqrt(args.sweep_sets / 4))
    grid = {
        "fast": list(range(2, 2 + side)),
        "slow": list(range(2 + side, 2 + 2 * side)),
        "rsi_overbought": [60.0, 70.0, 80.0, 90.0],
    }
    run_sweep(month, {"fast": [2, 3]}, fixed={"slow": 30}, config=FULL, progress=False)
    t0 = time.perf_counter()
    sweep = run_sweep(month, grid, config=FULL, progress=False)
    t_s = time.perf_counter() - t0
    print(
        f"sweep: {len(sweep):,} parameter sets x {len(month):,} bars on all cores: "
        f"{t_s:.2f} s, {len(sweep) / t_s:,.0f} sets/s, "
        f"{len(sweep) * len(month) / t_s:,.0f} bar events/s"
    )
    print(
        f"targets: >= 20M bar events/s full model ({ours / 1e6:.1f}M); "
        f">100x backtrader ({ours_cmp / (b / t_bt):.0f}x); no slower than vectorbt "
        f"({ours_cmp / (n / t_vbt):.1f}x)"
    )
    if not ok:
        print("MISMATCH between engines: see above", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
