"""The simulator's aiohttp server: Alpaca Trading API v2 REST, the ``trade_updates``
stream, the market-data v2 stream and historical bars, over a replay of real 1-minute bars.

Protocols and shapes follow ``shared/reference/alpaca.md``:

* REST (§2-§3) under ``/v2``: orders, positions, account, clock. Errors are JSON
  ``{"code", "message"}``; every trading response carries ``X-Ratelimit-Limit``,
  ``X-Ratelimit-Remaining`` and ``X-Ratelimit-Reset`` (per key and wall-clock minute; the
  limit is Alpaca's 200 per minute of simulated time, i.e. ``200 * speed`` per wall
  minute, or ``rate_limit`` when set, and only then are requests past it refused with
  429).
* ``/stream`` (§4): ``authenticate`` / ``listen`` with ``trade_updates``; JSON in binary
  frames like Alpaca's server (msgpack if the upgrade says ``Content-Type:
  application/msgpack``).
* ``/v2/{iex,sip,delayed_sip,test}`` (§5): ``connected``, ``auth``, ``subscribe`` /
  ``unsubscribe``; JSON text frames, or msgpack with the ``Content-Type`` header (bar
  ``t`` then a msgpack Timestamp). Only minute bars (``T: "b"``) of the configured symbol
  are ever sent; subscriptions to the other channels are acknowledged and stay silent.
  Header authentication (``APCA-API-KEY-ID``/``APCA-API-SECRET-KEY`` on the upgrade) is
  accepted. Every feed replays the same bars (``/v2/test`` sends no ``FAKEPACA`` data).
* ``GET /v2/stocks/bars`` (§6): ``timeframe=1Min`` only, bars that have already ended in
  simulated time (no look-ahead), paged with ``next_page_token``.
* ``GET /sim/status`` (not Alpaca, no auth): replay progress for the daemon.

Simulated time is the replayed market time. Before the replay starts it stands at the
first bar's start; each bar is published at its end (start + 60 s) after ``60 / speed``
wall seconds, and between publications the clock runs at ``speed`` (never reaching the
next publication), so the market reads closed between sessions. The replay starts on
the first market-data subscription to bars, or with the server if ``autostart``. Per
bar: (1) open orders are matched (:meth:`SimBroker.on_bar`) and the trade updates sent,
(2) the bar is sent to its subscribers, (3) after the last bar of a New York day the
session is closed (``day`` orders expire).

Authentication: if ``APCA_API_KEY_ID`` and ``APCA_API_SECRET_KEY`` are set when the app
is created, only that pair is accepted; otherwise any non-empty pair.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgpack
import numpy as np
import pandas as pd
from aiohttp import WSMsgType, web

from live.sim.broker import (
    BAR_NS,
    NS_PER_S,
    SimAPIError,
    SimBroker,
    fmt,
    invalid,
    rfc3339,
    to_decimal,
)
from live.sim.config import SimConfig
from trader.data.loaders import load_minute_bars
from trader.exceptions import ConfigurationError

log = logging.getLogger(__name__)

NEW_YORK = ZoneInfo("America/New_York")
RATE_LIMIT = 200
CODE_RATE_LIMITED = 42910000
#: Bars per page of ``/v2/stocks/bars`` at most (Alpaca: 10000; tests lower it).
MAX_BARS_PER_PAGE = 10_000
DEFAULT_BARS_LIMIT = 1000
FEEDS = ("iex", "sip", "delayed_sip", "test")
_FEED_PATHS = {f"/v2/{feed}" for feed in FEEDS}
#: Market-data channels a client may subscribe to; ``corrections`` and ``cancelErrors``
#: follow ``trades``.
CHANNELS = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses", "lulds")
_MSGPACK = "application/msgpack"
_UNAUTHORIZED = {"code": 40110000, "message": "request is not authorized"}
_DATA_FORBIDDEN = {"code": 40310000, "message": "forbidden"}


def _wants_msgpack(request: web.Request) -> bool:
    return request.headers.get("Content-Type", "").lower().startswith(_MSGPACK)


def _ny(ns: int) -> datetime:
    """ns since the epoch as a New York datetime (microsecond precision)."""
    return datetime.fromtimestamp(ns // NS_PER_S, NEW_YORK).replace(
        microsecond=ns % NS_PER_S // 1000
    )


def _session(day: date) -> tuple[int, int]:
    """Regular session of a New York date: (09:30, 16:00) as ns since the epoch."""
    open_, close = (
        datetime(day.year, day.month, day.day, hh, mm, tzinfo=NEW_YORK)
        for hh, mm in ((9, 30), (16, 0))
    )
    return int(open_.timestamp()) * NS_PER_S, int(close.timestamp()) * NS_PER_S


def parse_time(name: str, value: str) -> int:
    """Parse an RFC 3339 timestamp or a date (UTC if naive) to ns since the epoch.

    Raises
    ------
    SimAPIError
        422 naming ``name`` if ``value`` does not parse.
    """
    error = invalid(f"{name} is not an RFC 3339 timestamp or a date: {value!r}")
    try:
        ts = pd.Timestamp(value.replace(" ", "+"))  # an unencoded '+' arrives as ' '
    except ValueError:
        raise error from None
    if pd.isna(ts):
        raise error
    return int((ts if ts.tzinfo is not None else ts.tz_localize("UTC")).value)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("replay failed", exc_info=task.exception())


class _Conn:
    """One websocket client and its encoding (msgpack, or JSON in text/binary frames)."""

    def __init__(self, ws: web.WebSocketResponse, use_msgpack: bool, json_binary: bool) -> None:
        self.ws = ws
        self.msgpack = use_msgpack
        self.json_binary = json_binary

    def decode(self, msg: Any) -> Any:
        """Decode a client frame; raises ValueError on garbage."""
        try:
            if msg.type == WSMsgType.BINARY and self.msgpack:
                return msgpack.unpackb(msg.data)
            return json.loads(msg.data)
        except Exception as e:
            raise ValueError(str(e)) from e

    async def send(self, obj: Any) -> None:
        """Encode and send one message."""
        if self.msgpack:
            await self.send_frame(msgpack.packb(obj))
        else:
            text = json.dumps(obj)
            await self.send_frame(text.encode() if self.json_binary else text)

    async def send_frame(self, frame: str | bytes) -> None:
        """Send an encoded frame; a vanished client is ignored (its handler cleans up)."""
        try:
            if isinstance(frame, bytes):
                await self.ws.send_bytes(frame)
            else:
                await self.ws.send_str(frame)
        except (ConnectionError, RuntimeError):
            pass


class _DataClient(_Conn):
    """A market-data stream client with its subscriptions (channel -> symbols)."""

    def __init__(self, ws: web.WebSocketResponse, use_msgpack: bool) -> None:
        super().__init__(ws, use_msgpack, json_binary=False)
        self.authenticated = False
        #: Fault injection: the connection stays open but is sent nothing any more.
        self.stalled = False
        self.subs: dict[str, list[str]] = {c: [] for c in CHANNELS}

    def wants_bar(self, symbol: str) -> bool:
        return (
            self.authenticated
            and not self.stalled
            and any(s in ("*", symbol) for s in self.subs["bars"])
        )

    def subscription(self) -> list[dict[str, Any]]:
        trades = list(self.subs["trades"])
        return [{"T": "subscription", **self.subs, "corrections": trades, "cancelErrors": trades}]


class SimState:
    """Everything the app shares: bars, broker, clients, replay progress, clock.

    Parameters
    ----------
    config : SimConfig

    Raises
    ------
    ConfigurationError
        The data file is missing, invalid, or has no bars in ``[start, end]``.
    """

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.faults = random.Random(config.fault_seed)
        self.faults_injected = {
            "5xx": 0,
            "429": 0,
            "rate_limited": 0,
            "lost_response": 0,
            "ws_drops": 0,
            "stalled": 0,
        }
        if not config.data_path.is_file():
            raise ConfigurationError(f"simulator data file not found: {config.data_path}")
        df = load_minute_bars(config.data_path, session="regular")
        index = pd.DatetimeIndex(df.index)
        days = np.asarray(index.tz_convert(NEW_YORK).date)
        self.ts: np.ndarray = index.as_unit("ns").asi8
        self.ohlcv: np.ndarray = df[["open", "high", "low", "close", "volume"]].to_numpy()
        (replay,) = np.nonzero((days >= config.start) & (days <= config.end))
        if len(replay) == 0:
            raise ConfigurationError(
                f"{config.data_path}: no regular-session bars from {config.start} to {config.end}"
            )
        self.first, self.stop = int(replay[0]), int(replay[-1]) + 1
        #: Indices of the last replayed bar of each New York day.
        self.session_ends = {
            i for i in range(self.first, self.stop) if i + 1 == self.stop or days[i + 1] != days[i]
        }
        dates = sorted(set(days[self.first : self.stop]))
        after = dates[-1] + timedelta(days=1)
        while after.weekday() >= 5:  # a session to point next_open at after the data
            after += timedelta(days=1)
        self.sessions = [_session(d) for d in [*dates, after]]
        # Before the first bar: the last close before the replay, else the first open.
        before = self.ohlcv[self.first - 1, 3] if self.first else self.ohlcv[self.first, 0]
        self.broker = SimBroker(
            config.symbol,
            config.initial_cash,
            reference_price=to_decimal(float(before)),
            now_ns=int(self.ts[self.first]),
        )
        self.broker.open_position(config.initial_position_qty, config.initial_cost_basis)
        key, secret = os.environ.get("APCA_API_KEY_ID"), os.environ.get("APCA_API_SECRET_KEY")
        self.credentials = (key, secret) if key and secret else None
        self.trade_clients: set[_Conn] = set()
        self.data_clients: set[_DataClient] = set()
        self.sockets: set[web.WebSocketResponse] = set()
        self.rate: dict[str, tuple[int, int]] = {}
        self.task: asyncio.Task[None] | None = None
        self.fault_task: asyncio.Task[None] | None = None
        self.done = False
        self.bars_sent = 0
        self._anchor_ns = int(self.ts[self.first])  # sim time at the last publication
        self._anchor_wall: float | None = None  # wall time of it (None: clock stopped)

    # -- time ------------------------------------------------------------------------
    def now_ns(self) -> int:
        """Simulated time, ns since the epoch UTC (see the module docstring)."""
        if self._anchor_wall is None:
            return self._anchor_ns
        elapsed = int((time.monotonic() - self._anchor_wall) * self.config.speed * NS_PER_S)
        return self._anchor_ns + min(elapsed, BAR_NS - 1000)

    def clock(self) -> dict[str, Any]:
        """The Alpaca Clock object at the simulated time (New York offsets)."""
        now = self.now_ns()
        is_open = any(o <= now < c for o, c in self.sessions)
        next_open = next(o for o, _ in self.sessions if o > now)
        next_close = next(c for _, c in self.sessions if c > now)
        return {
            "timestamp": _ny(now).isoformat(),
            "is_open": is_open,
            "next_open": _ny(next_open).isoformat(),
            "next_close": _ny(next_close).isoformat(),
        }

    def authorized(self, key: object, secret: object) -> bool:
        """Whether an API key pair is accepted."""
        if self.credentials is not None:
            return (key, secret) == self.credentials
        return isinstance(key, str) and isinstance(secret, str) and bool(key and secret)

    # -- faults ----------------------------------------------------------------------
    def schedule_stall(self, client: _DataClient) -> None:
        """Fault injection: silence ``client`` ``fault_stall_s`` seconds from now."""
        delay = self.config.fault_stall_s
        if delay and not client.stalled:

            def stall() -> None:
                if client in self.data_clients and not client.stalled:
                    client.stalled = True
                    self.faults_injected["stalled"] += 1

            asyncio.get_running_loop().call_later(delay, stall)

    async def drop_sockets_forever(self, every_s: float) -> None:
        """Fault injection: close every websocket (trade and data) every ``every_s`` s."""
        while True:
            await asyncio.sleep(every_s)
            for ws in list(self.sockets):
                self.faults_injected["ws_drops"] += 1
                await ws.close(code=1011, message=b"injected fault: connection dropped")

    # -- replay ----------------------------------------------------------------------
    def start_replay(self) -> None:
        """Start the replay task (idempotent)."""
        if self.task is None:
            self._anchor_wall = time.monotonic()
            self.task = asyncio.get_running_loop().create_task(self._replay())
            self.task.add_done_callback(_log_failure)

    async def _replay(self) -> None:
        interval = 60.0 / self.config.speed
        t0 = time.monotonic()
        for k, i in enumerate(range(self.first, self.stop)):
            await asyncio.sleep(max(0.0, t0 + (k + 1) * interval - time.monotonic()))
            ts = int(self.ts[i])
            self._anchor_ns, self._anchor_wall = ts + BAR_NS, time.monotonic()
            events = self.broker.on_bar(
                ts,
                *map(float, self.ohlcv[i]),
                first=i - 1 in self.session_ends or i == self.first,
                last=i in self.session_ends,
            )
            await self.publish_trades(events)
            await self._publish_bar(i)
            self.bars_sent += 1
            if i in self.session_ends:
                await self.publish_trades(self.broker.end_session(ts + BAR_NS))
        self.broker.end_of_data()
        self._anchor_wall = None
        self.done = True

    async def publish_trades(self, events: Iterable[dict[str, Any]]) -> None:
        """Send trade updates to every listening ``/stream`` client."""
        for event in events:
            msg = {"stream": "trade_updates", "data": event}
            for conn in list(self.trade_clients):
                await conn.send(msg)

    async def _publish_bar(self, i: int) -> None:
        symbol = self.config.symbol
        bar = {"T": "b", "S": symbol, **self._bar_json(i)}
        as_json = json.dumps([bar])
        bar["t"] = msgpack.Timestamp.from_unix_nano(int(self.ts[i]))
        as_msgpack = msgpack.packb([bar])
        for client in list(self.data_clients):
            if client.wants_bar(symbol):
                await client.send_frame(as_msgpack if client.msgpack else as_json)

    def status(self) -> dict[str, Any]:
        """The ``/sim/status`` body."""
        last = self.first + self.bars_sent - 1
        return {
            "symbol": self.config.symbol,
            "started": self.task is not None,
            "done": self.done,
            "bars_sent": self.bars_sent,
            "bars_total": self.stop - self.first,
            "replay_ts": rfc3339(int(self.ts[last])) if self.bars_sent else None,
            "last_price": fmt(to_decimal(float(self.ohlcv[last, 3]))) if self.bars_sent else None,
            "faults_injected": dict(self.faults_injected),
        }

    # -- historical bars -------------------------------------------------------------
    def bars_page(
        self,
        symbols: list[str],
        start_ns: int | None,
        end_ns: int | None,
        limit: int,
        descending: bool,
        page_token: str | None,
    ) -> dict[str, Any]:
        """One page of ``GET /v2/stocks/bars`` (only bars ended by the simulated time)."""
        if self.config.symbol not in symbols:
            return {"bars": {}, "next_page_token": None}
        ts = self.ts
        lo = 0 if start_ns is None else int(np.searchsorted(ts, start_ns, "left"))
        hi = int(np.searchsorted(ts, self.now_ns() - BAR_NS, "right"))
        if end_ns is not None:
            hi = min(hi, int(np.searchsorted(ts, end_ns, "right")))
        if page_token is not None:
            at = self._decode_token(page_token)
            if descending:
                hi = min(hi, int(np.searchsorted(ts, at, "right")))
            else:
                lo = max(lo, int(np.searchsorted(ts, at, "left")))
        rows = range(hi - 1, lo - 1, -1) if descending else range(lo, hi)
        page, rest = rows[:limit], rows[limit:]
        bars = [self._bar_json(i) for i in page]
        return {
            "bars": {self.config.symbol: bars} if bars else {},
            "next_page_token": self._encode_token(int(ts[rest[0]])) if rest else None,
        }

    def _bar_json(self, i: int) -> dict[str, Any]:
        o, h, lo, c, v = (float(x) for x in self.ohlcv[i])
        t = rfc3339(int(self.ts[i]))
        return {"t": t, "o": o, "h": h, "l": lo, "c": c, "v": int(v), "n": None, "vw": None}

    def _encode_token(self, ts: int) -> str:
        return base64.urlsafe_b64encode(f"{self.config.symbol}:{ts}".encode()).decode()

    def _decode_token(self, token: str) -> int:
        try:
            symbol, ts = base64.urlsafe_b64decode(token.encode()).decode().split(":")
            if symbol == self.config.symbol:
                return int(ts)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            pass
        raise SimAPIError(400, 40010001, f"invalid page_token {token!r}")


STATE = web.AppKey("sim_state", SimState)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- middlewares -------------------------------------------------------------------------
def _is_trading(path: str) -> bool:
    return (
        path.startswith("/v2/") and not path.startswith("/v2/stocks/") and path not in _FEED_PATHS
    )


@web.middleware
async def _faults(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Inject the configured faults into trading REST requests (see :class:`SimConfig`)."""
    state = request.app[STATE]
    cfg = state.config
    if not _is_trading(request.path):
        return await handler(request)
    if cfg.fault_latency_s:
        await asyncio.sleep(cfg.fault_latency_s)
    if state.faults.random() < cfg.fault_5xx_rate:
        state.faults_injected["5xx"] += 1
        return web.json_response(
            {"code": 50310000, "message": "injected fault: service unavailable"}, status=503
        )
    response = await handler(request)
    if state.faults.random() < cfg.fault_lost_response_rate:
        state.faults_injected["lost_response"] += 1
        if request.transport is not None:
            request.transport.close()  # processed, but the client never hears back
    return response


@web.middleware
async def _rate_limit(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Count trading requests per key and wall-clock minute and add Alpaca's
    ``X-Ratelimit-*`` headers to every answer (429s included); past the limit, refuse
    with 429 if ``rate_limit`` is set (otherwise only count); inject 429s at
    ``fault_429_rate``."""
    if not _is_trading(request.path):
        return await handler(request)
    state = request.app[STATE]
    cfg = state.config
    limit = cfg.rate_limit or max(1, round(RATE_LIMIT * cfg.speed))  # per simulated minute
    key, now = request.headers.get("APCA-API-KEY-ID", ""), time.time()
    reset, count = state.rate.get(key, (0, 0))
    if now >= reset:
        reset, count = (int(now) // 60 + 1) * 60, 0
    state.rate[key] = (reset, count + 1)
    headers = {
        "X-Ratelimit-Limit": str(limit),
        "X-Ratelimit-Remaining": str(max(0, limit - count - 1)),
        "X-Ratelimit-Reset": str(reset),
    }
    limited = cfg.rate_limit is not None and count >= limit
    injected = not limited and state.faults.random() < cfg.fault_429_rate
    if limited or injected:
        state.faults_injected["rate_limited" if limited else "429"] += 1
        body = {"code": CODE_RATE_LIMITED, "message": "rate limit exceeded"}
        return web.json_response(body, status=429, headers=headers)
    try:
        response = await handler(request)
    except SimAPIError as e:
        response = web.json_response(e.body, status=e.status)
    response.headers.update(headers)
    return response


@web.middleware
async def _errors(request: web.Request, handler: _Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except SimAPIError as e:
        return web.json_response(e.body, status=e.status)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return web.json_response(
            {"code": int(f"{e.status}10000"), "message": e.reason.lower()}, status=e.status
        )
    except Exception as e:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response(
            {"code": 50010000, "message": f"internal server error: {type(e).__name__}"}, status=500
        )


@web.middleware
async def _auth(request: web.Request, handler: _Handler) -> web.StreamResponse:
    path = request.path
    if path.startswith("/v2/") and path not in _FEED_PATHS:
        h = request.headers
        if not request.app[STATE].authorized(
            h.get("APCA-API-KEY-ID"), h.get("APCA-API-SECRET-KEY")
        ):
            if path.startswith("/v2/stocks/"):
                return web.json_response(_DATA_FORBIDDEN, status=403)
            return web.json_response(_UNAUTHORIZED, status=401)
    return await handler(request)


# -- REST --------------------------------------------------------------------------------
def _state(request: web.Request) -> SimState:
    return request.app[STATE]


async def _json_body(request: web.Request) -> Any:
    try:
        return json.loads(await request.text())
    except ValueError:
        raise invalid("request body is not valid JSON") from None


def _choice(query: Any, name: str, allowed: tuple[str, ...], default: str | None) -> str | None:
    value = query.get(name, default)
    if value is not None and value not in allowed:
        raise invalid(f"invalid {name} {value!r}: must be one of {', '.join(allowed)}")
    return value


def _bool(query: Any, name: str, default: bool) -> bool:
    """A boolean query parameter; alpaca-py sends ``True``/``False`` (alpaca.md §2)."""
    raw = query.get(name)
    if raw is None:
        return default
    if raw.lower() not in ("true", "false"):
        raise invalid(f"{name} must be true or false, got {raw!r}")
    return bool(raw.lower() == "true")


def _int(query: Any, name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(f"{name} must be an integer, got {raw!r}") from None
    if value < low:
        raise invalid(f"{name} must be >= {low}, got {value}")
    return min(value, high)


async def account(request: web.Request) -> web.Response:
    """``GET /v2/account``."""
    return web.json_response(_state(request).broker.account())


async def clock(request: web.Request) -> web.Response:
    """``GET /v2/clock``: the simulated market clock."""
    return web.json_response(_state(request).clock())


async def post_order(request: web.Request) -> web.Response:
    """``POST /v2/orders``."""
    state = _state(request)
    order, events = state.broker.submit_order(await _json_body(request), state.now_ns())
    await state.publish_trades(events)
    return web.json_response(order)


async def list_orders(request: web.Request) -> web.Response:
    """``GET /v2/orders`` with status/limit/after/until/direction/symbols/side."""
    q = request.query
    after, until, symbols = q.get("after"), q.get("until"), q.get("symbols")
    orders = _state(request).broker.list_orders(
        status=_choice(q, "status", ("open", "closed", "all"), "open") or "open",
        limit=_int(q, "limit", 50, 1, 500),
        after_ns=None if after is None else parse_time("after", after),
        until_ns=None if until is None else parse_time("until", until),
        direction=_choice(q, "direction", ("asc", "desc"), "desc") or "desc",
        symbols=None if symbols is None else [s for s in symbols.split(",") if s],
        side=_choice(q, "side", ("buy", "sell"), None),
        nested=_bool(q, "nested", False),
    )
    return web.json_response(orders)


async def cancel_orders(request: web.Request) -> web.Response:
    """``DELETE /v2/orders``: 207 with one entry per canceled order."""
    state = _state(request)
    results, events = state.broker.cancel_all(state.now_ns())
    await state.publish_trades(events)
    return web.json_response(results, status=207)


async def order_by_client_id(request: web.Request) -> web.Response:
    """``GET /v2/orders:by_client_order_id?client_order_id=...``."""
    client_id = request.query.get("client_order_id")
    if not client_id:
        raise invalid("client_order_id is required")
    return web.json_response(_state(request).broker.get_order_by_client_id(client_id))


async def get_order(request: web.Request) -> web.Response:
    """``GET /v2/orders/{order_id}``."""
    order_id, nested = request.match_info["order_id"], _bool(request.query, "nested", True)
    return web.json_response(_state(request).broker.get_order(order_id, nested=nested))


async def replace_order(request: web.Request) -> web.Response:
    """``PATCH /v2/orders/{order_id}``: the new order (``replaces`` the old one)."""
    state = _state(request)
    order, events = state.broker.replace_order(
        request.match_info["order_id"], await _json_body(request), state.now_ns()
    )
    await state.publish_trades(events)
    return web.json_response(order)


async def cancel_order(request: web.Request) -> web.Response:
    """``DELETE /v2/orders/{order_id}``: 204."""
    state = _state(request)
    events = state.broker.cancel_order(request.match_info["order_id"], state.now_ns())
    await state.publish_trades(events)
    return web.Response(status=204)


async def fill_activities(request: web.Request) -> web.Response:
    """``GET /v2/account/activities/FILL`` with after/direction/page_size/page_token."""
    q = request.query
    after = q.get("after")
    acts = _state(request).broker.fill_activities(
        after_ns=None if after is None else parse_time("after", after),
        direction=_choice(q, "direction", ("asc", "desc"), "desc") or "desc",
        page_size=_int(q, "page_size", 100, 1, 100),
        page_token=q.get("page_token"),
    )
    return web.json_response(acts)


async def drop_streams(request: web.Request) -> web.Response:
    """``POST /sim/drop_streams`` (simulator extension, for fault tests): close every
    websocket (trade updates and market data); clients reconnect."""
    sockets = list(_state(request).sockets)
    for ws in sockets:
        await ws.close(code=1012, message=b"dropped by /sim/drop_streams")
    return web.json_response({"dropped": len(sockets)})


async def positions(request: web.Request) -> web.Response:
    """``GET /v2/positions``."""
    return web.json_response(_state(request).broker.positions())


async def position(request: web.Request) -> web.Response:
    """``GET /v2/positions/{symbol_or_asset_id}``."""
    return web.json_response(_state(request).broker.position(request.match_info["symbol"]))


async def close_position(request: web.Request) -> web.Response:
    """``DELETE /v2/positions/{symbol_or_asset_id}[?qty=|percentage=]``: the closing order."""
    state, q = _state(request), request.query
    order, events = state.broker.close_position(
        request.match_info["symbol"],
        state.now_ns(),
        qty=q.get("qty"),
        percentage=q.get("percentage"),
    )
    await state.publish_trades(events)
    return web.json_response(order)


async def close_all_positions(request: web.Request) -> web.Response:
    """``DELETE /v2/positions[?cancel_orders=true]``: 207."""
    state = _state(request)
    cancel = _bool(request.query, "cancel_orders", False)
    results, events = state.broker.close_all(state.now_ns(), cancel_orders=cancel)
    await state.publish_trades(events)
    return web.json_response(results, status=207)


async def stock_bars(request: web.Request) -> web.Response:
    """``GET /v2/stocks/bars`` (multi-symbol form, ``timeframe=1Min``)."""
    q = request.query
    symbols = [s for s in q.get("symbols", "").split(",") if s]
    if not symbols:
        raise SimAPIError(400, 40010001, "symbols is required")
    timeframe = q.get("timeframe")
    if timeframe is None:
        raise SimAPIError(400, 40010001, "timeframe is required")
    if timeframe not in ("1Min", "1T"):
        raise SimAPIError(422, 42210000, f"timeframe {timeframe} is not supported (1Min only)")
    start, end = q.get("start"), q.get("end")
    try:
        start_ns = None if start is None else parse_time("start", start)
        end_ns = None if end is None else parse_time("end", end)
        limit = _int(q, "limit", DEFAULT_BARS_LIMIT, 1, 10_000)
        descending = _choice(q, "sort", ("asc", "desc"), "asc") == "desc"
    except SimAPIError as e:  # the data API answers invalid values with 400
        raise SimAPIError(400, e.body["code"], e.body["message"]) from None
    page = _state(request).bars_page(
        symbols, start_ns, end_ns, min(limit, MAX_BARS_PER_PAGE), descending, q.get("page_token")
    )
    return web.json_response(page)


async def sim_status(request: web.Request) -> web.Response:
    """``GET /sim/status`` (simulator extension)."""
    return web.json_response(_state(request).status())


# -- streams -----------------------------------------------------------------------------
async def trade_stream(request: web.Request) -> web.WebSocketResponse:
    """``/stream``: Alpaca's ``authenticate`` / ``listen`` protocol for ``trade_updates``."""
    state = _state(request)
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    conn = _Conn(ws, _wants_msgpack(request), json_binary=True)
    state.sockets.add(ws)
    authenticated = False
    try:
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            try:
                data = conn.decode(msg)
                action = data.get("action")
                payload = data.get("data") or {}
                if not isinstance(payload, dict):
                    raise ValueError("data must be an object")
            except (ValueError, AttributeError) as e:
                await conn.send({"stream": "error", "data": {"message": f"invalid syntax: {e}"}})
                continue
            if action == "authenticate":
                ok = state.authorized(payload.get("key_id"), payload.get("secret_key"))
                status = "authorized" if ok else "unauthorized"
                await conn.send(
                    {"stream": "authorization", "data": {"status": status, "action": action}}
                )
                if not ok:
                    break
                authenticated = True
            elif not authenticated:
                reply = {"status": "unauthorized", "action": action}
                await conn.send({"stream": "authorization", "data": reply})
            elif action == "listen":
                streams = payload.get("streams")
                if not isinstance(streams, list):
                    await conn.send(
                        {"stream": "error", "data": {"message": "listen: streams must be a list"}}
                    )
                    continue
                listening = [s for s in streams if s == "trade_updates"]
                (state.trade_clients.add if listening else state.trade_clients.discard)(conn)
                await conn.send({"stream": "listening", "data": {"streams": listening}})
            else:
                await conn.send(
                    {"stream": "error", "data": {"message": f"unknown action {action!r}"}}
                )
    finally:
        state.trade_clients.discard(conn)
        state.sockets.discard(ws)
        await ws.close()
    return ws


async def data_stream(request: web.Request) -> web.WebSocketResponse:
    """``/v2/{feed}``: Alpaca's market-data v2 stream protocol (bars only)."""
    state = _state(request)
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    client = _DataClient(ws, _wants_msgpack(request))
    state.sockets.add(ws)
    state.data_clients.add(client)

    async def error(code: int, message: str) -> None:
        await client.send([{"T": "error", "code": code, "msg": message}])

    try:
        await client.send([{"T": "success", "msg": "connected"}])
        h = request.headers
        if state.authorized(h.get("APCA-API-KEY-ID"), h.get("APCA-API-SECRET-KEY")):
            client.authenticated = True
            await client.send([{"T": "success", "msg": "authenticated"}])
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            try:
                data = client.decode(msg)
            except ValueError:
                await error(400, "invalid syntax")
                continue
            action = data.get("action") if isinstance(data, dict) else None
            if action == "auth":
                if client.authenticated:
                    await error(403, "already authenticated")
                elif state.authorized(data.get("key"), data.get("secret")):
                    client.authenticated = True
                    await client.send([{"T": "success", "msg": "authenticated"}])
                else:
                    await error(402, "auth failed")
                    break
            elif action in ("subscribe", "unsubscribe"):
                if not client.authenticated:
                    await error(401, "not authenticated")
                elif not _update_subscriptions(client, data):
                    await error(400, "invalid syntax")
                else:
                    await client.send(client.subscription())
                    if client.subs["bars"]:
                        state.start_replay()
                        state.schedule_stall(client)
            else:
                await error(400, "invalid syntax")
    finally:
        state.data_clients.discard(client)
        state.sockets.discard(ws)
        await ws.close()
    return ws


def _update_subscriptions(client: _DataClient, data: dict[str, Any]) -> bool:
    """Apply a subscribe/unsubscribe message; False (nothing changed) if malformed."""
    changes = {k: v for k, v in data.items() if k != "action"}
    valid = all(
        k in CHANNELS and isinstance(v, list) and all(isinstance(s, str) for s in v)
        for k, v in changes.items()
    )
    if not valid:
        return False
    for channel, symbols in changes.items():
        current = client.subs[channel]
        if data["action"] == "subscribe":
            current.extend(s for s in symbols if s not in current)
        else:
            client.subs[channel] = [s for s in current if s not in symbols]
    return True


# -- app ---------------------------------------------------------------------------------
def make_app(config: SimConfig) -> web.Application:
    """Build the simulator's aiohttp application (loads the bars).

    Parameters
    ----------
    config : SimConfig

    Returns
    -------
    aiohttp.web.Application
        Serving the routes listed in the module docstring.

    Raises
    ------
    ConfigurationError
        If the bars cannot be loaded or none fall in ``[start, end]``.
    """
    app = web.Application(middlewares=[_faults, _rate_limit, _errors, _auth])
    app[STATE] = SimState(config)
    r = app.router
    r.add_get("/v2/account", account)
    r.add_get("/v2/clock", clock)
    r.add_post("/v2/orders", post_order)
    r.add_get("/v2/orders", list_orders)
    r.add_delete("/v2/orders", cancel_orders)
    r.add_get("/v2/orders:by_client_order_id", order_by_client_id)
    r.add_get("/v2/orders/{order_id}", get_order)
    r.add_patch("/v2/orders/{order_id}", replace_order)
    r.add_delete("/v2/orders/{order_id}", cancel_order)
    r.add_get("/v2/account/activities/FILL", fill_activities)
    r.add_get("/v2/positions", positions)
    r.add_delete("/v2/positions", close_all_positions)
    r.add_get("/v2/positions/{symbol}", position)
    r.add_delete("/v2/positions/{symbol}", close_position)
    r.add_get("/v2/stocks/bars", stock_bars)
    r.add_get("/sim/status", sim_status)
    r.add_post("/sim/drop_streams", drop_streams)
    r.add_get("/stream", trade_stream)
    for path in sorted(_FEED_PATHS):
        r.add_get(path, data_stream)

    async def on_startup(app: web.Application) -> None:
        state = app[STATE]
        if config.autostart:
            state.start_replay()
        if config.fault_ws_drop_s:
            state.fault_task = asyncio.create_task(
                state.drop_sockets_forever(config.fault_ws_drop_s)
            )

    async def on_shutdown(app: web.Application) -> None:
        for ws in list(app[STATE].sockets):
            await ws.close(code=1001, message=b"server shutdown")

    async def on_cleanup(app: web.Application) -> None:
        tasks = [t for t in (app[STATE].task, app[STATE].fault_task) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return app


class SimServer:
    """The simulator as a running HTTP server (what ``python -m live.sim`` runs).

    Parameters
    ----------
    config : SimConfig

    Attributes
    ----------
    app : aiohttp.web.Application
    port : int
        The bound port (after :meth:`start`).
    url : str
        ``http://HOST:PORT``, no trailing slash: the ``url_override`` of alpaca-py's
        REST clients; ``ws://HOST:PORT/stream`` and ``ws://HOST:PORT/v2/iex`` are the streams.
    """

    def __init__(self, config: SimConfig) -> None:
        self.app = make_app(config)
        self.port = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Bind and serve (``port=0`` picks a free port)."""
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.port = int(self._runner.addresses[0][1])
        self.url = f"http://{host}:{self.port}"

    async def stop(self) -> None:
        """Close the websockets, stop the replay and release the port."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
