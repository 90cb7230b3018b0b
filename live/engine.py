"""The engine process: bars in, risk-approved order intents out, positions from fills.

Per bar it runs the promoted strategy's numba step kernel (the same function the
backtester calls), derives the order for the difference between target and position
plus pending orders, passes it through the :class:`~live.risk.RiskGate`, signs approved
intents and pushes them to execution. Audit events are emitted *after* the intent is
sent, and only appended to a list there; they leave as one batch after the bar is
handled (:meth:`live.audit.AuditEmitter.flush`).
The day's P&L (daily loss limit, intraday drawdown, circuit breaker) is counted from a
baseline taken at the first bar at or after each XNYS session's open (9:30 New York;
holidays and daylight saving from the calendar): one integer comparison per bar against
the next open, recomputed only when crossed.
The process pins itself to ``engine_core`` and compiles (or loads from the numba cache)
the kernel before it subscribes to market data.

Before it trades, the engine rebuilds the strategy's state from the broker's bar history
(:mod:`live.warmup`: the rule that makes the state the same whether the engine ran
uninterrupted or was restarted, the seam with the stream, and what a failed fetch does).
At the first bar at or after each session's open (the same XNYS sessions as the day's
P&L) the state is rebuilt from the last ``spec.warmup_bars`` bars, a ring the engine
keeps (skipped when the state already is their fold; otherwise about 0.1 ms for
``ema_rsi`` and 7 ms for the ONNX strategy's 390 model runs, once a session on that
bar); a bar at or before the last one stepped is dropped, never stepped twice.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
import urllib.request
from collections import deque
from decimal import Decimal
from typing import Any

import numpy as np
import zmq

from live.audit import AuditEmitter
from live.bus import FEED_CONNECTED_TOPIC, encode_intent, pack, shares, socket, unpack
from live.config import RiskLimits
from live.context import ComponentContext
from live.ledger import Ledger
from live.logs import setup_logging
from live.market_hours import session_of, session_opens
from live.metrics import LatencyRecorder
from live.risk import RiskGate, nb
from live.risk.breaker import CircuitBreaker, Transition
from live.risk.stops import stop_params
from live.supervise import die_with_parent
from live.warmup import BAR_NS, FETCH_ERRORS, BarHistory
from trader.data import BAR_STRUCT
from trader.exceptions import ConfigurationError, TemporaryError
from trader.ml.inference import ModelSignal
from trader.promote import load_artefact
from trader.strategy.nb import order_qty_nb

LATENCY_WINDOW = 4096
RECENT_FILLS = 100


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
        # The last spec.warmup_bars bars stepped, (ts_event, high, low, close, volume):
        # the state is rebuilt from them at a session's first bar (live.warmup).
        self.ring: deque[tuple[int, float, float, float, float]] = deque(
            maxlen=art.spec.warmup_bars
        )
        # the next XNYS session open after the last bar stepped into the strategy (0:
        # none stepped yet): a bar at or after it rebuilds the state
        self.strategy_next_open = 0
        self.since_reset = 0  # bars stepped since the state was last fresh
        self.target = 0.0  # the strategy's last target, shares
        self.history: BarHistory | None = None  # fetches the bars missed at the seam
        # the first bar of a stream connection (after the warm-up, or a reconnection) is
        # still to come: bars missed before it are fetched (live.warmup)
        self.seam = False
        self.warmup: dict[str, Any] = {"status": "none"}
        self.stale_bars = 0
        self.step_nb(
            art.spec.new_state(), self.params, 100.0, np.nan
        )  # compile/load before trading
        order_qty_nb(1.0, 0.0, 0.0)
        session_opens()  # the XNYS calendar, built before trading
        # the model's per-bar signal (streaming features -> ONNX), for strategies that need it
        self.model = ModelSignal(art.model_path) if art.model_path is not None else None
        self.symbol = cfg.symbol
        self.gate = RiskGate(cfg.risk, (cfg.symbol,), halted=ctx.halted)
        # What stops new orders while the gate is halted: the kill switch or a halt.
        self.halted_by = ctx.halted_by
        self.breaker: CircuitBreaker | None = None
        self.stop_params: np.ndarray | None = None
        self.stop_state = nb.new_stop_state_nb()
        self._configure(cfg.risk)
        self._restore_breaker(ctx.restored.get("breaker") or {})
        nb.stop_nb(
            nb.new_stop_state_nb(), np.ones(nb.N_STOP_PARAMS), 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1
        )
        self._fetch_account()
        self.ledger = Ledger()
        for sym, p in ctx.restored.get("positions", {}).items():
            pos = self.ledger.position(sym)
            pos.lots.extend((Decimal(q), Decimal(px)) for q, px in p["lots"])
            pos.realized_pnl = Decimal(p["realized_pnl"])
            pos.last_price = None if p["last_price"] is None else Decimal(p["last_price"])
        self.pending: dict[str, Decimal] = {}  # client_order_id -> signed remaining shares
        self.seq = 0
        self.bars = 0
        self.last_bar_ts = 0
        # The day of the day's P&L is the XNYS session (live.market_hours.session_of): the
        # first bar at or after next_open_ns starts a new one. Before any bar (and with
        # no restored day) next_open_ns is 0, so the first bar starts the day.
        self.session = ""
        self.session_open_ns = self.next_open_ns = 0
        self.day_start_pnl = Decimal(0)
        self.coid_prefix = f"{art.strategy}-{ctx.session_id[:8]}-"
        self.position_f = self.pending_f = self.cost_f = self.realized_f = 0.0
        self.day_start_f = self.day_peak_f = 0.0
        day = ctx.restored.get("day") or {}
        if day.get("session"):  # its session resumes with its baseline and peak
            self.session = day["session"]
            self.session_open_ns = int(day["open_ns"])
            self.next_open_ns = session_of(self.session_open_ns).next_open_ns
            self.day_start_pnl = Decimal(day["day_start_pnl"])
            self.day_start_f = float(self.day_start_pnl)
            self.day_peak_f = float(day.get("day_peak", 0.0))
        # a status push right after the bar (a new day, a breaker transition) instead of
        # at the next 0.25 s tick, so the daemon persists it promptly
        self.status_due = False
        self.last_denial: tuple[float, str] | None = None
        self.counts = {"intents": 0, "denied": 0, "fills": 0}
        self.denied_by_control: dict[str, int] = {}
        self.latency_ns = np.zeros(LATENCY_WINDOW, dtype=np.int64)
        self.latency = LatencyRecorder("tick_to_intent", "risk_gate", "model_inference")
        self.recent_fills: deque[dict[str, Any]] = deque(maxlen=RECENT_FILLS)
        bus = ctx.bus
        self.md = socket(zctx, zmq.SUB, bus.addr("md"), subscribe=self.symbol.encode())
        self.md.setsockopt(zmq.SUBSCRIBE, FEED_CONNECTED_TOPIC)
        self.intents = socket(zctx, zmq.PUSH, bus.addr("intents"))
        self.exec_events = socket(zctx, zmq.SUB, bus.addr("exec"), subscribe=b"")
        self.control = socket(zctx, zmq.SUB, bus.addr("control"), subscribe=b"")
        self.status = socket(zctx, zmq.PUSH, bus.addr("status"))
        self.audit = AuditEmitter(bus, ctx.session_id, "engine", zctx)
        self._sync_mirrors()

    @property
    def total_pnl(self) -> Decimal:
        """Realized + unrealized P&L since the session start, USD."""
        return self.ledger.realized_pnl + self.ledger.unrealized_pnl

    def _roll_day(self, ts_event: int) -> None:
        """Start the day of the XNYS session opened at or before ``ts_event`` (the first
        bar at or after its open): the baseline is the P&L at the last mark before it
        (the previous session's close, or a later pre-market bar), the peak 0."""
        s = session_of(ts_event)
        self.session, self.session_open_ns, self.next_open_ns = s.date, s.open_ns, s.next_open_ns
        self.day_start_pnl = self.total_pnl
        self.day_start_f = float(self.day_start_pnl)
        self.day_peak_f = 0.0
        self.status_due = True
        self.log.info("new_day", session=s.date, day_start_pnl=str(self.day_start_pnl))

    def _configure(self, limits: RiskLimits) -> None:
        """Set up the circuit breaker and the stops for ``limits`` (start, PUT /limits)."""
        if limits.breaker is None:
            self.breaker = None
            self.gate.breaker = nb.BREAKER_CLOSED
        elif self.breaker is None:
            self.breaker = CircuitBreaker(limits.breaker)
        else:
            self.breaker.set_limits(limits.breaker)
        self.stop_params = stop_params(limits.stops)

    def _restore_breaker(self, doc: dict[str, Any]) -> None:
        """Put the breaker back in the state stored before a restart (no audit event:
        its transitions were audited when they happened)."""
        if not doc:
            return
        if self.breaker is None:
            self.log.warning("circuit_breaker_not_restored", why="no [breaker] limits", doc=doc)
            return
        self.breaker.restore(doc)
        self.gate.breaker = self.breaker.state
        self.log.warning("circuit_breaker_restored", **self.breaker.describe())

    def _breaker(self, transition: Transition | None) -> None:
        """Put a breaker transition in force and audit it."""
        if transition is None or self.breaker is None:
            return
        self.gate.breaker = self.breaker.state
        self.status_due = True
        self.audit.emit(
            "circuit_breaker",
            status=transition.after,
            reason=transition.reason,
            symbol=self.symbol,
            metadata={
                "from": transition.before,
                "to": transition.after,
                "market_ts": transition.ts,
            },
        )
        self.log.warning(
            "circuit_breaker",
            before=transition.before,
            after=transition.after,
            reason=transition.reason,
        )

    def _sync_mirrors(self) -> None:
        """Refresh the float copies of the ledger that the hot path reads."""
        p = self.ledger.positions.get(self.symbol)  # not created before a fill or a bar
        self.position_f = float(p.qty) if p else 0.0
        self.cost_f = float(p.cost_basis) if p else 0.0
        self.realized_f = float(self.ledger.realized_pnl)
        self.pending_f = float(sum(self.pending.values(), Decimal(0)))

    # -- strategy state (rule of live.warmup) ------------------------------------------
    def _step(self, ts: int, high: float, low: float, close: float, volume: float) -> float:
        """The model's signal (if any), then the step kernel: the target, shares."""
        model = self.model
        sig = np.nan if model is None else model.update(ts, high, low, close, volume)
        target: float = self.step_nb(self.state, self.params, close, sig)
        return target

    def _advance(self, ts: int, high: float, low: float, close: float, volume: float) -> float:
        """Step the strategy on one bar (rebuilding the state first at a session's first
        bar) and keep the bar in the ring; return the target, shares."""
        if ts >= self.strategy_next_open:
            self._rebuild(ts)
        target = self.target = self._step(ts, high, low, close, volume)
        self.ring.append((ts, high, low, close, volume))
        self.since_reset += 1
        return target

    def _rebuild(self, ts: int) -> None:
        """At the first bar (``ts``, ns UTC) of an XNYS session: the state becomes the
        fold of the ring (the last ``warmup_bars`` bars) from a fresh state. Nothing to
        do when it is already that fold: every bar stepped since it was fresh is in the
        ring."""
        s = session_of(ts)
        self.strategy_next_open = s.next_open_ns
        if self.since_reset == len(self.ring):
            return
        t0 = time.perf_counter()
        self.state.fill(0.0)
        if self.model is not None:
            self.model.reset()
        for bar in self.ring:
            self._step(*bar)
        self.since_reset = len(self.ring)
        self.log.info(
            "strategy_rebuilt",
            session=s.date,
            bars=len(self.ring),
            ms=round((time.perf_counter() - t0) * 1e3, 3),
        )

    def warm_up(self, bars: np.ndarray, before: int, seconds: float) -> None:
        """Step the history ``bars`` (BAR_DTYPE, oldest first, from
        :meth:`live.warmup.BarHistory.session`: ``before`` bars before the session, then
        the session's) without orders; audit and log what the state was built from."""
        t0 = time.perf_counter()
        for r in bars.tolist():
            self._advance(r[0], r[3], r[4], r[5], r[6])
        if len(bars):
            self.last_bar_ts = int(bars["ts_event"][-1])
        self.seam = self.history is not None
        self.warmup = {
            "status": "warm",
            "bars": len(bars),
            "before_session": before,
            "in_session": len(bars) - before,
            "first_bar_ts": int(bars["ts_event"][0]) if len(bars) else None,
            "last_bar_ts": int(bars["ts_event"][-1]) if len(bars) else None,
            "fetch_s": round(seconds, 4),
            "step_s": round(time.perf_counter() - t0, 4),
            "target": self.target,
        }
        self.audit.emit(
            "strategy_warmup",
            status="warm",
            symbol=self.symbol,
            reason=f"strategy state rebuilt from {len(bars)} bars of the broker's history",
            metadata=self.warmup,
        )
        self.log.info("strategy_warmup", **self.warmup)

    def start_cold(self, reason: str) -> None:
        """Start without history (``[recovery] cold_start``): audited and logged as a
        degraded start; the strategy warms up on the streamed bars."""
        self.warmup = {"status": "cold", "reason": reason}
        self.audit.emit(
            "strategy_warmup", status="cold", symbol=self.symbol, reason=reason, metadata={}
        )
        self.log.error("strategy_cold_start", reason=reason)

    def on_feed_connected(self) -> None:
        """A new market-data connection is up (sent before its first bar): check that
        bar for bars missed while the stream was down."""
        self.seam = self.history is not None

    def _catch_up(self, ts_event: int) -> None:
        """At the first bar of a stream connection: fetch and step (no orders) the bars
        that ended between the last bar stepped (the history's, or the previous
        connection's) and this one.

        Raises
        ------
        TemporaryError
            They cannot be fetched and ``[recovery] cold_start`` is false.
        """
        self.seam = False
        if self.history is None or ts_event <= self.last_bar_ts + BAR_NS:
            return
        t0 = time.perf_counter()
        try:
            missed = self.history.between(self.last_bar_ts, ts_event)
        except FETCH_ERRORS as e:
            reason = f"bars missed before the stream's bar {ts_event} not fetched: {e}"
            if not self.ctx.cfg.recovery.cold_start:
                self.log.error("strategy_catch_up_failed", error=reason)
                raise TemporaryError(reason) from e
            self.audit.emit(
                "strategy_warmup", status="gap", symbol=self.symbol, reason=reason, metadata={}
            )
            self.log.error("strategy_gap", reason=reason)
            return
        for r in missed.tolist():
            self._advance(r[0], r[3], r[4], r[5], r[6])
        if len(missed):
            self.last_bar_ts = int(missed["ts_event"][-1])
        meta = {
            "bars": len(missed),
            "first_bar_ts": int(missed["ts_event"][0]) if len(missed) else None,
            "last_bar_ts": int(missed["ts_event"][-1]) if len(missed) else None,
            "seconds": round(time.perf_counter() - t0, 4),
            "target": self.target,
        }
        self.warmup["caught_up"] = meta
        self.log.info("strategy_caught_up", **meta)
        if len(missed):
            self.audit.emit(
                "strategy_warmup",
                status="caught_up",
                symbol=self.symbol,
                reason=f"{len(missed)} bars the stream missed stepped, without orders",
                metadata=meta,
            )

    def _stale(self, ts_event: int) -> None:
        self.stale_bars += 1
        self.log.warning("bar_dropped", bar_ts=ts_event, last_bar_ts=self.last_bar_ts)

    # -- per bar ---------------------------------------------------------------------
    def on_bar(self, payload: bytes) -> None:
        """Run the strategy and the risk gate on one bar; send the intent, if any, first,
        and do the bookkeeping (Decimal ledger, audit) after."""
        ts_event, ts_recv, _o, high, low, close, volume = BAR_STRUCT.unpack(payload)
        if ts_event <= self.last_bar_ts:  # stepped already (the warm-up's seam, a repeat)
            self._stale(ts_event)
            return
        if self.seam:
            self._catch_up(ts_event)
        if ts_event >= self.next_open_ns:
            self._roll_day(ts_event)
        t_step = time.perf_counter_ns()
        target = self._advance(ts_event, high, low, close, volume)
        t_step = time.perf_counter_ns() - t_step
        stop = nb.STOP_NONE
        if self.stop_params is not None:
            avg = self.cost_f / self.position_f if self.position_f else close
            target, stop = nb.stop_nb(
                self.stop_state, self.stop_params, target, self.position_f, avg, high, low, close,
                ts_event,
            )  # fmt: skip
        qty = order_qty_nb(target, self.position_f, self.pending_f)
        day_pnl = self.realized_f + self.position_f * close - self.cost_f - self.day_start_f
        if day_pnl > self.day_peak_f:
            self.day_peak_f = day_pnl
        if self.breaker is not None:
            self._breaker(self.breaker.on_pnl(ts_event, day_pnl, self.session_open_ns))
        gate = self.gate
        gate.update_price(0, close, ts_recv)
        if qty != 0.0:
            gate.set_position(0, self.position_f, self.pending_f)
            gate.set_day(day_pnl, self.day_peak_f, len(self.pending))
            t_gate = time.perf_counter_ns()
            code = gate.check_code(0, qty, close, time.time_ns(), False, True)
            t_gate = time.perf_counter_ns() - t_gate
            if code == 0:
                self._send(qty, target, close, ts_event, ts_recv, stop)
            else:
                self._deny(code, qty, close, target, ts_event, ts_recv)
            self.latency.observe_ns("risk_gate", t_gate)
        # -- off the hot path from here ----------------------------------------------------
        self.latency.observe_ns("model_inference", t_step)
        self.bars += 1
        self.last_bar_ts = ts_event
        self.ledger.mark(self.symbol, Decimal(repr(close)))

    def _order_fields(self, qty: float, close: float, ts_event: int) -> dict[str, Any]:
        return {
            "correlation_id": f"{self.ctx.session_id}:{ts_event}",
            "symbol": self.symbol,
            "side": "buy" if qty > 0 else "sell",
            "qty": Decimal(shares(abs(qty))),
            "price": Decimal(repr(close)),
            "order_type": "market",
            "time_in_force": "day",
        }

    def _send(
        self, qty: float, target: float, close: float, ts_event: int, ts_recv: int, stop: int
    ) -> None:
        self.seq += 1
        coid = f"{self.coid_prefix}{self.seq:06d}"
        frames = encode_intent(
            self.ctx.approval_key,
            seq=self.seq,
            ts_event=ts_event,
            ts_recv=ts_recv,
            qty=abs(qty),
            ref_price=close,
            side="buy" if qty > 0 else "sell",
            symbol=self.symbol,
            client_order_id=coid,
            session_id=self.ctx.session_id,
        )
        self.intents.send_multipart(frames)
        # -- off the hot path from here ----------------------------------------------------
        now = time.time_ns()
        self.gate.record(0, now)
        self.latency_ns[self.counts["intents"] % LATENCY_WINDOW] = now - ts_recv
        self.latency.observe_ns("tick_to_intent", now - ts_recv)
        self.counts["intents"] += 1
        self.last_denial = None
        order = self._order_fields(qty, close, ts_event)
        order["client_order_id"] = coid
        self.pending[coid] = order["qty"] if qty > 0 else -order["qty"]
        self.pending_f += qty
        meta = {"target": target, "bar_ts": ts_event}
        if stop:
            self.audit.emit(
                "stop_triggered",
                **order,
                status="exit",
                reason=f"{nb.STOPS[stop]} stop",
                metadata={**meta, "stop": nb.STOPS[stop], "position": self.position_f},
            )
        self.audit.emit("intent", **order, status="new", ts=ts_recv, metadata=meta)
        self.audit.emit("risk_approved", **order, status="approved")
        self.log.info(
            "intent",
            correlation_id=order["correlation_id"],
            client_order_id=coid,
            side=order["side"],
            qty=str(order["qty"]),
            ref_price=close,
            tick_to_intent_us=(now - ts_recv) / 1e3,
        )
        if self.breaker is not None:
            self._breaker(self.breaker.on_sent(ts_event, coid))

    def _deny(
        self, code: int, qty: float, close: float, target: float, ts_event: int, ts_recv: int
    ) -> None:
        decision = self.gate.explain(code)
        if code == nb.KILL_SWITCH and self.halted_by == "halt":
            decision = dataclasses.replace(decision, control="halt")
        key = (target, decision.control)
        if key == self.last_denial:  # a standing denial is audited once, not every bar
            return
        self.last_denial = key
        self.counts["denied"] += 1
        self.denied_by_control[decision.control] = (
            self.denied_by_control.get(decision.control, 0) + 1
        )
        order = self._order_fields(qty, close, ts_event)
        meta = {"target": target, "bar_ts": ts_event}
        self.audit.emit("intent", **order, status="new", ts=ts_recv, metadata=meta)
        self.audit.emit(
            "risk_denied",
            **order,
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

    def on_exec_event(self, raw: bytes) -> None:
        """Apply an execution event (fill, cancel, reject) to positions and pending."""
        ev = unpack(raw)
        coid = ev.get("client_order_id", "")
        kind = ev.get("event")
        if kind in ("fill", "partial_fill"):
            qty = Decimal(ev["qty"])
            if self.ledger.apply_fill(ev["execution_id"], ev["symbol"], qty, Decimal(ev["price"])):
                self.counts["fills"] += 1
                self.recent_fills.append(
                    {
                        k: ev.get(k)
                        for k in ("client_order_id", "execution_id", "symbol", "qty", "price")
                    }
                )
                if coid in self.pending:
                    self.pending[coid] -= qty
                    if self.pending[coid] == 0 or ev.get("status") == "filled":
                        del self.pending[coid]
                if self.breaker is not None:
                    self._breaker(self.breaker.on_fill(self.last_bar_ts, coid))
        elif kind in ("canceled", "expired", "rejected", "replaced"):
            self.pending.pop(coid, None)
            if self.breaker is not None and (kind == "rejected" or coid == self.breaker.probe_id):
                self._breaker(self.breaker.on_error(self.last_bar_ts, coid or kind))
        elif kind == "account":
            self.gate.set_account(float(ev["equity"]), float(ev["buying_power"]))
        self._sync_mirrors()

    def _fetch_account(self) -> None:
        """Read the broker account's equity and buying power once at start (execution
        publishes updates after fills); without a broker URL they stay unknown and the
        gate denies new risk."""
        b = self.ctx.broker
        if not b.trading_url:
            return
        req = urllib.request.Request(
            f"{b.trading_url}/v2/account",
            headers={"APCA-API-KEY-ID": b.key_id, "APCA-API-SECRET-KEY": b.secret_key},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                acct = json.load(r)
            self.gate.set_account(float(acct["equity"]), float(acct["buying_power"]))
        except (OSError, ValueError, KeyError) as e:
            self.log.error("account_unavailable", error=str(e))

    def on_control(self, raw: bytes) -> None:
        """Engage (``kill``, ``halt``) or release (``resume``) the gate's stop on new
        orders (a halt never overrides an engaged kill switch); put new limits in force."""
        msg = unpack(raw)
        cmd = msg.get("cmd")
        if cmd == "kill" or (cmd == "halt" and self.halted_by != "kill_switch"):
            self.gate.halted = True
            self.halted_by = "kill_switch" if cmd == "kill" else "halt"
            self.last_denial = None
        elif cmd == "resume":
            self.gate.halted = False
            self.halted_by = ""
            self.last_denial = None
        elif cmd == "set_limits":
            try:
                limits = RiskLimits.model_validate(msg["limits"])
                self.gate.set_limits(limits)
            except (ValueError, ConfigurationError) as e:  # validated by the daemon first
                self.log.error("set_limits_failed", error=str(e))
                return
            self._configure(limits)
            self.last_denial = None
            self.audit.emit(
                "risk_limits",
                status="in_force",
                reason=f"limits changed by {msg.get('by', '?')}",
                metadata={"limits": msg["limits"], "by": msg.get("by")},
            )

    def push_status(self) -> None:
        """Send a status snapshot (positions, P&L, counts, tick-to-intent latency)."""
        n = min(self.counts["intents"], LATENCY_WINDOW)
        lat = self.latency_ns[:n]
        self.status.send(
            pack(
                {
                    "component": "engine",
                    "pid": os.getpid(),
                    "halted": self.gate.halted,
                    "halted_by": self.halted_by,
                    "limits": self.gate.limits.model_dump(mode="json"),
                    "circuit_breaker": self.breaker.describe() if self.breaker else None,
                    "var": None if self.gate.limits.var is None else repr(self.gate.var()),
                    "bars": self.bars,
                    "last_bar_ts": self.last_bar_ts,
                    "stale_bars": self.stale_bars,
                    "warmup": self.warmup,
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
                    "day": {
                        "session": self.session,
                        "open_ns": self.session_open_ns,
                        "day_start_pnl": str(self.day_start_pnl),
                        "day_peak": self.day_peak_f,
                    },
                    "orders_last_minute": nb.orders_last_minute_nb(
                        self.gate.recent[-1], time.time_ns()
                    ),
                    "denied_by_control": self.denied_by_control,
                    "latency": self.latency.snapshot(),
                    "pending": {k: str(v) for k, v in self.pending.items()},
                    "recent_fills": list(self.recent_fills),
                    "tick_to_intent_us_p50": float(np.percentile(lat, 50)) / 1e3 if n else None,
                    "tick_to_intent_us_p99": float(np.percentile(lat, 99)) / 1e3 if n else None,
                }
            )
        )


def warm_up_from_broker(eng: Engine, ctx: ComponentContext) -> None:
    """Rebuild ``eng``'s strategy state from the broker's bar history before it trades
    (:mod:`live.warmup`), or start it cold if the history cannot be fetched and
    ``[recovery] cold_start`` allows it.

    Raises
    ------
    TemporaryError
        The history cannot be fetched and ``cold_start`` is false (the cause named).
    """
    source = BarHistory(ctx.broker, ctx.cfg.symbol, eng.artefact.spec.warmup_bars)
    try:
        hist = source.session()
    except FETCH_ERRORS as e:
        reason = f"cannot fetch the bar history for the strategy warm-up: {e}"
        if not ctx.cfg.recovery.cold_start:
            eng.log.error("strategy_warmup_failed", error=reason)
            raise TemporaryError(
                f"{reason}. Start again once the broker's market data answers, or set "
                "[recovery] cold_start = true in live.toml to start the strategy cold."
            ) from e
        eng.start_cold(reason)
        return
    eng.history = source
    eng.warm_up(hist.bars, hist.before, hist.seconds)


def run_engine(ctx: ComponentContext) -> None:
    """Process entry point of the engine (stops on SIGTERM)."""
    die_with_parent()
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
    warm_up_from_broker(eng, ctx)
    if pin:
        os.sched_setaffinity(0, {core})
    poller = zmq.Poller()
    for s in (eng.md, eng.exec_events, eng.control):
        poller.register(s, zmq.POLLIN)

    def on_md() -> None:
        topic, payload = eng.md.recv_multipart()
        if topic == FEED_CONNECTED_TOPIC:
            eng.on_feed_connected()
        else:
            eng.on_bar(payload)

    handlers = {
        eng.md: on_md,
        eng.exec_events: lambda: eng.on_exec_event(eng.exec_events.recv()),
        eng.control: lambda: eng.on_control(eng.control.recv()),
    }
    last_status = 0.0
    while not stopping:
        for sock, _ in poller.poll(100):
            handlers[sock]()
        eng.audit.flush()  # after the hot path: audit events of this bar leave in one batch
        now = time.monotonic()
        if eng.status_due or now - last_status > 0.25:
            eng.audit.service()
            eng.push_status()
            eng.status_due = False
            last_status = now
    # drain fills still in flight from execution's shutdown cancels
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        if not eng.exec_events.poll(100):
            break
        eng.on_exec_event(eng.exec_events.recv())
    eng.push_status()
    eng.audit.close()
    eng.log.info("stopped", **eng.counts)
    zctx.destroy(linger=2000)
