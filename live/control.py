"""The control API: the one way to observe and steer a running daemon.

HTTP on ``127.0.0.1:8787`` by default. Every request needs
``Authorization: Bearer <token>``, the token coming from ``TRADER_CONTROL_TOKEN`` or the
0600 file ``.var/control.token`` (created at the first start). The CLI
(``python -m live status|kill|resume``) and the notebook panels are clients of it.

=================  ====  =============================================================
path               verb  answer
=================  ====  =============================================================
``/health``        GET   200 while the daemon process runs
``/ready``         GET   200 when feed, engine, execution and audit writer report in
``/metrics``       GET   Prometheus text exposition
``/status``        GET   mode, session, strategy, kill switch, component snapshots
``/positions``     GET   the engine's positions (Decimal strings)
``/orders``        GET   the execution's open orders
``/fills``         GET   the engine's last 100 fills (signed shares, USD)
``/pnl``           GET   realized, unrealized and day P&L (USD, Decimal strings)
``/limits``        GET   the risk limits in force (``config/risk.toml``)
``/kill``          POST  halt new orders and cancel every open order; body
                         ``{"reason": str, "by": str}``; answers when the broker
                         reports no open order (or after 15 s with the count left)
``/resume``        POST  release the kill switch
=================  ====  =============================================================
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from live.daemon import Daemon

TOKEN_ENV = "TRADER_CONTROL_TOKEN"


def control_token(var_dir: Path) -> str:
    """Return the control token: ``$TRADER_CONTROL_TOKEN``, else ``.var/control.token``
    (created with mode 0600 if missing)."""
    env = os.environ.get(TOKEN_ENV)
    if env:
        return env
    path = var_dir / "control.token"
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


class _StatusCollector(Collector):
    """Exposes the components' latest status snapshots as Prometheus metrics."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        st = self.daemon.status
        eng, exe = st.get("engine", {}), st.get("execution", {})
        feed, audit = st.get("feed", {}), st.get("audit", {})
        g = GaugeMetricFamily("trader_kill_switch", "1 while the kill switch is engaged")
        g.add_metric([], 1.0 if self.daemon.halted else 0.0)
        yield g
        pos = GaugeMetricFamily("trader_position_shares", "position, shares", labels=["symbol"])
        for sym, p in eng.get("positions", {}).items():
            pos.add_metric([sym], float(p["qty"]))
        yield pos
        for name, key in (
            ("trader_realized_pnl_usd", "realized_pnl"),
            ("trader_unrealized_pnl_usd", "unrealized_pnl"),
            ("trader_day_pnl_usd", "day_pnl"),
        ):
            g = GaugeMetricFamily(name, f"{key.replace('_', ' ')}, USD")
            g.add_metric([], float(eng.get(key, 0)))
            yield g
        for name, snap, key, doc in (
            ("trader_bars", feed, "bars", "bars received by the feed"),
            ("trader_malformed_bars", feed, "malformed", "malformed bars dropped by the feed"),
            ("trader_order_intents", eng, "intents", "risk-approved order intents"),
            ("trader_risk_denials", eng, "denied", "risk-gate denials"),
            ("trader_orders_submitted", exe, "submitted", "orders sent to the broker"),
            ("trader_orders_rejected", exe, "rejected", "orders rejected by the broker"),
            ("trader_orders_refused", exe, "refused", "intents refused before the wire"),
            ("trader_fills", exe, "fills", "executions received"),
            ("trader_audit_events_written", audit, "written", "audit rows stored"),
            ("trader_audit_events_spooled", audit, "spooled", "audit events spooled to disk"),
        ):
            c = CounterMetricFamily(name, doc)
            c.add_metric([], float(snap.get(key, 0)))
            yield c
        for q in ("p50", "p99"):
            v = eng.get(f"tick_to_intent_us_{q}")
            g = GaugeMetricFamily(
                f"trader_tick_to_intent_{q}_us", f"tick to order intent latency {q}, microseconds"
            )
            g.add_metric([], float("nan") if v is None else float(v))
            yield g


def make_control_app(daemon: Daemon, token: str) -> web.Application:
    """Build the control API for ``daemon`` (see the module docstring for the routes)."""
    registry = CollectorRegistry()
    registry.register(_StatusCollector(daemon))

    @web.middleware
    async def auth(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            daemon.log.warning("control_unauthorized", path=request.path, remote=request.remote)
            return web.json_response({"error": "unauthorized"}, status=401)
        return await handler(request)

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "session_id": daemon.session_id})

    async def ready(_: web.Request) -> web.Response:
        missing = daemon.not_ready()
        return web.json_response(
            {"ready": not missing, "waiting_for": missing}, status=200 if not missing else 503
        )

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def status(_: web.Request) -> web.Response:
        return web.json_response(daemon.describe())

    async def positions(_: web.Request) -> web.Response:
        return web.json_response(daemon.status.get("engine", {}).get("positions", {}))

    async def orders(_: web.Request) -> web.Response:
        return web.json_response(daemon.status.get("execution", {}).get("open_orders", []))

    async def fills(_: web.Request) -> web.Response:
        return web.json_response(daemon.status.get("engine", {}).get("recent_fills", []))

    async def pnl(_: web.Request) -> web.Response:
        eng = daemon.status.get("engine", {})
        keys = ("realized_pnl", "unrealized_pnl", "day_pnl")
        return web.json_response({k: eng.get(k, "0") for k in keys})

    async def limits(_: web.Request) -> web.Response:
        return web.json_response(daemon.cfg.risk.model_dump(mode="json"))

    async def kill(request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json() if request.can_read_body else {}
        result = await daemon.kill(str(body.get("reason", "")), str(body.get("by", "api")))
        return web.json_response(result)

    async def resume(request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json() if request.can_read_body else {}
        return web.json_response(await daemon.resume(str(body.get("by", "api"))))

    app = web.Application(middlewares=[auth])
    app.add_routes(
        [
            web.get("/health", health),
            web.get("/ready", ready),
            web.get("/metrics", metrics),
            web.get("/status", status),
            web.get("/positions", positions),
            web.get("/orders", orders),
            web.get("/fills", fills),
            web.get("/pnl", pnl),
            web.get("/limits", limits),
            web.post("/kill", kill),
            web.post("/resume", resume),
        ]
    )
    return app
