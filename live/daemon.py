"""The daemon: starts, supervises and stops the live processes, and serves the control API.

Start-up order: Postgres (embedded unless ``DATABASE_URL``) and migrations, the kill
switch restored -> the promoted artefact is verified -> the simulator (``sim`` mode; or
``TRADER_SIM_URL``, a simulator that outlives the daemon) -> audit writer -> the
reconciliation with the broker (:mod:`live.reconcile`; a break stops the start unless
``accept_breaks``) and the book restored from Postgres (:mod:`live.recovery`) ->
execution (``trade_updates`` connected) -> engine (kernel compiled, pinned, restored
book, day baseline and circuit breaker, strategy state rebuilt from the broker's bar
history: :mod:`live.warmup`) -> feed. Each process must report in before the next
starts. During the session the daemon reconciles every ``[recovery]
reconcile_interval_s`` (a break not accepted before halts new orders, as
:meth:`Daemon.halt` ``by="reconciler"``; nothing is cancelled), snapshots positions
every ``snapshot_interval_s``, and stores the risk state the engine reports (circuit
breaker at every transition, the day's P&L baseline when a session starts) in
``risk_state``. Shutdown runs in reverse: the feed stops first so no new bar arrives,
execution cancels every open order, the engine takes the last fills, the audit writer
drains, then a session summary is printed and stored. A dead audit writer is restarted
(producers re-send what it had not stored); any other child that dies stops the session
(its exit code is printed), and the next start recovers. Children die with the daemon
(``PR_SET_PDEATHSIG``), so a ``kill -9`` of the daemon leaves none trading.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import multiprocessing as mp
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pandas as pd
import psycopg
import zmq
import zmq.asyncio
from aiohttp import web
from tqdm import tqdm

from live.aio import wait_for_event
from live.alpaca import AlpacaREST
from live.audit import AuditEmitter, run_writer
from live.bus import Bus, pack, socket, unpack
from live.config import (
    DATA_STREAM_URL,
    LIVE_URL,
    PAPER_URL,
    BrokerEndpoints,
    LiveConfig,
    resolve_mode,
    update_limits,
)
from live.context import ComponentContext
from live.control import control_token, make_control_app
from live.db import EmbeddedPostgres, migrate, port_is_free
from live.engine import run_engine
from live.execution import run_execution
from live.feed import run_feed
from live.logs import setup_logging
from live.reconcile import Reconciler
from live.recovery import BREAKER_KEY, DAY_KEY, KILL_KEY, persist, restore
from trader.exceptions import (
    ConfigurationError,
    OrderRejected,
    TemporaryError,
    UnresolvedBreaks,
)
from trader.promote import load_artefact

COMPONENTS: tuple[tuple[str, Callable[[ComponentContext], None]], ...] = (
    ("audit", run_writer),
    ("execution", run_execution),
    ("engine", run_engine),
    ("feed", run_feed),
)
HALT_KEY = "halt"
PNL_HISTORY = 7200  # points of /pnl/history: an hour at one point per 0.5 s
#: A bar older than this (wall seconds since the feed received it) makes /ready false.
DATA_FRESH_S = 120.0


def _free_port() -> int:
    import socket as s

    with s.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ipc_dir(var_dir: Path, session_id: str) -> Path:
    d = var_dir / "ipc" / session_id[:8]
    if len(str(d / "control")) > 90:  # ipc:// paths are limited to ~107 bytes
        d = Path(tempfile.gettempdir()) / f"trader-ipc-{session_id[:8]}"
    d.mkdir(parents=True, exist_ok=True)
    return d


class Daemon:
    """One live session.

    Parameters
    ----------
    cfg : LiveConfig
    allow_live : bool
        The ``--live`` flag (real money also needs ``TRADER_CONFIRM_LIVE``).

    Raises
    ------
    ConfigurationError
        Invalid mode/keys, a refused artefact, or Postgres that does not start.
    """

    def __init__(
        self, cfg: LiveConfig, *, allow_live: bool = False, accept_breaks: bool = False
    ) -> None:
        self.cfg = cfg
        self.accept_breaks = accept_breaks
        self.reconciler: Reconciler | None = None
        self.mode = resolve_mode(cfg, allow_live=allow_live)
        self.artefact = load_artefact(cfg.models_dir, cfg.strategy, cfg.strategy_version)
        self.session_id = uuid.uuid4().hex[:16]
        self.log = setup_logging("daemon", cfg.var_dir)
        self.status: dict[str, dict[str, Any]] = {}
        self.halted_by = ""  # "kill_switch", "halt" or "" (trading)
        self._persisted: dict[str, Any] = {}  # risk_state records of the engine last stored
        self.pnl_history: deque[dict[str, Any]] = deque(maxlen=PNL_HISTORY)
        self.control_url = ""
        self.summary: dict[str, Any] = {}
        self._procs: dict[str, Any] = {}
        self._sim: subprocess.Popen[bytes] | None = None
        self._pg: EmbeddedPostgres | None = None
        self._stop = asyncio.Event()
        self._stop_reason = ""
        self._last_line = 0.0

    # -- database ------------------------------------------------------------------------
    def _start_database(self) -> str:
        dsn = os.environ.get("DATABASE_URL")
        if not dsn:
            self._pg = EmbeddedPostgres(self.cfg.var_dir, self.cfg.database.embedded_port)
            self._pg.start()
            dsn = self._pg.dsn
        migrate(dsn)
        return dsn

    def _sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def _persist_stop(
        self, key: str, engaged: bool, reason: str, by: str, flatten: bool = False
    ) -> None:
        """Store the kill switch (``KILL_KEY``) or halt (``HALT_KEY``) state."""
        persist(
            self.dsn,
            key,
            {
                "engaged": engaged,
                "reason": reason,
                "by": by,
                "flatten": flatten,
                "session_id": self.session_id,
            },
        )

    def _restore_stop(self) -> str:
        """What stopped new orders in an earlier session: "kill_switch", "halt" or ""."""
        rows = dict(
            self._sql(
                "SELECT key, value FROM risk_state WHERE key IN (%s, %s)", (KILL_KEY, HALT_KEY)
            )
        )
        for key in (KILL_KEY, HALT_KEY):
            if rows.get(key, {}).get("engaged"):
                return key
        return ""

    def database_reachable(self, timeout_s: int = 2) -> bool:
        """True if Postgres answers ``SELECT 1`` within ``timeout_s`` seconds."""
        try:
            with psycopg.connect(self.dsn, autocommit=True, connect_timeout=timeout_s) as c:
                c.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    # -- broker --------------------------------------------------------------------------
    def _broker(self) -> BrokerEndpoints:
        key = os.environ.get("APCA_API_KEY_ID", "")
        secret = os.environ.get("APCA_API_SECRET_KEY", "")
        external_sim = os.environ.get("TRADER_SIM_URL", "").rstrip("/")
        if self.mode == "sim" and external_sim:  # a simulator that outlives the daemon
            ws = external_sim.replace("http://", "ws://")
            return BrokerEndpoints(
                mode="sim",
                trading_url=external_sim,
                trade_stream_url=f"{ws}/stream",
                data_stream_url=f"{ws}/v2/iex",
                key_id=key or "sim-key",
                secret_key=secret or "sim-secret",
            )
        if self.mode == "sim":
            port = _free_port()
            sim = self.cfg.sim
            cmd = [
                sys.executable,
                "-m",
                "live.sim",
                "--port",
                str(port),
                "--data",
                str(sim.data_path),
                "--symbol",
                self.cfg.symbol,
                "--start",
                sim.start.isoformat(),
                "--end",
                sim.end.isoformat(),
                "--speed",
                str(sim.speed),
                "--cash",
                str(sim.initial_cash),
            ]
            # The simulator is a new process each run; its account starts with the
            # position the database remembers, as an Alpaca paper account keeps its
            # positions between sessions (otherwise reconciliation finds a break).
            held = restore(self.dsn).ledger.positions.get(self.cfg.symbol)
            if held is not None and held.qty != 0:
                cmd += ["--position-qty", str(held.qty), "--cost-basis", str(held.cost_basis)]
            log = open(self.cfg.var_dir / "log" / "sim.log", "ab")  # noqa: SIM115
            self._sim = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            base = f"http://127.0.0.1:{port}"
            return BrokerEndpoints(
                mode="sim",
                trading_url=base,
                trade_stream_url=f"ws://127.0.0.1:{port}/stream",
                data_stream_url=f"ws://127.0.0.1:{port}/v2/iex",
                key_id=key or "sim-key",
                secret_key=secret or "sim-secret",
            )
        base = os.environ.get("APCA_API_BASE_URL") or (
            PAPER_URL if self.mode == "paper" else LIVE_URL
        )
        ws = base.replace("https://", "wss://").replace("http://", "ws://") + "/stream"
        return BrokerEndpoints(
            mode=self.mode,
            trading_url=base,
            trade_stream_url=ws,
            data_stream_url=DATA_STREAM_URL,
            key_id=key,
            secret_key=secret,
        )

    async def _wait_sim(self, http: aiohttp.ClientSession, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self._sim is not None
            if self._sim.poll() is not None:
                raise ConfigurationError(
                    f"simulator exited with code {self._sim.returncode}; "
                    f"see {self.cfg.var_dir / 'log' / 'sim.log'}"
                )
            try:
                async with http.get(f"{self.broker.trading_url}/sim/status") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise TemporaryError("simulator did not answer within 60 s")

    async def _sim_status(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        try:
            async with http.get(f"{self.broker.trading_url}/sim/status") as r:
                result: dict[str, Any] = await r.json()
                return result
        except aiohttp.ClientError:
            return {}

    # -- processes -----------------------------------------------------------------------
    async def _read_status(self, pull: zmq.asyncio.Socket) -> None:
        while True:
            try:
                snap = unpack(await pull.recv())
            except ValueError as e:
                self.log.error("malformed_status", error=str(e))
                continue
            self.status[snap["component"]] = snap
            if snap["component"] == "engine":
                self._persist_engine_state(snap)

    async def _read_exec(self, sub: zmq.asyncio.Socket, bar: tqdm[Any]) -> None:
        while True:
            ev = unpack(await sub.recv())
            if ev.get("event") in ("fill", "partial_fill", "rejected"):
                line = (
                    f"{ev['event'].upper():<12} {ev.get('symbol', ''):<5} "
                    f"{ev.get('qty', ''):>6} @ {ev.get('price', '')}  "
                    f"{ev.get('client_order_id', '')} {ev.get('reason', '')}"
                )
                bar.write(line)

    async def _start_component(
        self, name: str, target: Callable[[ComponentContext], None], timeout_s: float = 120
    ) -> None:
        proc = mp.get_context("spawn").Process(target=target, args=(self.ctx,), name=name)
        proc.start()
        self._procs[name] = proc
        deadline = time.monotonic() + timeout_s
        while name not in self.status:
            if not proc.is_alive():
                raise ConfigurationError(
                    f"{name} exited with code {proc.exitcode} at start; "
                    f"see {self.cfg.var_dir / 'log' / (name + '.log')}"
                )
            if time.monotonic() > deadline:
                raise TemporaryError(f"{name} did not report within {timeout_s} s")
            await asyncio.sleep(0.05)

    async def _stop_component(self, name: str, timeout_s: float = 20) -> None:
        proc = self._procs.get(name)
        if proc is None or not proc.is_alive():
            return
        proc.terminate()  # SIGTERM: graceful stop
        deadline = time.monotonic() + timeout_s
        while proc.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if proc.is_alive():
            self.log.error("component_kill", component=name)
            proc.kill()
        proc.join(1)

    @property
    def halted(self) -> bool:
        """True while new orders are stopped (kill switch or halt)."""
        return bool(self.halted_by)

    @property
    def kill_engaged(self) -> bool:
        """True while the kill switch is engaged."""
        return self.halted_by == KILL_KEY

    @staticmethod
    def wall_ns() -> int:
        """Wall clock, ns since epoch UTC."""
        return time.time_ns()

    async def readiness(self) -> dict[str, Any]:
        """The ``/ready`` document: each condition, ``True``/``False``, or ``None`` when
        it is unknown, and ``ready`` (every known condition true, all components in).

        Conditions: ``components`` (every process reported in), ``feed_connected`` (the
        market-data stream is subscribed), ``data_fresh`` (a bar received less than
        :data:`DATA_FRESH_S` wall seconds ago), ``database`` (``SELECT 1`` answers),
        ``reconciled`` (the last reconciliation with the broker agreed; ``None`` before
        the first one).
        """
        feed = self.status.get("feed", {})
        last = feed.get("last_recv_ns") or 0
        missing = [n for n, _ in COMPONENTS if n not in self.status]
        parts: dict[str, bool | None] = {
            "components": not missing,
            "feed_connected": bool(feed.get("connected")),
            "data_fresh": bool(last) and (self.wall_ns() - last) / 1e9 < DATA_FRESH_S,
            "database": await asyncio.to_thread(self.database_reachable),
            "reconciled": self.reconciled(),
        }
        return {
            "ready": all(v is not False for v in parts.values()),
            "checks": parts,
            "waiting_for": missing,
            "unknown": [k for k, v in parts.items() if v is None],
        }

    def reconciled(self) -> bool | None:
        """Whether the last reconciliation with the broker (at start, then periodic)
        found the book and the broker in agreement; ``None`` before the first one."""
        if self.reconciler is None or self.reconciler.last is None:
            return None
        return bool(self.reconciler.last.ok)

    def risk_report(self) -> dict[str, Any]:
        """The ``/risk`` document: every limit in force, its current value and the
        utilisation ``value / limit`` (``None`` for per-order limits, which apply to
        each order rather than to a running total).

        Values come from the engine's last status snapshot: positions (shares, and
        shares x last price, USD), orders sent and not yet terminal, approved orders in
        the last 60 s, the day's loss (``max(0, -day P&L)``) and the drawdown from the
        day's peak P&L (USD).
        """
        eng = self.status.get("engine", {})
        limits = {}  # numeric limits; a section's as "section.key"
        for name, limit in self.cfg.risk.model_dump().items():
            leaves = limit.items() if isinstance(limit, dict) else [("", limit)]
            for key, v in leaves:
                if isinstance(v, int | float | Decimal) and not isinstance(v, bool):
                    limits[f"{name}.{key}" if key else name] = v
        positions = eng.get("positions", {})
        exposures = [Decimal(p["qty"]) * Decimal(p["last_price"] or 0) for p in positions.values()]
        qty = max((abs(Decimal(p["qty"])) for p in positions.values()), default=Decimal(0))
        notional = max(
            (abs(Decimal(p["qty"])) * Decimal(p["last_price"]) for p in positions.values()),
            default=Decimal(0),
        )
        cent = Decimal("0.01")
        day_pnl = Decimal(eng.get("day_pnl", "0"))
        peak = Decimal(repr(eng.get("day", {}).get("day_peak", 0.0)))
        current: dict[str, Decimal | int | None] = {
            "max_order_qty": None,
            "max_order_notional": None,
            "min_order_value": None,
            "max_orders_per_minute": eng.get("orders_last_minute", 0),
            "max_position_qty": qty,
            "max_position_notional": notional.quantize(cent),
            "max_open_orders": len(eng.get("pending", {})),
            "daily_loss_limit": max(Decimal(0), -day_pnl).quantize(cent),
            "max_intraday_drawdown": max(Decimal(0), peak - day_pnl).quantize(cent),
            "max_open_positions": sum(1 for e in exposures if e),
            "max_gross_exposure": sum((abs(e) for e in exposures), Decimal(0)).quantize(cent),
            "max_net_exposure": abs(sum(exposures, Decimal(0))).quantize(cent),
            "var.max_var": None if eng.get("var") is None else Decimal(eng["var"]).quantize(cent),
        }
        out: dict[str, Any] = {}
        for name, limit in limits.items():
            value = current.get(name)
            out[name] = {
                "limit": str(limit),
                "value": None if value is None else str(value),
                "utilisation": None
                if value is None or not limit
                else round(float(Decimal(value) / Decimal(limit)), 4),
            }
        return {"limits": out, "halted_by": self.halted_by}

    def _record_pnl(self) -> None:
        eng = self.status.get("engine")
        if not eng or not eng.get("bars"):
            return
        point = {
            "ts": self.wall_ns(),
            "bar_ts": eng.get("last_bar_ts"),
            "realized_pnl": eng.get("realized_pnl", "0"),
            "unrealized_pnl": eng.get("unrealized_pnl", "0"),
            "day_pnl": eng.get("day_pnl", "0"),
        }
        last = self.pnl_history[-1] if self.pnl_history else None
        if last is None or any(point[k] != last[k] for k in ("bar_ts", "realized_pnl")):
            self.pnl_history.append(point)

    def describe(self) -> dict[str, Any]:
        """The ``/status`` document."""
        return {
            "mode": self.mode,
            "session_id": self.session_id,
            "strategy": self.artefact.strategy,
            "strategy_version": self.artefact.version,
            "symbol": self.cfg.symbol,
            "kill_switch": self.kill_engaged,
            "halted": self.halted,
            "halted_by": self.halted_by,
            "reconciliation": (
                self.reconciler.last.to_status()
                if self.reconciler is not None and self.reconciler.last is not None
                else {"reconciled": False, "breaks": [], "at_ns": None}
            ),
            "broker_url": self.broker.trading_url if hasattr(self, "broker") else None,
            "components": self.status,
        }

    # -- kill switch ---------------------------------------------------------------------
    async def kill(
        self, reason: str, by: str, timeout_s: float = 15, *, flatten: bool = False
    ) -> dict[str, Any]:
        """Engage the kill switch: persist it, audit it, halt the engine and execution,
        wait until the broker reports no open order and, with ``flatten``, send a market
        order closing every position (:meth:`live.execution.Execution.flatten`).

        Returns
        -------
        dict
            ``{"halted": True, "broker_open_orders": int, "confirmed": bool,
            "flattened": [closing orders] or None}``.
        """
        self.halted_by = KILL_KEY
        self._persist_stop(KILL_KEY, True, reason, by, flatten)
        self.audit.emit("kill", reason=reason, metadata={"by": by, "flatten": flatten})
        self.audit.flush()
        kill_id = uuid.uuid4().hex
        self.control.send(
            pack(
                {
                    "cmd": "kill",
                    "kill_id": kill_id,
                    "reason": reason,
                    "by": by,
                    "flatten": flatten,
                }
            )
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ex = self.status.get("execution", {})
            if ex.get("kill_ack") == kill_id:
                left = ex["broker_open_orders"]
                return {
                    "halted": True,
                    "broker_open_orders": left,
                    "confirmed": left == 0,
                    "flattened": ex.get("flattened"),
                }
            await asyncio.sleep(0.02)
        return {"halted": True, "broker_open_orders": None, "confirmed": False, "flattened": None}

    async def set_limits(self, changes: dict[str, Any], by: str) -> dict[str, Any]:
        """Put changed risk limits in force (``PUT /limits``): validate, then send them to
        the engine's gate (which audits the change as ``risk_limits``) and to execution's
        pre-wire caps. The change lasts for the session; ``config/risk.toml`` is unchanged.

        Returns
        -------
        dict
            The limits now in force (JSON form).

        Raises
        ------
        ConfigurationError
            Unknown key, wrong type, negative or inconsistent value (named in the message).
        """
        limits = update_limits(self.cfg.risk, changes)
        self.cfg = self.cfg.model_copy(update={"risk": limits})
        dumped = limits.model_dump(mode="json")
        self.control.send(pack({"cmd": "set_limits", "limits": dumped, "by": by}))
        self.log.warning("limits_changed", by=by, changes=sorted(changes))
        return dumped

    async def halt(self, reason: str, by: str) -> dict[str, Any]:
        """Stop new orders without cancelling the open ones (persisted across restarts
        and audited as ``halt``); released by :meth:`resume`. Under an engaged kill
        switch it changes nothing but the record.

        Returns
        -------
        dict
            ``{"halted": True, "halted_by": str, "open_orders": int}``; ``open_orders``
            are the orders execution still tracks as working.
        """
        if not self.kill_engaged:
            self.halted_by = HALT_KEY
        self._persist_stop(HALT_KEY, True, reason, by)
        self.audit.emit("halt", reason=reason, metadata={"by": by})
        self.control.send(pack({"cmd": "halt", "reason": reason, "by": by}))
        self.log.warning("halt", reason=reason, by=by)
        open_orders = len(self.status.get("execution", {}).get("open_orders", []))
        return {"halted": True, "halted_by": self.halted_by, "open_orders": open_orders}

    async def resume(self, by: str) -> dict[str, Any]:
        """Release the kill switch and the halt (persisted and audited). Breaks of the
        last reconciliation that halted trading count as seen: they are accepted
        (audited) and only a new break halts again."""
        self.halted_by = ""
        for key in (KILL_KEY, HALT_KEY):
            self._persist_stop(key, False, "resume", by)
        if self.reconciler is not None and self.reconciler.last and not self.reconciler.last.ok:
            self.reconciler.accept(f"{by} (resume)")
        self.audit.emit("resume", metadata={"by": by})
        self.audit.flush()
        self.control.send(pack({"cmd": "resume", "by": by}))
        return {"halted": False}

    # -- run -----------------------------------------------------------------------------
    def _progress(self, bar: tqdm[Any], sim: dict[str, Any]) -> None:
        eng, ex = self.status.get("engine", {}), self.status.get("execution", {})
        if sim.get("bars_total"):
            bar.total = sim["bars_total"]
        bar.n = eng.get("bars", 0)
        ts = eng.get("last_bar_ts") or 0
        when = (
            pd.Timestamp(ts, tz="UTC").tz_convert("America/New_York").strftime("%Y-%m-%d %H:%M ET")
            if ts
            else "waiting for bars"
        )
        pos = eng.get("positions", {}).get(self.cfg.symbol, {}).get("qty", "0")
        state = (
            f"orders {ex.get('submitted', 0)} fills {ex.get('fills', 0)} "
            f"pos {pos} realized {Decimal(eng.get('realized_pnl', 0)):+.2f} "
            f"unrealized {Decimal(eng.get('unrealized_pnl', 0)):+.2f}"
            f"{' ' + self.halted_by.upper() if self.halted else ''}"
        )
        if not bar.disable:  # a terminal: one live status line
            bar.set_description_str(when, refresh=False)
            bar.set_postfix_str(state, refresh=False)
            bar.refresh()
        elif time.monotonic() - self._last_line >= 10:  # a log: a line per 10 s
            self._last_line = time.monotonic()
            bar.write(f"{when}  bars {bar.n}/{bar.total}  {state}")

    async def run(self) -> dict[str, Any]:
        """Run the session until the duration, the end of the replay, SIGINT/SIGTERM, or a
        component failure; return the session summary."""
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop, f"signal {sig.name}")
        self.dsn = self._start_database()
        self.halted_by = self._restore_stop()
        self._sql(
            "INSERT INTO sessions (session_id, mode, strategy, strategy_version) VALUES "
            "(%s, %s, %s, %s)",
            (self.session_id, self.mode, self.artefact.strategy, self.artefact.version),
        )
        self.broker = self._broker()
        bus = Bus(_ipc_dir(cfg.var_dir, self.session_id))
        self.ctx = ComponentContext(
            self.session_id,
            cfg,
            bus,
            self.broker,
            self.dsn,
            secrets.token_bytes(32),
            self.halted_by,
        )
        zctx = zmq.asyncio.Context()
        zsync = zmq.Context()  # non-blocking sends (no high-water mark): control and audit
        self.control = socket(zsync, zmq.PUB, bus.addr("control"), bind=True)
        status_pull = socket(zctx, zmq.PULL, bus.addr("status"), bind=True)
        status_task = asyncio.create_task(self._read_status(status_pull))
        self.audit = AuditEmitter(bus, self.session_id, "daemon", zsync)
        bar = tqdm(
            total=0,
            unit="bar",
            file=sys.stdout,
            disable=not sys.stdout.isatty(),
            dynamic_ncols=True,
        )
        runner: web.AppRunner | None = None
        exec_task: asyncio.Task[None] | None = None
        started = time.monotonic()
        rest = AlpacaREST(self.broker.trading_url, self.broker.key_id, self.broker.secret_key)
        async with aiohttp.ClientSession() as http, rest:
            self.reconciler = Reconciler(rest, self.dsn, self.audit)
            recon_task: asyncio.Task[None] | None = None
            last_recon = last_snapshot = time.monotonic()
            try:
                if self._sim is not None:
                    await self._wait_sim(http)
                if self.halted:
                    what = "KILL SWITCH ENGAGED" if self.kill_engaged else "HALTED"
                    bar.write(f"{what} (persisted): no new orders until 'python -m live resume'")
                for name, target in COMPONENTS:
                    if name == "execution":  # the writer runs: reconcile before trading
                        await self._reconcile_at_start(bar)
                    await self._start_component(name, target)
                    if name == "engine":
                        bar.write(describe_warmup(self.status["engine"].get("warmup", {})))
                    if name == "execution":
                        exec_sub = socket(zctx, zmq.SUB, bus.addr("exec"), subscribe=b"")
                        exec_task = asyncio.create_task(self._read_exec(exec_sub, bar))
                runner = await self._serve_control()
                bar.write(
                    f"session {self.session_id} mode={self.mode} strategy="
                    f"{self.artefact.strategy} v{self.artefact.version} "
                    f"control={self.control_url}"
                )
                while not self._stop.is_set():
                    dead = [n for n, p in self._procs.items() if not p.is_alive()]
                    if dead == ["audit"]:  # stateless: restart it; producers re-send
                        self.log.error(
                            "audit_writer_restart", exitcode=self._procs["audit"].exitcode
                        )
                        bar.write("audit writer died: restarting it (nothing is lost)")
                        self.status.pop("audit", None)
                        await self._start_component("audit", run_writer)
                        continue
                    if dead:
                        self.request_stop(
                            f"component(s) died: {dead} (exit codes "
                            f"{[self._procs[n].exitcode for n in dead]})"
                        )
                        break
                    self.audit.service()
                    now = time.monotonic()
                    if now - last_snapshot >= cfg.recovery.snapshot_interval_s:
                        last_snapshot = now
                        self._snapshot()
                    if now - last_recon >= cfg.recovery.reconcile_interval_s and (
                        recon_task is None or recon_task.done()
                    ):
                        last_recon = now
                        recon_task = asyncio.create_task(self._reconcile_periodic(bar))
                    sim = await self._sim_status(http) if self._sim is not None else {}
                    self._progress(bar, sim)
                    self._record_pnl()
                    if cfg.duration_s and time.monotonic() - started >= cfg.duration_s:
                        self.request_stop(f"duration {cfg.duration_s:g} s reached")
                    elif sim.get("done") and self.status.get("engine", {}).get(
                        "bars", 0
                    ) >= sim.get("bars_sent", 0):
                        self.request_stop("end of the replayed data")
                    await wait_for_event(self._stop, 0.5)
            finally:
                bar.write(f"stopping: {self._stop_reason or 'start-up failed'}")
                for name in ("feed", "execution", "engine"):
                    await self._stop_component(name)
                self._snapshot()
                self.audit.close(timeout_s=3.0)
                await self._stop_component("audit")
                await asyncio.sleep(0.3)  # last status snapshots
                if runner is not None:
                    await runner.cleanup()
                for t in (status_task, exec_task, recon_task):
                    if t is not None:
                        t.cancel()
                bar.close()
                zctx.destroy(linger=0)
                zsync.destroy(linger=2000)
                self.summary = await self._summarize(http)
                self._stop_sim()
                if self._pg is not None and os.environ.get("TRADER_KEEP_PG") != "1":
                    self._pg.stop()
        return self.summary

    # -- recovery ------------------------------------------------------------------------
    async def _reconcile_at_start(self, bar: tqdm[Any]) -> None:
        """Settle earlier sessions' orders, apply missed fills, compare positions; refuse
        to trade on a break unless ``accept_breaks``; then hand the restored book to the
        engine.

        Raises
        ------
        UnresolvedBreaks
            A break and no ``--accept-breaks``.
        """
        assert self.reconciler is not None
        report = await self.reconciler.run(self.session_id, at_start=True)
        for b in report.breaks:
            bar.write(f"RECONCILIATION BREAK ({b.kind}): {b.detail}")
        if report.breaks:
            if not self.accept_breaks:
                await self.reconciler.drain()
                raise UnresolvedBreaks(
                    f"{len(report.breaks)} reconciliation break(s) with the broker: "
                    + "; ".join(b.detail for b in report.breaks)
                    + ". Resolve them, or start with --accept-breaks to trade anyway."
                )
            self.reconciler.accept("operator (--accept-breaks)")
            bar.write("reconciliation breaks accepted by the operator (--accept-breaks)")
        await self.reconciler.drain()
        state = restore(self.dsn)
        self.ctx = dataclasses.replace(self.ctx, restored=state.engine_state())
        bar.write(
            f"reconciled: {report.orders_settled} earlier order(s) settled, "
            f"{report.fills_applied} missed fill(s) applied, positions "
            f"{ {s: str(p.qty) for s, p in state.ledger.positions.items()} }"
        )

    async def _send_fills(self, fills: list[dict[str, Any]]) -> None:
        self.control.send(pack({"cmd": "fills", "fills": fills}))

    async def _reconcile_periodic(self, bar: tqdm[Any]) -> None:
        """Reconcile in-session; a break not accepted before halts new orders (the
        :meth:`halt` of the operator, ``by="reconciler"``: persisted, audited, released by
        :meth:`resume`). Nothing is cancelled or flattened."""
        assert self.reconciler is not None
        try:
            report = await self.reconciler.run(
                self.session_id, at_start=False, apply_fills=self._send_fills
            )
        except (TemporaryError, OrderRejected, psycopg.Error) as e:
            self.log.error("reconciliation_failed", error=str(e))
            return
        # accepted as of now: a resume while the run was in flight accepted its breaks
        new = [b for b in report.breaks if b.key not in self.reconciler.accepted]
        report.accepted = report.accepted or (bool(report.breaks) and not new)
        for b in new:
            bar.write(f"RECONCILIATION BREAK ({b.kind}): {b.detail}")
        self.log.info("reconciled", **report.to_status())
        if new and not self.halted:
            reason = "reconciliation break: " + "; ".join(f"{b.kind}: {b.detail}" for b in new)
            await self.halt(reason, by="reconciler")
            bar.write(f"HALTED ({reason}): no new orders until 'python -m live resume'")

    def _snapshot(self) -> None:
        """Store the engine's positions in ``position_snapshots`` and its risk state."""
        eng = self.status.get("engine")
        if not eng:
            return
        try:
            with psycopg.connect(self.dsn, autocommit=True, connect_timeout=2) as conn:
                conn.cursor().executemany(
                    "INSERT INTO position_snapshots (ts, session_id, symbol, qty, avg_price,"
                    " last_price, realized_pnl, unrealized_pnl) VALUES (now(), %s, %s, %s, %s,"
                    " %s, %s, %s) ON CONFLICT DO NOTHING",
                    [
                        (
                            self.session_id,
                            s,
                            p["qty"],
                            p["avg_price"],
                            None if p["last_price"] == "None" else p["last_price"],
                            p["realized_pnl"],
                            p["unrealized_pnl"],
                        )
                        for s, p in eng.get("positions", {}).items()
                    ],
                )
        except psycopg.Error as e:
            self.log.error("snapshot_failed", error=str(e))
        self._persist_engine_state(eng, every=True)

    def _persist_engine_state(self, eng: dict[str, Any], *, every: bool = False) -> None:
        """Store the risk state the engine reports in its status snapshot ``eng``: the
        circuit breaker (``BREAKER_KEY``) whenever it changes (every transition, the
        probe sent; the engine reports right after the bar that changed it), the day
        record (``DAY_KEY``) at once when the session changes, otherwise (the peak moves
        on every bar) only with ``every`` (the snapshots' schedule and the stop)."""
        day = eng.get("day") or {}
        stored_day = self._persisted.get(DAY_KEY) or {}
        changed = []
        if eng.get("circuit_breaker") and eng["circuit_breaker"] != self._persisted.get(
            BREAKER_KEY
        ):
            changed.append((BREAKER_KEY, eng["circuit_breaker"]))
        if day.get("session") and (every or day["session"] != stored_day.get("session")):
            changed.append((DAY_KEY, day))
        for key, value in changed:
            try:
                persist(self.dsn, key, value)
                self._persisted[key] = value
            except psycopg.Error as e:
                self.log.error("persist_failed", key=key, error=str(e))

    def request_stop(self, reason: str) -> None:
        """Ask the session to stop (idempotent)."""
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop.set()

    async def _serve_control(self) -> web.AppRunner:
        c = self.cfg.control
        if c.port and not port_is_free(c.port, c.host):
            raise ConfigurationError(
                f"control API port {c.host}:{c.port} is in use (another "
                "daemon?); set [control] port in config/live.toml"
            )
        runner = web.AppRunner(
            make_control_app(self, control_token(self.cfg.var_dir)), access_log=None
        )
        await runner.setup()
        site = web.TCPSite(runner, c.host, c.port)
        await site.start()
        port = runner.addresses[0][1]
        self.control_url = f"http://{c.host}:{port}"
        (self.cfg.var_dir / "control.url").write_text(self.control_url)
        return runner

    def _stop_sim(self) -> None:
        if self._sim is not None and self._sim.poll() is None:
            self._sim.terminate()
            try:
                self._sim.wait(10)
            except subprocess.TimeoutExpired:
                self._sim.kill()

    async def _summarize(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        eng, ex = self.status.get("engine", {}), self.status.get("execution", {})
        counts = dict(
            self._sql(
                "SELECT event_type, count(*) FROM order_audit_trail WHERE "
                "session_id = %s GROUP BY 1 ORDER BY 1",
                (self.session_id,),
            )
        )
        broker_positions: dict[str, str] = {}
        try:
            async with http.get(
                f"{self.broker.trading_url}/v2/positions",
                headers={
                    "APCA-API-KEY-ID": self.broker.key_id,
                    "APCA-API-SECRET-KEY": self.broker.secret_key,
                },
            ) as r:
                broker_positions = {p["symbol"]: p["qty"] for p in await r.json()}
        except (aiohttp.ClientError, ValueError, KeyError):
            pass
        summary = {
            "session_id": self.session_id,
            "mode": self.mode,
            "stop_reason": self._stop_reason,
            "bars": eng.get("bars", 0),
            "last_bar_ts": eng.get("last_bar_ts"),
            "warmup": eng.get("warmup"),
            "orders_submitted": ex.get("submitted", 0),
            "fills": ex.get("fills", 0),
            "orders_rejected": ex.get("rejected", 0),
            "risk_denials": eng.get("denied", 0),
            "broker_open_orders_at_stop": ex.get("broker_open_orders"),
            "positions": {s: p["qty"] for s, p in eng.get("positions", {}).items()},
            "broker_positions": broker_positions,
            "realized_pnl": eng.get("realized_pnl", "0"),
            "unrealized_pnl": eng.get("unrealized_pnl", "0"),
            "audit_rows": sum(counts.values()),
            "audit_rows_by_event": counts,
            "audit_spooled": self.status.get("audit", {}).get("spooled", 0),
            "tick_to_intent_us_p50": eng.get("tick_to_intent_us_p50"),
            "tick_to_intent_us_p99": eng.get("tick_to_intent_us_p99"),
        }
        self._sql(
            "UPDATE sessions SET ended_at = now(), summary = %s WHERE session_id = %s",
            (json.dumps(summary), self.session_id),
        )
        (self.cfg.var_dir / "control.url").unlink(missing_ok=True)
        return summary


def describe_warmup(w: dict[str, Any]) -> str:
    """One line on the engine's strategy warm-up (its status snapshot's ``warmup``)."""
    if w.get("status") == "warm":
        return (
            f"strategy warmed up on {w['bars']} bars of the broker's history "
            f"({w['before_session']} before the session, {w['in_session']} in it) in "
            f"{w['fetch_s'] + w['step_s']:.2f} s; target {w['target']:g}"
        )
    return f"STRATEGY STARTED COLD (degraded): {w.get('reason', w)}"


def format_summary(s: dict[str, Any]) -> str:
    """Render a session summary for the terminal."""
    lines = [
        f"session {s['session_id']} ({s['mode']}) stopped: {s['stop_reason']}",
        f"  bars {s['bars']}  orders {s['orders_submitted']}  fills {s['fills']}  "
        f"rejected {s['orders_rejected']}  risk denials {s['risk_denials']}",
        f"  open orders at the broker after stop: {s['broker_open_orders_at_stop']}",
        f"  positions {s['positions'] or '{}'}  (broker: {s['broker_positions'] or '{}'})",
        f"  realized P&L {Decimal(s['realized_pnl']):+.2f} USD  "
        f"unrealized P&L {Decimal(s['unrealized_pnl']):+.2f} USD",
        f"  audit rows written {s['audit_rows']} {s['audit_rows_by_event']}",
    ]
    if s.get("tick_to_intent_us_p50") is not None:
        lines.append(
            f"  tick->intent p50 {s['tick_to_intent_us_p50']:.0f} us  "
            f"p99 {s['tick_to_intent_us_p99']:.0f} us"
        )
    return "\n".join(lines)
