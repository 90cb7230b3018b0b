"""Prometheus metrics of a live session: latency histograms recorded in the component
processes, and the counters and gauges the daemon derives from their status snapshots.

Each process records its latencies in prometheus-client :class:`~prometheus_client.Histogram`
objects of its own registry (:class:`LatencyRecorder`) and sends the cumulative bucket
counts in every status snapshot (``"latency"`` key). The daemon's :class:`StatusCollector`
turns the latest snapshots into the ``/metrics`` exposition, so the processes need no
shared files and a restarted session starts from zero (``rate()`` treats it as a reset).

Latency histograms (seconds; buckets :data:`BUCKETS`)
-----------------------------------------------------
=====================================  ===========  =========================================
metric                                 recorded by  interval
=====================================  ===========  =========================================
``trader_tick_to_intent_seconds``      engine       feed receipt of a bar -> intent sent
``trader_risk_gate_seconds``           engine       one run of the risk kernel
``trader_model_inference_seconds``     engine       the strategy's decision for one bar (step
                                                    kernel, and the ONNX model when the
                                                    artefact has one)
``trader_intent_to_accepted_seconds``  execution    intent received -> broker acknowledged
``trader_accepted_to_filled_seconds``  execution    broker acknowledged -> order filled
=====================================  ===========  =========================================
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from live.daemon import Daemon

#: Histogram upper bounds, seconds: 10 us .. 30 s (the hot path is ~0.3 ms, a broker
#: round trip tens of ms, a market order's fill up to a bar later).
BUCKETS = (
    10e-6,
    25e-6,
    50e-6,
    100e-6,
    250e-6,
    500e-6,
    1e-3,
    2.5e-3,
    5e-3,
    10e-3,
    25e-3,
    50e-3,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

#: key -> (metric name, help text)
HISTOGRAMS: dict[str, tuple[str, str]] = {
    "tick_to_intent": (
        "trader_tick_to_intent_seconds",
        "bar received by the feed to order intent sent by the engine, seconds",
    ),
    "risk_gate": ("trader_risk_gate_seconds", "risk gate check of one intent, seconds"),
    "model_inference": (
        "trader_model_inference_seconds",
        "strategy decision for one bar (step kernel and ONNX model if any), seconds",
    ),
    "intent_to_accepted": (
        "trader_intent_to_accepted_seconds",
        "order intent received by execution to broker acknowledgement, seconds",
    ),
    "accepted_to_filled": (
        "trader_accepted_to_filled_seconds",
        "broker acknowledgement to the order's last fill, seconds",
    ),
}


class LatencyRecorder:
    """The latency histograms of one component process.

    Parameters
    ----------
    *keys : str
        Keys of :data:`HISTOGRAMS` this process records.

    Raises
    ------
    KeyError
        If a key is not in :data:`HISTOGRAMS`.
    """

    def __init__(self, *keys: str) -> None:
        self.registry = CollectorRegistry()
        self.histograms = {
            k: Histogram(
                HISTOGRAMS[k][0],
                HISTOGRAMS[k][1],
                buckets=BUCKETS,
                registry=self.registry,
            )
            for k in keys
        }

    def observe_ns(self, key: str, ns: int) -> None:
        """Record one interval of ``ns`` nanoseconds under ``key``."""
        self.histograms[key].observe(ns / 1e9)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Cumulative bucket counts and sums, msgpack-serialisable.

        Returns
        -------
        dict
            key -> ``{"buckets": [[le, cumulative count], ...], "sum": seconds}``,
            ``le`` as Prometheus writes it (``"0.001"``, ``"+Inf"``).
        """
        out: dict[str, dict[str, Any]] = {}
        for key, h in self.histograms.items():
            buckets: list[list[Any]] = []
            total = 0.0
            for metric in h.collect():
                for s in metric.samples:
                    if s.name.endswith("_bucket"):
                        buckets.append([s.labels["le"], s.value])
                    elif s.name.endswith("_sum"):
                        total = s.value
            out[key] = {"buckets": buckets, "sum": total}
        return out


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    c = CounterMetricFamily(name, doc)
    c.add_metric([], value)
    return c


def _gauge(name: str, doc: str, value: float | bool | None) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc)
    g.add_metric([], float("nan") if value is None else float(value))
    return g


class StatusCollector(Collector):
    """Exposes the daemon's state and its components' latest status snapshots.

    Parameters
    ----------
    daemon : Daemon
        Read at every scrape: ``status`` (component snapshots), ``halted``,
        ``kill_engaged``, ``halt_engaged`` and ``wall_ns()``.
    """

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family (called by prometheus-client at each scrape)."""
        d = self.daemon
        st = d.status
        eng, exe = st.get("engine", {}), st.get("execution", {})
        feed, audit = st.get("feed", {}), st.get("audit", {})
        yield _gauge("trader_kill_switch", "1 while the kill switch is engaged", d.kill_engaged)
        yield _gauge(
            "trader_halted", "1 while new orders are halted (halt or kill switch)", d.halted
        )
        positions = eng.get("positions", {})
        pos = GaugeMetricFamily("trader_position_shares", "position, shares", labels=["symbol"])
        exposure = GaugeMetricFamily(
            "trader_exposure_usd", "|position| x last price, USD", labels=["symbol"]
        )
        for sym, p in positions.items():
            pos.add_metric([sym], float(p["qty"]))
            exposure.add_metric([sym], float(abs(Decimal(p["qty"])) * Decimal(p["last_price"])))
        yield pos
        yield exposure
        for name, key in (
            ("trader_realized_pnl_usd", "realized_pnl"),
            ("trader_unrealized_pnl_usd", "unrealized_pnl"),
            ("trader_day_pnl_usd", "day_pnl"),
        ):
            yield _gauge(name, f"{key.replace('_', ' ')}, USD", float(eng.get(key, 0)))
        last_recv = feed.get("last_recv_ns") or 0
        yield _gauge(
            "trader_feed_lag_seconds",
            "wall time since the feed received its last bar, seconds (NaN before the first)",
            (d.wall_ns() - last_recv) / 1e9 if last_recv else float("nan"),
        )
        yield _gauge(
            "trader_feed_connected",
            "1 while the market-data stream is up",
            bool(feed.get("connected")),
        )
        yield _gauge(
            "trader_trade_stream_connected",
            "1 while the broker's trade_updates stream is up",
            bool(exe.get("stream_connected")),
        )
        queues = GaugeMetricFamily(
            "trader_queue_depth", "items waiting in an internal queue", labels=["queue"]
        )
        queues.add_metric(["engine_pending_orders"], len(eng.get("pending", {})))
        queues.add_metric(["execution_open_orders"], len(exe.get("open_orders", [])))
        yield queues
        yield _gauge(
            "trader_audit_spool_pending",
            "1 while audit events wait in the disk spool for Postgres",
            bool(audit.get("spool_pending")),
        )
        for name, snap, key, doc in (
            ("trader_bars", feed, "bars", "bars received by the feed"),
            ("trader_malformed_bars", feed, "malformed", "malformed bars dropped by the feed"),
            ("trader_feed_reconnects", feed, "reconnects", "market-data stream reconnects"),
            (
                "trader_trade_stream_reconnects",
                exe,
                "reconnects",
                "trade_updates stream reconnects",
            ),
            ("trader_order_intents", eng, "intents", "risk-approved order intents"),
            ("trader_orders_submitted", exe, "submitted", "orders sent to the broker"),
            ("trader_orders_filled", exe, "filled", "orders completely filled"),
            ("trader_orders_rejected", exe, "rejected", "orders rejected by the broker"),
            ("trader_orders_refused", exe, "refused", "intents refused before the wire"),
            ("trader_fills", exe, "fills", "executions received"),
            ("trader_audit_events_written", audit, "written", "audit rows stored"),
            ("trader_audit_events_spooled", audit, "spooled", "audit events spooled to disk"),
        ):
            yield _counter(name, doc, float(snap.get(key, 0)))
        breaker = eng.get("circuit_breaker") or {}
        yield _counter(
            "trader_circuit_breaker_trips",
            "circuit-breaker trips (0 without a [breaker] section in risk.toml)",
            float(breaker.get("trips", 0)),
        )
        denials = CounterMetricFamily(
            "trader_risk_denials", "risk-gate denials by control", labels=["control"]
        )
        for control, n in eng.get("denied_by_control", {}).items():
            denials.add_metric([control], float(n))
        yield denials
        for snap in (eng, exe):
            for key, h in snap.get("latency", {}).items():
                name, doc = HISTOGRAMS[key]
                yield HistogramMetricFamily(
                    name,
                    doc,
                    buckets=[(str(le), float(n)) for le, n in h["buckets"]],
                    sum_value=float(h["sum"]),
                )
