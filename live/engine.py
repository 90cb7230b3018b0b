"""The engine process: bars in, risk-approved order intents out, positions from fills.

Per bar it runs the promoted strategy's numba step kernel (the same function the
backtester calls), derives the order for the difference between target and position
plus pending orders, passes it through the :class:`~live.risk.RiskGate`, signs approved
intents and pushes them to execution. Audit events are emitted *after* the intent is
sent, so the audit trail costs the hot path one non-blocking socket send per event.
The process pins itself to ``engine_core`` and compiles (or loads from the numba cache)
the kernel before it subscribes to market data.
"""

from __future__ import annotations

import os
import signal
import time
from decimal import Decimal
from typing import Any

import numpy as np
import zmq

from live.audit import AuditEmitter
from live.bus import pack, sign_intent, socket, unpack
from live.context import ComponentContext
from live.ledger import Ledger
from live.logs import setup_logging
from live.risk import RiskGate
from trader.data import BAR_DTYPE
from trader.promote import load_artefact
from trader.strategy.nb import order_qty_nb

LATENCY_WINDOW = 4096


def shares(x: float) -> str:
    """Format a share quantity without exponent or trailing zeros (``100.0`` -> ``"100"``)."""
    return f"{x:.9f}".rstrip("0").rstrip(".")


class Engine:
    """State and handlers of the engine process."""

    def __init__(self, ctx: ComponentContext, zctx: zmq.Context[Any]) -> None:
        cfg = ctx.cfg
        self.ctx = ctx
        self.log = setup_logging("engine", ctx.var_dir)
        art = load_artefact(cfg.models_dir, cfg.strategy, cfg.strategy_version)
        self.artefact = art
        self.step_nb = art.spec.step_nb
        self.params = art.params.to_array()
        self.state = art.spec.new_state()
        self.step_nb(art.spec.new_state(), self.params, 100.0)  # compile/load before trading
        order_qty_nb(1.0, 0.0, 0.0)
        self.symbol = cfg.symbol
        self.gate = RiskGate(cfg.risk, halted=ctx.halted)
        self.ledger = Ledger()
        self.pending: dict[str, Decimal] = {}  # client_order_id -> signed remaining shares
        self.seq = 0
        self.bars = 0
        self.last_bar_ts = 0
        self.utc_day = -1
        self.day_start_pnl = Decimal(0)
        self.last_denial: tuple[float, str] | None = None
        self.counts = {"intents": 0, "approved": 0, "denied": 0, "fills": 0}
        self.latency_ns = np.zeros(LATENCY_WINDOW, dtype=np.int64)
        bus = ctx.bus
        self.md = socket(zctx, zmq.SUB, bus.addr("md"), subscribe=self.symbol.encode())
        self.intents = socket(zctx, zmq.PUSH, bus.addr("intents"))
        self.exec_events = socket(zctx, zmq.SUB, bus.addr("exec"), subscribe=b"")
        self.control = socket(zctx, zmq.SUB, bus.addr("control"), subscribe=b"")
        self.status = socket(zctx, zmq.PUSH, bus.addr("status"))
        self.audit = AuditEmitter(
            socket(zctx, zmq.PUSH, bus.addr("audit")), ctx.session_id, "engine"
        )

    @property
    def total_pnl(self) -> Decimal:
        """Realized + unrealized P&L since the session start, USD."""
        return self.ledger.realized_pnl + self.ledger.unrealized_pnl

    def _roll_day(self, ts_event: int) -> None:
        # Regular-session bars (13:30-21:00 UTC) share the UTC and New York dates, so the
        # UTC day number changes exactly once per session, before its first bar.
        utc_day = ts_event // 86_400_000_000_000
        if utc_day != self.utc_day:
            self.utc_day = utc_day
            self.day_start_pnl = self.total_pnl

    def on_bar(self, payload: bytes) -> None:
        """Run the strategy on one bar and send the resulting intent, if any."""
        bar = np.frombuffer(payload, dtype=BAR_DTYPE)[0]
        close = float(bar["close"])
        target = self.step_nb(self.state, self.params, close)
        position = self.ledger.position(self.symbol).qty
        pending = sum(self.pending.values(), Decimal(0))
        qty = order_qty_nb(target, float(position), float(pending))
        ts_event = int(bar["ts_event"])
        self.bars += 1
        self.last_bar_ts = ts_event
        price = Decimal(repr(close))
        self._roll_day(ts_event)
        self.ledger.mark(self.symbol, price)
        if qty != 0.0:
            self._order(qty, target, price, position, pending, bar)

    def _order(
        self,
        qty: float,
        target: float,
        price: Decimal,
        position: Decimal,
        pending: Decimal,
        bar: Any,
    ) -> None:
        dqty = Decimal(shares(qty))
        day_pnl = self.total_pnl - self.day_start_pnl
        decision = self.gate.check(dqty, price, position, pending, day_pnl)
        ts_event, ts_recv = int(bar["ts_event"]), int(bar["ts_recv"])
        order = {
            "correlation_id": f"{self.ctx.session_id}:{ts_event}",
            "symbol": self.symbol,
            "side": "buy" if qty > 0 else "sell",
            "order_type": "market",
            "time_in_force": "day",
        }
        intent_event = {"qty": abs(dqty), "price": price, "status": "new", "ts": ts_recv,
                         "metadata": {"target": target, "bar_ts": ts_event}}  # fmt: skip
        if not decision.approved:
            key = (target, decision.control)
            if key != self.last_denial:  # audit a standing denial once, not every bar
                self.last_denial = key
                self.counts["denied"] += 1
                self.audit.emit("intent", **order, **intent_event)
                self.audit.emit(
                    "risk_denied",
                    **order,
                    qty=abs(dqty),
                    status="denied",
                    reason=decision.reason,
                    metadata={
                        "control": decision.control,
                        "limit": decision.limit,
                        "value": decision.value,
                    },
                )
                self.log.warning(
                    "risk_denied", correlation_id=order["correlation_id"], reason=decision.reason
                )
            return
        self.last_denial = None
        self.seq += 1
        order["client_order_id"] = (
            f"{self.artefact.strategy}-{self.ctx.session_id[:8]}-{self.seq:06d}"
        )
        intent: dict[str, Any] = {
            **order,
            "session_id": self.ctx.session_id,
            "seq": self.seq,
            "qty": shares(abs(qty)),
            "ref_price": str(price),
            "ts_event": ts_event,
            "ts_recv": ts_recv,
        }
        intent["approval"] = sign_intent(self.ctx.approval_key, intent)
        intent["ts_intent"] = time.time_ns()
        self.intents.send(pack(intent))
        # -- off the hot path from here ------------------------------------------------
        self.pending[order["client_order_id"]] = dqty
        self.latency_ns[self.counts["intents"] % LATENCY_WINDOW] = intent["ts_intent"] - ts_recv
        self.counts["intents"] += 1
        self.counts["approved"] += 1
        self.audit.emit("intent", **order, **intent_event)
        self.audit.emit("risk_approved", **order, qty=abs(dqty), price=price, status="approved")

    def on_exec_event(self, raw: bytes) -> None:
        """Apply an execution event (fill, cancel, reject) to positions and pending."""
        ev = unpack(raw)
        coid = ev.get("client_order_id", "")
        kind = ev.get("event")
        if kind in ("fill", "partial_fill"):
            qty = Decimal(ev["qty"])
            if self.ledger.apply_fill(ev["execution_id"], ev["symbol"], qty, Decimal(ev["price"])):
                self.counts["fills"] += 1
                if coid in self.pending:
                    self.pending[coid] -= qty
                    if self.pending[coid] == 0 or ev.get("status") == "filled":
                        del self.pending[coid]
        elif kind in ("canceled", "expired", "rejected", "replaced"):
            self.pending.pop(coid, None)

    def on_control(self, raw: bytes) -> None:
        """Engage or release the kill switch in the gate."""
        cmd = unpack(raw).get("cmd")
        if cmd == "kill":
            self.gate.halted = True
        elif cmd == "resume":
            self.gate.halted = False
            self.last_denial = None

    def push_status(self) -> None:
        """Send a status snapshot (positions, P&L, counts, tick-to-intent latency)."""
        n = min(self.counts["intents"], LATENCY_WINDOW)
        lat = self.latency_ns[:n]
        self.status.send(
            pack(
                {
                    "component": "engine",
                    "halted": self.gate.halted,
                    "bars": self.bars,
                    "last_bar_ts": self.last_bar_ts,
                    **self.counts,
                    "strategy": self.artefact.strategy,
                    "strategy_version": self.artefact.version,
                    "positions": {
                        s: {
                            "qty": str(p.qty),
                            "avg_price": str(p.avg_price),
                            "last_price": str(p.last_price),
                            "realized_pnl": str(p.realized_pnl),
                            "unrealized_pnl": str(p.unrealized_pnl),
                        }
                        for s, p in self.ledger.positions.items()
                    },
                    "realized_pnl": str(self.ledger.realized_pnl),
                    "unrealized_pnl": str(self.ledger.unrealized_pnl),
                    "day_pnl": str(self.total_pnl - self.day_start_pnl),
                    "pending": {k: str(v) for k, v in self.pending.items()},
                    "tick_to_intent_us_p50": float(np.percentile(lat, 50)) / 1e3 if n else None,
                    "tick_to_intent_us_p99": float(np.percentile(lat, 99)) / 1e3 if n else None,
                }
            )
        )


def run_engine(ctx: ComponentContext) -> None:
    """Process entry point of the engine (stops on SIGTERM)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stopping = False

    def _stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    core = ctx.cfg.engine_core
    n_cpus = os.cpu_count() or 1
    pin = 0 <= core < n_cpus
    if pin:
        # Threads started from here (ZeroMQ's I/O thread) run on the other cores; only
        # the strategy thread (pid 0 = the calling thread on Linux) owns `core`.
        os.sched_setaffinity(0, (set(range(n_cpus)) - {core}) or {core})
    zctx = zmq.Context()
    eng = Engine(ctx, zctx)
    if pin:
        os.sched_setaffinity(0, {core})
    poller = zmq.Poller()
    for s in (eng.md, eng.exec_events, eng.control):
        poller.register(s, zmq.POLLIN)
    handlers = {
        eng.md: lambda: eng.on_bar(eng.md.recv_multipart()[1]),
        eng.exec_events: lambda: eng.on_exec_event(eng.exec_events.recv()),
        eng.control: lambda: eng.on_control(eng.control.recv()),
    }
    last_status = 0.0
    while not stopping:
        for sock, _ in poller.poll(100):
            handlers[sock]()
        now = time.monotonic()
        if now - last_status > 0.25:
            eng.push_status()
            last_status = now
    # drain fills still in flight from execution's shutdown cancels
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        if not eng.exec_events.poll(100):
            break
        eng.on_exec_event(eng.exec_events.recv())
    eng.push_status()
    eng.log.info("stopped", **eng.counts)
    zctx.destroy(linger=2000)
