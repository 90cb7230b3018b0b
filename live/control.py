"""The control API: the one way to observe and steer a running daemon.

HTTP on ``127.0.0.1:8787`` by default. Every request needs
``Authorization: Bearer <token>``, the token coming from ``TRADER_CONTROL_TOKEN`` or the
0600 file ``.var/control.token`` (created at the first start). The CLI
(``python -m live status|kill|resume``) and the notebook panels are clients of it.

=================  ====  =============================================================
path               verb  answer
=================  ====  =============================================================
``/health``        GET   200 while the daemon process runs
``/ready``         GET   200 when every known check passes, else 503; the checks:
                         components in, feed connected, data fresh, database
                         reachable, reconciled (``null`` before the first reconciliation)
``/metrics``       GET   Prometheus text exposition (:mod:`live.metrics`)
``/status``        GET   mode, session, strategy, kill switch, halt, component snapshots
``/positions``     GET   the engine's positions (Decimal strings)
``/orders``        GET   the execution's open orders
``/fills``         GET   the engine's last 100 fills (signed shares, USD)
``/pnl``           GET   realized, unrealized and day P&L (USD, Decimal strings)
``/pnl/history``   GET   P&L points of the last hour (``ts``/``bar_ts`` ns UTC, USD)
``/limits``        GET   the risk limits in force (``config/risk.toml``)
``/limits``        PUT   change some limits for this session; body ``{"limits": {name:
                         value, ...}, "by": str}``; validated as a whole (400 naming
                         the key otherwise), put in force by the gate and audited as
                         ``risk_limits``; answers the limits now in force
``/risk``          GET   each limit, its current value and utilisation (value / limit)
``/kill``          POST  stop new orders and cancel every open order; body
                         ``{"reason": str, "by": str, "flatten": bool}``; answers when
                         the broker reports no open order (or after 15 s with the
                         count left); ``flatten`` also closes every position
``/halt``          POST  stop new orders, leave the open ones working; body
                         ``{"reason": str, "by": str}``
``/resume``        POST  release the kill switch and the halt
=================  ====  =============================================================

Kill, halt and resume are persisted (``risk_state``) and audited.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from live.metrics import StatusCollector
from trader.exceptions import ConfigurationError

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


def make_control_app(daemon: Daemon, token: str) -> web.Application:
    """Build the control API for ``daemon`` (see the module docstring for the routes)."""
    registry = CollectorRegistry()
    registry.register(StatusCollector(daemon))

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
        doc = await daemon.readiness()
        return web.json_response(doc, status=200 if doc["ready"] else 503)

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

    async def pnl_history(_: web.Request) -> web.Response:
        return web.json_response(list(daemon.pnl_history))

    async def limits(_: web.Request) -> web.Response:
        return web.json_response(daemon.cfg.risk.model_dump(mode="json"))

    async def put_limits(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("limits"), dict):
            return web.json_response(
                {"error": 'body must be {"limits": {name: value, ...}, "by": str}'}, status=400
            )
        try:
            result = await daemon.set_limits(body["limits"], str(body.get("by", "api")))
        except ConfigurationError as e:
            return web.json_response({"error": str(e)}, status=400)
        return web.json_response(result)

    async def risk(_: web.Request) -> web.Response:
        return web.json_response(daemon.risk_report())

    async def kill(request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json() if request.can_read_body else {}
        flatten = body.get("flatten", False)
        if not isinstance(flatten, bool):
            return web.json_response({"error": "flatten must be true or false"}, status=400)
        result = await daemon.kill(
            str(body.get("reason", "")), str(body.get("by", "api")), flatten=flatten
        )
        return web.json_response(result)

    async def halt(request: web.Request) -> web.Response:
        body: dict[str, Any] = await request.json() if request.can_read_body else {}
        result = await daemon.halt(str(body.get("reason", "")), str(body.get("by", "api")))
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
            web.get("/pnl/history", pnl_history),
            web.get("/limits", limits),
            web.put("/limits", put_limits),
            web.get("/risk", risk),
            web.post("/kill", kill),
            web.post("/halt", halt),
            web.post("/resume", resume),
        ]
    )
    return app
