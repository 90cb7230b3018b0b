"""Benchmark: per-bar model inference of the live engine vs native XGBoost, one row.

Trains the SPY model of ``notebooks/train_export.ipynb`` (100 trees of depth 4 on the 16
features, real SPY minute bars of January 2011), then times, one call at a time over the
real feature rows:

* ``live path``: :meth:`trader.ml.inference.ModelSignal.update`, what the engine runs per
  bar (streaming features + ONNX Runtime with pre-bound I/O, one thread);
* ``ONNX Runtime, bound I/O``: :meth:`trader.ml.inference.OnnxSignal.run` alone;
* ``ONNX Runtime, session.run``: the plain API (allocates inputs/outputs per call);
* ``XGBoost predict_proba`` and ``XGBoost inplace_predict``: native single-row predict
  (one thread).

Prints p50/p99/p99.9 in microseconds side by side and the ratio to the live path;
asserts nothing about time (the machine is shared).

Run: ``make bench`` (or ``.venv/bin/python bench/inference.py [--calls N]``).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

from trader import REPO_ROOT
from trader.data import load_minute_bars, to_bar_array
from trader.ml import XgbParams, build_dataset, fit_final, to_onnx
from trader.ml.inference import ModelSignal, OnnxSignal
from trader.ml.model import INPUT_NAME, PROBA_OUTPUT, onnx_session

SPY = REPO_ROOT / "data/intraday/SPY_2011-01_1min.csv"


def timed(fn: Callable[[int], object], n: int) -> np.ndarray:
    """Latency of ``fn(i)`` for i in 0..n-1, ns per call."""
    out = np.empty(n, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        fn(i)
        out[i] = clock() - t0
    return out


def main() -> None:
    """Train, export, time each path, print the table."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--calls", type=int, default=7800, help="timed calls per path")
    a = p.parse_args()
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the engine's default core (config/live.toml)
    bars = load_minute_bars(SPY, session="regular")
    data = build_dataset(bars, horizon=15)
    clf = fit_final(data, XgbParams())
    blob = to_onnx(clf)
    rows = np.ascontiguousarray(data.x[data.ready], dtype=np.float32)
    rec = to_bar_array(bars)
    n = min(a.calls, len(rec))

    signal = ModelSignal(blob)
    for r in rec[:200]:  # warm up and past the feature warm-up
        signal.update(int(r["ts_event"]), r["high"], r["low"], r["close"], r["volume"])
    ts, hi, lo, cl, vo = (rec[c].tolist() for c in ("ts_event", "high", "low", "close", "volume"))
    fresh = ModelSignal(blob)
    for i in range(200):
        fresh.update(ts[i], hi[i], lo[i], cl[i], vo[i])

    def live(i: int) -> float:
        j = 200 + i % (len(ts) - 200)
        return fresh.update(ts[j], hi[j], lo[j], cl[j], vo[j])

    onnx = OnnxSignal(blob)

    def bound(i: int) -> float:
        onnx.x[0, :] = rows[i % len(rows)]
        return onnx.run()

    sess = onnx_session(blob)

    def plain(i: int) -> object:
        return sess.run([PROBA_OUTPUT], {INPUT_NAME: rows[i % len(rows)][None, :]})

    booster = clf.get_booster()

    def proba(i: int) -> object:
        return clf.predict_proba(rows[i % len(rows)][None, :])

    def inplace(i: int) -> object:
        return booster.inplace_predict(rows[i % len(rows)][None, :])

    paths = {
        "live path (features + ORT bound I/O)": (live, n),
        "ONNX Runtime, bound I/O": (bound, n),
        "ONNX Runtime, session.run": (plain, n),
        "XGBoost inplace_predict": (inplace, n),
        "XGBoost predict_proba": (proba, min(n, 2000)),
    }
    results = {}
    for name, (fn, calls) in paths.items():
        timed(fn, 200)  # warm-up
        results[name] = timed(fn, calls) / 1e3
    base = float(np.percentile(results["live path (features + ORT bound I/O)"], 50))
    print(
        f"per-bar model inference, one row, {data.x.shape[1]} features, 100 trees of depth 4, "
        f"real SPY 1-min bars; one thread pinned to core 1; shared machine"
    )
    print(f"{'':40s}{'calls':>7s}{'p50 us':>10s}{'p99 us':>10s}{'p99.9 us':>10s}{'p50 x':>8s}")
    for name, lat in results.items():
        p50, p99, p999 = np.percentile(lat, [50, 99, 99.9])
        print(f"{name:40s}{len(lat):7d}{p50:10.1f}{p99:10.1f}{p999:10.1f}{p50 / base:8.1f}")
    print("target: live path p99 < 25 us")


if __name__ == "__main__":
    main()
