"""The execution process: the only component that talks to the broker's order API.

It accepts an order intent only if it carries a valid risk-gate signature
(:func:`live.bus.decode_intent`), re-checks the kill switch and the hard per-order caps
just before the wire, submits with a deterministic ``client_order_id`` (never twice: see
:meth:`live.alpaca.AlpacaREST.submit_order_idempotent`), turns ``trade_updates`` into
events for the engine and the audit trail (each fill once: :class:`live.fills.FillBook`,
keyed by ``execution_id`` and by the part of the order it covers, so fills backfilled
over REST after a stream reconnect never count twice), refuses new orders while the
feed's watchdog reports stale market data or when Alpaca would reject them for the
time of day (:func:`live.market_hours.submission_problem`), and on a kill request or at
shutdown cancels every open order.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import zmq
import zmq.asyncio

from live.aio import CountingEvent, wait_for_event
from live.alpaca import AlpacaREST, trade_updates
from live.audit import AuditEmitter
from live.bus import FEED_STATE_TOPIC, decode_intent, pack, shares, socket, unpack
from live.config import RiskLimits
from live.context import ComponentContext
from live.fills import FillBook
from live.logs import setup_logging
from live.market_hours import submission_problem
from live.metrics import LatencyRecorder
from live.orderstore import OrderStore
from live.ratelimit import DEFAULT_RATE_PER_MIN, RateLimiter
from live.reconcile import missing_fills
from live.supervise import die_with_parent
from trader.exceptions import OrderRejected, TemporaryError

BAR_NS = 60_000_000_000
TERMINAL = {"filled", "canceled", "expired", "rejected", "replaced"}
STREAM_EVENTS = {"partial_fill", "fill", "canceled", "expired", "rejected", "replaced"}


@dataclass
class TrackedOrder:
    """What execution knows of an order it sent."""

    client_order_id: str
    correlation_id: str
    symbol: str
    side: str
    qty: Decimal
    broker_order_id: str | None = None
    status: str = "submitted"
    filled_qty: Decimal = Decimal(0)
    received_ns: int = 0  # wall ns when execution received the intent (0: not an intent)
    accepted_ns: int = 0  # wall ns of the broker's acknowledgement


class Execution:
    """State and handlers of the execution process (one asyncio loop)."""

    def __init__(self, ctx: ComponentContext, zctx: zmq.asyncio.Context) -> None:
        self.ctx = ctx
        self.log = setup_logging("execution", ctx.var_dir)
        self.limits = ctx.cfg.risk
        self.halted_by = ctx.halted_by  # "kill_switch", "halt" or "" (trading)
        # 180 requests a minute of market time: the simulator's minutes pass `speed` x faster.
        pace = ctx.cfg.sim.speed if ctx.broker.mode == "sim" else 1.0
        self.rest = AlpacaREST(
            ctx.broker.trading_url,
            ctx.broker.key_id,
            ctx.broker.secret_key,
            limiter=RateLimiter(DEFAULT_RATE_PER_MIN * pace),
        )
        self.orders: dict[str, TrackedOrder] = {}
        self.by_broker_id: dict[str, str] = {}
        self.fills = FillBook()
        self.feed_stale = False  # the feed's watchdog says market data is stale
        self.counts = {
            "submitted": 0,
            "accepted": 0,
            "fills": 0,
            "filled": 0,
            "rejected": 0,
            "refused": 0,
        }
        self.latency = LatencyRecorder("intent_to_accepted", "accepted_to_filled")
        self.kill_ack = ""
        # Open orders the broker reported after the last cancel-everything (kill or stop);
        # sent in every status snapshot so the daemon never reads a stale one.
        self.broker_open_orders: int | None = None
        self.flattened: list[dict[str, str]] | None = None  # closing orders of the last kill
        bus = ctx.bus
        self.intents = socket(zctx, zmq.PULL, bus.addr("intents"), bind=True)
        self.events = socket(zctx, zmq.PUB, bus.addr("exec"), bind=True)
        self.control = socket(zctx, zmq.SUB, bus.addr("control"), subscribe=b"")
        self.feed_state = socket(zctx, zmq.SUB, bus.addr("md"), subscribe=FEED_STATE_TOPIC)
        self.status = socket(zctx, zmq.PUSH, bus.addr("status"))
        self.audit = AuditEmitter(bus, ctx.session_id, "execution")
        self.store = OrderStore(ctx.dsn, ctx.session_id)
        self.stream_up = CountingEvent()
        self._backfill_task: asyncio.Task[int] | None = None
        self._in_flight = 0  # submissions between their checks and the broker's answer
        self._idle = asyncio.Event()
        self._idle.set()
        self.account_stale = True

    @property
    def halted(self) -> bool:
        """True while new orders are refused (kill switch or halt)."""
        return bool(self.halted_by)

    # -- intents -------------------------------------------------------------------------
    def _refuse(
        self, intent: dict[str, Any], reason: str, metadata: dict[str, Any] | None = None
    ) -> None:
        self.counts["refused"] += 1
        self.audit.emit(
            "rejected",
            correlation_id=intent.get("correlation_id"),
            client_order_id=intent.get("client_order_id"),
            symbol=intent.get("symbol"),
            side=intent.get("side"),
            qty=intent.get("qty"),
            order_type=intent.get("order_type"),
            time_in_force=intent.get("time_in_force"),
            status="refused",
            reason=reason,
            metadata=metadata,
        )
        self.log.warning(
            "intent_refused", reason=reason, client_order_id=intent.get("client_order_id")
        )

    def pre_wire_check(self, intent: dict[str, Any]) -> str:
        """Return "" if a verified ``intent`` (``qty`` as Decimal shares) may go to the
        broker, else the refusal reason."""
        if self.halted:
            return f"{self.halted_by}: engaged"
        if self.feed_stale:
            return "stale_data: the market-data feed is stale (watchdog)"
        # Market time of the submission: the end of the bar the intent answers.
        now_ns = int(intent["ts_event"]) + BAR_NS
        problem = submission_problem(intent["order_type"], intent["time_in_force"], False, now_ns)
        if problem:
            return f"market_hours: {problem}"
        qty = intent["qty"]
        if not 0 < qty <= self.limits.max_order_qty:
            return f"max_order_qty: {qty} outside (0, {self.limits.max_order_qty}]"
        notional = qty * Decimal(repr(intent["ref_price"]))
        if notional > self.limits.max_order_notional:
            return f"max_order_notional: {notional:.2f} > {self.limits.max_order_notional}"
        if intent["client_order_id"] in self.orders:
            return "duplicate client_order_id: already sent"
        return ""

    async def on_intent(self, frames: list[bytes]) -> None:
        """Verify, check and submit one intent."""
        received_ns = time.time_ns()
        try:
            intent = decode_intent(self.ctx.approval_key, frames)
        except ValueError as e:  # not from the gate: nothing in it can be trusted
            self._refuse({}, str(e), metadata={"frame_sizes": [len(f) for f in frames]})
            return
        intent["correlation_id"] = f"{intent['session_id']}:{intent['ts_event']}"
        intent["qty"] = Decimal(shares(intent["qty"]))
        reason = self.pre_wire_check(intent)
        if reason:
            self._refuse(intent, reason)
            if intent["client_order_id"] not in self.orders:
                self.events.send(
                    pack(
                        {
                            "event": "rejected",
                            "reason": reason,
                            "client_order_id": intent["client_order_id"],
                        }
                    )
                )
            return
        o = TrackedOrder(
            intent["client_order_id"],
            intent["correlation_id"],
            intent["symbol"],
            intent["side"],
            intent["qty"],
            received_ns=received_ns,
        )
        await self.submit(o, intent["order_type"], intent["time_in_force"])

    async def submit(
        self, o: TrackedOrder, order_type: str, time_in_force: str, *, closing: bool = False
    ) -> None:
        """Send one order: its ``orders`` row is stored first (a crash after this point is
        settled at restart by a lookup of ``client_order_id``), then the POST, which is
        never blindly retried. Every order of the session goes through here.

        The kill switch is checked again just before the POST (it may have been engaged
        while the row was stored), except for ``closing`` orders (the kill's flatten); a
        kill waits for submissions in flight (:meth:`in_flight_done`) before it cancels.
        """
        self._in_flight += 1
        self._idle.clear()
        try:
            await self._submit(o, order_type, time_in_force, closing)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def in_flight_done(self, timeout_s: float) -> bool:
        """Wait until no submission is between its check and the broker's answer."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def _submit(
        self, o: TrackedOrder, order_type: str, time_in_force: str, closing: bool
    ) -> None:
        coid = o.client_order_id
        self.orders[coid] = o
        common: dict[str, Any] = {
            "correlation_id": o.correlation_id,
            "client_order_id": coid,
            "symbol": o.symbol,
            "side": o.side,
            "qty": o.qty,
            "order_type": order_type,
            "time_in_force": time_in_force,
        }
        try:
            await self.store.record(**common)
        except TemporaryError as e:
            o.status = "rejected"
            self._refuse(common, f"orderstore: {e}")
            self.events.send(pack({"event": "rejected", "client_order_id": coid, "reason": str(e)}))
            return
        if self.halted and not closing:
            o.status = "rejected"
            self._refuse(common, "kill_switch: engaged")
            self.events.send(
                pack({"event": "rejected", "client_order_id": coid, "reason": "kill_switch"})
            )
            return
        body = {
            "symbol": o.symbol,
            "qty": str(o.qty),
            "side": o.side,
            "type": order_type,
            "time_in_force": time_in_force,
            "client_order_id": coid,
        }
        self.audit.emit("submitted", **common, status="submitted")
        self.audit.flush()
        self.counts["submitted"] += 1
        try:
            order = await self.rest.submit_order_idempotent(body)
        except OrderRejected as e:
            o.status = "rejected"
            self.counts["rejected"] += 1
            self.audit.emit("rejected", **common, status="rejected", reason=str(e))
            self.events.send(pack({"event": "rejected", "client_order_id": coid, "reason": str(e)}))
            self.log.warning(
                "order_rejected",
                correlation_id=o.correlation_id,
                client_order_id=coid,
                reason=str(e),
            )
            return
        except TemporaryError as e:
            # Outcome unknown: keep the order tracked as submitted; the stream or the
            # reconciliation settles it. Never re-sent under a new id.
            self.log.error(
                "order_outcome_unknown",
                correlation_id=o.correlation_id,
                client_order_id=coid,
                error=str(e),
            )
            return
        self._on_order_ack(o, order, common)
        if o.received_ns:
            self.latency.observe_ns("intent_to_accepted", o.accepted_ns - o.received_ns)

    def _on_order_ack(self, o: TrackedOrder, order: dict[str, Any], common: dict[str, Any]) -> None:
        o.accepted_ns = time.time_ns()
        o.broker_order_id = order["id"]
        self.by_broker_id[order["id"]] = o.client_order_id
        if o.status == "submitted":
            o.status = order.get("status", "accepted")
        self.counts["accepted"] += 1
        self.log.info(
            "accepted",
            correlation_id=o.correlation_id,
            client_order_id=o.client_order_id,
            broker_order_id=o.broker_order_id,
        )
        self.audit.emit("accepted", **common, broker_order_id=o.broker_order_id, status=o.status)
        self.events.send(
            pack(
                {
                    "event": "accepted",
                    "client_order_id": o.client_order_id,
                    "broker_order_id": o.broker_order_id,
                }
            )
        )

    # -- trade updates -------------------------------------------------------------------
    def on_trade_update(self, upd: dict[str, Any]) -> None:
        """Apply one ``trade_updates`` event; fills are keyed by ``execution_id``."""
        event = upd.get("event", "")
        order = upd.get("order", {})
        coid = order.get("client_order_id", "")
        o = self.orders.get(coid)
        if event not in STREAM_EVENTS or o is None:
            return  # 'new' is audited from the POST response; foreign orders are ignored
        o.status = order.get("status", o.status)
        o.broker_order_id = o.broker_order_id or order.get("id")
        base = {
            "correlation_id": o.correlation_id,
            "client_order_id": coid,
            "broker_order_id": o.broker_order_id,
            "symbol": o.symbol,
            "side": o.side,
            "order_type": order.get("type"),
            "time_in_force": order.get("time_in_force"),
            "status": o.status,
        }
        if event in ("fill", "partial_fill"):
            try:
                fill = self.fills.on_stream(upd)
            except ValueError as e:  # not applied: the next backfill recovers it over REST
                self.log.error("malformed_fill", error=str(e), update=upd)
                return
            if fill is None:
                return  # applied already (redelivered, or a backfill stood in for it)
            exec_id, qty, price = fill.execution_id, fill.qty, fill.price
            o.filled_qty += qty
            self.counts["fills"] += 1
            if o.status == "filled":
                self.counts["filled"] += 1
                if o.accepted_ns:
                    self.latency.observe_ns("accepted_to_filled", time.time_ns() - o.accepted_ns)
            self.log.info(
                event,
                correlation_id=o.correlation_id,
                client_order_id=coid,
                execution_id=exec_id,
                qty=str(qty),
                price=str(price),
            )
            self.account_stale = True
            self.audit.emit(
                event,
                **base,
                execution_id=exec_id,
                qty=qty,
                price=price,
                metadata={
                    "position_qty": str(upd.get("position_qty")),
                    "broker_ts": upd.get("timestamp"),
                    "cum_qty": str(fill.cum_qty),
                },
            )
            signed = qty if o.side == "buy" else -qty
            self.events.send(
                pack(
                    {
                        "event": event,
                        "client_order_id": coid,
                        "symbol": o.symbol,
                        "qty": str(signed),
                        "price": str(price),
                        "execution_id": exec_id,
                        "status": o.status,
                    }
                )
            )
        else:
            self.audit.emit(
                event, **base, qty=o.qty - o.filled_qty, reason=order.get("cancel_reason") or event
            )
            self.events.send(pack({"event": event, "client_order_id": coid}))

    async def consume_trade_updates(self) -> None:
        """Run the ``trade_updates`` stream for the process lifetime."""
        b = self.ctx.broker
        async for upd in trade_updates(
            b.trade_stream_url, b.key_id, b.secret_key, self.stream_up, self._on_listening
        ):
            self.on_trade_update(upd)
            self.audit.flush()

    def _on_listening(self, n: int) -> None:
        if n > 1:  # a reconnection: fetch what the stream missed while it was down
            self._backfill_task = asyncio.create_task(self.backfill())

    async def backfill(self) -> int:
        """Apply the fills and terminal states of this session's open orders that the
        broker has and this process has not seen (stream dropped): orders are read back
        by id, missing executions from the FILL activities, each applied once.

        Returns
        -------
        int
            Trade updates applied.
        """
        try:
            orders = []
            for o in self.open_orders():
                b = await (
                    self.rest.get_order(o.broker_order_id)
                    if o.broker_order_id
                    else self.rest.get_order_by_client_id(o.client_order_id)
                )
                if b is not None:
                    orders.append(b)
            updates = await missing_fills(self.rest, orders, self.fills)
        except (TemporaryError, OrderRejected) as e:
            self.log.error("backfill_failed", error=str(e))
            return 0
        updates += [
            {"event": b["status"], "order": b}
            for b in orders
            if b["status"] in STREAM_EVENTS and b["status"] not in ("fill", "partial_fill")
        ]
        for upd in updates:
            self.on_trade_update(upd)
        self.audit.flush()
        if updates:
            self.log.warning("backfilled", updates=len(updates))
        return len(updates)

    async def on_feed_state(self, raw: list[bytes]) -> None:
        """Track the feed watchdog's ``stale`` flag (``md`` topic FEED_STATE_TOPIC)."""
        stale = bool(unpack(raw[1]).get("stale"))
        if stale != self.feed_stale:
            self.log.warning("feed_stale" if stale else "feed_fresh")
        self.feed_stale = stale

    # -- kill switch and shutdown --------------------------------------------------------
    def open_orders(self) -> list[TrackedOrder]:
        """Orders sent in this session that are not in a terminal state."""
        return [o for o in self.orders.values() if o.status not in TERMINAL]

    async def cancel_everything(self, reason: str, timeout_s: float = 10.0) -> int:
        """Cancel every open order at the broker and wait until none is open.

        Returns
        -------
        int
            Orders the broker still reports open at the deadline (0 on success).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                results = await self.rest.cancel_all_orders()
                for r in results:
                    coid = self.by_broker_id.get(str(r.get("id")))
                    if coid:
                        o = self.orders[coid]
                        self.audit.emit(
                            "cancel_request",
                            correlation_id=o.correlation_id,
                            client_order_id=coid,
                            broker_order_id=o.broker_order_id,
                            symbol=o.symbol,
                            side=o.side,
                            reason=reason,
                            status=str(r.get("status")),
                        )
                still_open = await self.rest.list_orders("open")
            except (TemporaryError, OrderRejected) as e:
                self.log.error("cancel_all_failed", error=str(e))
                still_open = [{}]
            if not still_open or time.monotonic() > deadline:
                return len(still_open)
            await asyncio.sleep(0.1)

    async def flatten(self, kill_id: str, reason: str) -> list[dict[str, str]]:
        """Close every position at the broker with market day orders.

        Each closing order has the deterministic ``client_order_id``
        ``flatten-<kill_id[:12]>-<symbol>``, is audited as ``flatten`` and then sent by
        :meth:`submit` like any other order (stored first, never twice; its fills reach
        the engine and the audit trail). It skips the gate on purpose: it only ever
        reduces a position to zero.

        Returns
        -------
        list of dict
            ``{"symbol", "side", "qty", "client_order_id", "status"}`` per position.
        """
        try:
            positions = await self.rest.positions()
        except (TemporaryError, OrderRejected) as e:
            self.log.error("flatten_failed", error=str(e))
            return [{"status": f"positions unavailable: {e}"}]
        done = []
        for p in positions:
            qty = Decimal(str(p["qty"]))
            if qty == 0:
                continue
            side = "sell" if qty > 0 else "buy"
            coid = f"flatten-{kill_id[:12]}-{p['symbol']}"
            o = TrackedOrder(coid, f"kill:{kill_id}", p["symbol"], side, abs(qty))
            self.audit.emit(
                "flatten",
                correlation_id=o.correlation_id,
                client_order_id=coid,
                symbol=o.symbol,
                side=side,
                qty=o.qty,
                order_type="market",
                time_in_force="day",
                status="new",
                reason=reason,
            )
            await self.submit(o, "market", "day", closing=True)
            done.append(
                {
                    "symbol": o.symbol,
                    "side": side,
                    "qty": str(o.qty),
                    "client_order_id": coid,
                    "status": o.status,
                }
            )
        return done

    async def on_control(self, raw: bytes) -> None:
        """Handle ``kill`` (refuse new orders + cancel all [+ flatten]), ``halt`` (refuse
        new orders, leave the open ones working) and ``resume`` from the daemon."""
        cmd = unpack(raw)
        if cmd.get("cmd") == "halt":
            if self.halted_by != "kill_switch":
                self.halted_by = "halt"
            self.log.warning("halted", by=cmd.get("by"), reason=cmd.get("reason"))
            self.push_status()
        elif cmd.get("cmd") == "kill":
            self.halted_by = "kill_switch"
            reason = f"kill: {cmd.get('reason', '')}"
            kill_id = str(cmd.get("kill_id", ""))
            if not await self.in_flight_done(10.0):
                self.log.error("kill_in_flight_timeout")
            remaining = await self.cancel_everything(reason)
            self.flattened = await self.flatten(kill_id, reason) if cmd.get("flatten") else None
            self.broker_open_orders = remaining  # before the ack: one snapshot carries both
            self.kill_ack = kill_id
            self.log.warning("killed", open_orders_left=remaining, by=cmd.get("by"))
            self.push_status()
        elif cmd.get("cmd") == "fills":  # missed fills found by a reconciliation
            for upd in cmd["fills"]:
                self.on_trade_update(upd)
        elif cmd.get("cmd") == "resume":
            self.halted_by = ""
            self.push_status()
        elif cmd.get("cmd") == "set_limits":
            try:
                self.limits = RiskLimits.model_validate(cmd["limits"])
            except ValueError as e:  # validated by the daemon first
                self.log.error("set_limits_failed", error=str(e))

    async def publish_account(self, every_s: float = 1.0, idle_s: float = 10.0) -> None:
        """Publish the broker account's equity and buying power (USD) to the engine's
        risk gate: within ``every_s`` of a fill, and every ``idle_s`` anyway."""
        last = 0.0
        while True:
            now = time.monotonic()
            if self.account_stale or now - last >= idle_s:
                self.account_stale = False
                last = now
                try:
                    acct = await self.rest.account()
                    self.events.send(
                        pack(
                            {
                                "event": "account",
                                "equity": acct["equity"],
                                "buying_power": acct["buying_power"],
                            }
                        )
                    )
                except (TemporaryError, OrderRejected, KeyError) as e:
                    self.log.error("account_unavailable", error=str(e))
            await asyncio.sleep(every_s)

    def push_status(self, **extra: Any) -> None:
        """Send a status snapshot to the daemon."""
        self.status.send(
            pack(
                {
                    "component": "execution",
                    "pid": os.getpid(),
                    "halted": self.halted,
                    "halted_by": self.halted_by,
                    "kill_ack": self.kill_ack,
                    "broker_open_orders": self.broker_open_orders,
                    "flattened": self.flattened,
                    "stream_connected": self.stream_up.is_set(),
                    "reconnects": self.stream_up.reconnects,
                    "feed_stale": self.feed_stale,
                    "duplicate_fills": self.fills.duplicates,
                    "latency": self.latency.snapshot(),
                    **self.counts,
                    "open_orders": [
                        {
                            "client_order_id": o.client_order_id,
                            "symbol": o.symbol,
                            "side": o.side,
                            "qty": str(o.qty),
                            "status": o.status,
                            "filled_qty": str(o.filled_qty),
                        }
                        for o in self.open_orders()
                    ],
                    **extra,
                }
            )
        )


async def _run(ctx: ComponentContext) -> None:
    zctx = zmq.asyncio.Context()
    ex = Execution(ctx, zctx)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with ex.rest:
        stream_task = asyncio.create_task(ex.consume_trade_updates())
        await asyncio.wait_for(ex.stream_up.wait(), timeout=30)

        async def pump(receive: Any, handler: Any) -> None:
            while True:
                await handler(await receive())
                ex.audit.flush()

        tasks = [
            asyncio.create_task(pump(ex.intents.recv_multipart, ex.on_intent)),
            asyncio.create_task(pump(ex.control.recv, ex.on_control)),
            asyncio.create_task(pump(ex.feed_state.recv_multipart, ex.on_feed_state)),
            asyncio.create_task(ex.publish_account()),
        ]
        while not stop.is_set():
            ex.audit.service()
            ex.push_status()
            await wait_for_event(stop, 0.25)
        for t in tasks:
            t.cancel()
        remaining = await ex.cancel_everything("shutdown")
        await asyncio.sleep(0.3)  # let the stream deliver the last cancel/fill events
        stream_task.cancel()
        ex.broker_open_orders = remaining
        ex.push_status(stopped=True)
        ex.audit.close()
        await ex.store.close()
        ex.log.info("stopped", open_orders_left=remaining, **ex.counts)
    zctx.destroy(linger=2000)


def run_execution(ctx: ComponentContext) -> None:
    """Process entry point of the execution component (stops on SIGTERM)."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_run(ctx))
