"""Alpaca v2 client: REST (aiohttp) with idempotent order submission and client-side
rate limiting, and the ``trade_updates`` and market-data websocket streams with
reconnection and a stale-feed watchdog.

Shapes, errors and stream protocols follow Alpaca's API reference as summarised in
``shared/reference/alpaca.md`` (REST ``/v2/orders``, ``/v2/positions``, ``/v2/account``,
``/v2/clock``, ``/v2/stocks/bars``; ``/stream`` ``authenticate``/``listen``; market data v2
``auth``/``subscribe``). Requests pass :class:`live.ratelimit.RateLimiter` (orders before
queries); idempotent reads are retried with jittered exponential backoff (tenacity); a
POST never is (see :meth:`AlpacaREST.submit_order_idempotent`).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from live.ratelimit import Priority, RateLimiter
from trader.exceptions import OrderRejected, TemporaryError

DUPLICATE_CLIENT_ORDER_ID = "client_order_id must be unique"
DATA_URL = "https://data.alpaca.markets"
#: Attempts of an idempotent read (GET) before its TemporaryError is raised.
READ_ATTEMPTS = 5
#: Alpaca's largest page of ``GET /v2/orders``.
MAX_ORDERS_PAGE = 500


class RateLimited(TemporaryError):
    """HTTP 429: the request was not processed; retry after the reset."""


class FeedStale(TemporaryError):
    """No market data for longer than the watchdog allows while the market is open."""


def backoff_delay(attempt: int, base: float = 0.25, cap: float = 30.0) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)] seconds
    (M. Brooker, "Exponential Backoff And Jitter", AWS Architecture Blog, 2015)."""
    return random.uniform(0.0, min(cap, base * 2.0**attempt))


class AlpacaREST:
    """Asynchronous Alpaca Trading API v2 client.

    Parameters
    ----------
    base_url : str
        ``https://paper-api.alpaca.markets`` or the simulator's URL (no ``/v2``).
    key_id, secret_key : str
        Sent as ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY``; never logged.
    timeout_s : float
        Per-request timeout, seconds.
    limiter : RateLimiter, optional
        Shared by every request of this client (default: 180/min, burst 20).
    data_url : str, optional
        Market-data REST base for :meth:`bars` (default: ``base_url`` when it is not
        Alpaca's, i.e. the simulator, else ``https://data.alpaca.markets``).
    """

    def __init__(
        self,
        base_url: str,
        key_id: str,
        secret_key: str,
        timeout_s: float = 10.0,
        *,
        limiter: RateLimiter | None = None,
        data_url: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        alpaca = self.base_url.endswith(".alpaca.markets")
        self.data_url = (data_url or (DATA_URL if alpaca else self.base_url)).rstrip("/")
        self._headers = {"APCA-API-KEY-ID": key_id, "APCA-API-SECRET-KEY": secret_key}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self.limiter = limiter or RateLimiter()

    async def __aenter__(self) -> AlpacaREST:
        self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        base: str | None = None,
    ) -> Any:
        """Send one request (after the rate limiter); return the decoded JSON (None for
        an empty body). Order submission, replacement and cancellation go first.

        Raises
        ------
        RateLimited
            429 (the limiter then pauses every request until the reset).
        TemporaryError
            Timeout, connection failure or 5xx: the outcome is unknown or retryable.
        OrderRejected
            Any other non-2xx; ``status`` and Alpaca's ``code`` are attached.
        """
        assert self._session is not None, "use 'async with AlpacaREST(...)'"
        url = f"{base or self.base_url}/v2{path}"
        ordering = method != "GET" and path.startswith("/orders")
        await self.limiter.acquire(Priority.ORDER if ordering else Priority.QUERY)
        try:
            async with self._session.request(method, url, params=params, json=body) as r:
                text = await r.text()
                status = r.status
                self.limiter.observe(status, r.headers)
        except (TimeoutError, aiohttp.ClientError) as e:
            raise TemporaryError(f"{method} {path}: {type(e).__name__}: {e}") from e
        if status == 429:
            raise RateLimited(f"{method} {path}: HTTP 429: {text[:200]}")
        if status >= 500:
            raise TemporaryError(f"{method} {path}: HTTP {status}: {text[:200]}")
        if status >= 400:
            try:
                err = json.loads(text)
                code, message = err.get("code"), err.get("message", text)
            except ValueError:
                code, message = None, text
            raise OrderRejected(
                f"{method} {path}: HTTP {status}: {message}", status=status, code=code
            )
        return json.loads(text) if text else None

    async def get(
        self, path: str, params: dict[str, str] | None = None, *, base: str | None = None
    ) -> Any:
        """An idempotent GET, retried on :class:`TemporaryError` (429, 5xx, timeouts) up
        to :data:`READ_ATTEMPTS` times with full-jitter exponential backoff."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(TemporaryError),
            wait=wait_random_exponential(multiplier=0.1, max=5.0),
            stop=stop_after_attempt(READ_ATTEMPTS),
            reraise=True,
        ):
            with attempt:
                return await self.request("GET", path, params=params, base=base)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def submit_order(self, order: dict[str, Any]) -> dict[str, Any]:
        """``POST /v2/orders`` once; see :meth:`submit_order_idempotent` for the safe form."""
        result: dict[str, Any] = await self.request("POST", "/orders", body=order)
        return result

    async def get_order_by_client_id(self, client_order_id: str) -> dict[str, Any] | None:
        """``GET /v2/orders:by_client_order_id``; None if the broker has no such order."""
        try:
            result: dict[str, Any] = await self.request(
                "GET", "/orders:by_client_order_id", params={"client_order_id": client_order_id}
            )
        except OrderRejected as e:
            if e.status == 404:
                return None
            raise
        return result

    async def submit_order_idempotent(
        self, order: dict[str, Any], *, max_attempts: int = 6
    ) -> dict[str, Any]:
        """Submit an order without ever creating it twice.

        ``order["client_order_id"]`` must be set. A POST is never blindly retried: after a
        timeout, connection error, 429 or 5xx the order is looked up by its
        ``client_order_id`` and re-sent only if the broker never saw it (the same id is
        reused, so a late-arriving first POST makes the second a 422 duplicate). A 422
        "client_order_id must be unique" is resolved by the same lookup.

        Raises
        ------
        OrderRejected
            The broker refused the order.
        TemporaryError
            The broker stayed unreachable for ``max_attempts`` tries.
        """
        coid = order["client_order_id"]
        last: Exception | None = None
        for attempt in range(max_attempts):
            try:
                return await self.submit_order(order)
            except OrderRejected as e:
                if e.status != 422 or DUPLICATE_CLIENT_ORDER_ID not in str(e):
                    raise
                last = e
            except TemporaryError as e:
                last = e
            await asyncio.sleep(backoff_delay(attempt))
            try:
                found = await self.get_order_by_client_id(coid)
            except TemporaryError as e:
                last = e
                continue
            if found is not None:
                return found
        raise TemporaryError(f"order {coid}: broker unreachable after {max_attempts} tries: {last}")

    async def get_order(self, order_id: str, *, nested: bool = True) -> dict[str, Any]:
        """``GET /v2/orders/{order_id}`` (legs nested)."""
        result: dict[str, Any] = await self.get(
            f"/orders/{order_id}", {"nested": "true" if nested else "false"}
        )
        return result

    async def list_orders(
        self,
        status: str = "open",
        limit: int = MAX_ORDERS_PAGE,
        *,
        after: str | None = None,
        until: str | None = None,
        direction: str = "desc",
        symbols: list[str] | None = None,
        side: str | None = None,
        nested: bool = False,
    ) -> list[dict[str, Any]]:
        """``GET /v2/orders`` with Alpaca's filters: ``status`` open|closed|all, at most
        ``limit`` (<= 500) orders submitted strictly between ``after`` and ``until``
        (RFC 3339), ``direction`` asc|desc by submission time."""
        params = {"status": status, "limit": str(limit), "direction": direction}
        params |= {"nested": "true" if nested else "false"}
        for name, value in (("after", after), ("until", until), ("side", side)):
            if value is not None:
                params[name] = value
        if symbols:
            params["symbols"] = ",".join(symbols)
        result: list[dict[str, Any]] = await self.get("/orders", params)
        return result

    async def all_orders(self, status: str = "all", *, after: str | None = None) -> list[dict]:
        """Every order (oldest first) submitted after ``after``, read page by page.

        Alpaca pages by submission time: each next page starts 1 µs before the last
        order's ``submitted_at`` (``after`` is exclusive, and orders may share a
        microsecond) and orders already seen are skipped.

        Raises
        ------
        TemporaryError
            A full page brought no new order (more than 500 orders in one microsecond).
        """
        seen: dict[str, dict[str, Any]] = {}
        while True:
            page = await self.list_orders(
                status, MAX_ORDERS_PAGE, after=after, direction="asc", nested=False
            )
            fresh = [o for o in page if o["id"] not in seen]
            seen.update((o["id"], o) for o in fresh)
            if len(page) < MAX_ORDERS_PAGE:
                return list(seen.values())
            if not fresh:
                raise TemporaryError(f"order paging stuck after {after}")
            last = datetime.fromisoformat(page[-1]["submitted_at"].replace("Z", "+00:00"))
            after = (last - timedelta(microseconds=1)).isoformat()

    async def cancel_order(self, order_id: str) -> None:
        """``DELETE /v2/orders/{order_id}`` (204). 422 ``order is not cancelable`` is
        raised as :class:`OrderRejected` (it filled or was canceled already)."""
        await self.request("DELETE", f"/orders/{order_id}")

    async def cancel_all_orders(self) -> list[dict[str, Any]]:
        """``DELETE /v2/orders``: request cancellation of every open order (207 body)."""
        result: list[dict[str, Any]] = await self.request("DELETE", "/orders") or []
        return result

    async def fill_activities(self, after: str | None = None) -> list[dict[str, Any]]:
        """``GET /v2/account/activities/FILL`` from ``after`` (RFC 3339) on, oldest first,
        every page (``page_size`` 100, ``page_token`` = the last activity id)."""
        out: list[dict[str, Any]] = []
        params = {"direction": "asc", "page_size": "100"}
        if after:
            params["after"] = after
        while True:
            page: list[dict[str, Any]] = await self.get("/account/activities/FILL", params)
            out.extend(page)
            if len(page) < 100:
                return out
            params["page_token"] = str(page[-1]["id"])

    async def replace_order(self, order_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """``PATCH /v2/orders/{order_id}`` with ``qty``/``limit_price``/``stop_price``/
        ``trail``/``time_in_force``/``client_order_id``; returns the new order."""
        result: dict[str, Any] = await self.request("PATCH", f"/orders/{order_id}", body=changes)
        return result

    async def positions(self) -> list[dict[str, Any]]:
        """``GET /v2/positions``."""
        result: list[dict[str, Any]] = await self.get("/positions")
        return result

    async def close_position(
        self, symbol: str, *, qty: str | None = None, percentage: str | None = None
    ) -> dict[str, Any]:
        """``DELETE /v2/positions/{symbol}`` (all of it, ``qty`` shares or ``percentage``
        percent): the liquidating order. Never retried (it submits an order)."""
        params = {k: v for k, v in (("qty", qty), ("percentage", percentage)) if v is not None}
        result: dict[str, Any] = await self.request(
            "DELETE", f"/positions/{symbol}", params=params or None
        )
        return result

    async def close_all_positions(self, *, cancel_orders: bool = False) -> list[dict[str, Any]]:
        """``DELETE /v2/positions[?cancel_orders=true]`` (207 body, one entry a symbol)."""
        params = {"cancel_orders": "true"} if cancel_orders else None
        result: list[dict[str, Any]] = await self.request("DELETE", "/positions", params=params)
        return result

    async def account(self) -> dict[str, Any]:
        """``GET /v2/account``."""
        result: dict[str, Any] = await self.get("/account")
        return result

    async def clock(self) -> dict[str, Any]:
        """``GET /v2/clock``: ``timestamp``, ``is_open``, ``next_open``, ``next_close``."""
        result: dict[str, Any] = await self.get("/clock")
        return result

    async def bars(
        self,
        symbols: list[str],
        timeframe: str,
        start: str,
        end: str | None = None,
        *,
        feed: str = "iex",
        limit: int | None = None,
        sort: str = "asc",
    ) -> dict[str, list[dict[str, Any]]]:
        """``GET /v2/stocks/bars`` following ``next_page_token`` to the end (or until
        ``limit`` bars in all).

        Parameters
        ----------
        symbols : list of str
        timeframe : str
            ``1Min``, ``1Hour``, ``1Day``, ... (Alpaca's strings).
        start, end : str
            RFC 3339 times or dates; bars whose start lies in ``[start, end]``.
        feed : str
            ``iex``, ``sip``, ...: the market-data feed (the stream's, for a warm-up).
        limit : int, optional
            At most this many bars in all (each page asks for what is left, <= 10,000).
        sort : str
            ``asc`` (oldest first) or ``desc`` (newest first, e.g. the last ``limit``
            bars before ``end``).

        Returns
        -------
        dict
            The bars of each symbol in ``sort`` order, Alpaca's JSON objects (``t``,
            ``o``, ``h``, ``l``, ``c``, ``v``, ...).

        Raises
        ------
        TemporaryError
            The data API stayed unreachable (or 429/5xx) through the retries.
        OrderRejected
            A 4xx answer (bad parameter, not authorized).
        """
        out: dict[str, list[dict[str, Any]]] = {}
        token: str | None = None
        got = 0
        while True:
            params = {"symbols": ",".join(symbols), "timeframe": timeframe, "start": start}
            params |= {"feed": feed, "limit": str(min(10_000, (limit or 10_000 + got) - got))}
            params["sort"] = sort
            if end is not None:
                params["end"] = end
            if token is not None:
                params["page_token"] = token
            page = await self.get("/stocks/bars", params, base=self.data_url)
            for symbol, rows in (page.get("bars") or {}).items():
                out.setdefault(symbol, []).extend(rows)
                got += len(rows)
            token = page.get("next_page_token")
            if token is None or (limit is not None and got >= limit):
                return out


async def _decode_frames(
    ws: aiohttp.ClientWebSocketResponse,
    idle_s: float | None = None,
    market_open: Callable[[], bool] | None = None,
) -> AsyncIterator[Any]:
    """Decode JSON text or binary frames until the connection closes.

    Raises
    ------
    FeedStale
        No frame for ``idle_s`` seconds while ``market_open()`` says the market is open
        (outside market hours the wait simply goes on).
    """
    while True:
        try:
            m = await ws.receive(timeout=idle_s)
        except TimeoutError:
            if market_open is None or market_open():
                raise FeedStale(f"no market data for {idle_s:g} s during market hours") from None
            continue
        if m.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            yield json.loads(m.data)
        elif m.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSING,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.ERROR,
        ):
            break


async def trade_updates(
    url: str,
    key_id: str,
    secret_key: str,
    connected: asyncio.Event | None = None,
    on_listening: Callable[[int], None] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Yield the ``data`` of every ``trade_updates`` message, reconnecting forever.

    Frames may be text or binary JSON. ``connected`` is set while a listening
    connection is up and cleared when it drops; ``on_listening(n)`` is called each time
    the stream is listening (``n`` counts connections from 1), so a caller can backfill
    over REST what it missed while the stream was down.
    """
    connections = 0
    attempt = 0
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.ws_connect(url, heartbeat=10.0) as ws:
                    await ws.send_json(
                        {
                            "action": "authenticate",
                            "data": {"key_id": key_id, "secret_key": secret_key},
                        }
                    )
                    await ws.send_json({"action": "listen", "data": {"streams": ["trade_updates"]}})
                    async for msg in _decode_frames(ws):
                        stream = msg.get("stream")
                        if stream == "authorization" and msg["data"]["status"] != "authorized":
                            raise TemporaryError(f"trade_updates: not authorized: {msg}")
                        if stream == "listening":
                            attempt = 0
                            connections += 1
                            if connected is not None:
                                connected.set()
                            if on_listening is not None:
                                on_listening(connections)
                        elif stream == "trade_updates":
                            yield msg["data"]
            except (aiohttp.ClientError, TemporaryError, ValueError, KeyError):
                pass
            if connected is not None:
                connected.clear()
            await asyncio.sleep(backoff_delay(attempt))
            attempt += 1


async def market_data(
    url: str,
    key_id: str,
    secret_key: str,
    bars: list[str],
    connected: asyncio.Event | None = None,
    *,
    stale_after_s: float | None = None,
    market_open: Callable[[], bool] | None = None,
    on_reconnect: Callable[[str], None] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Yield every data message (``T`` in b/q/t/...) of the market-data v2 stream (JSON),
    after ``auth`` and ``subscribe`` to ``bars``; reconnect forever with backoff.

    Control messages are consumed; an ``error`` message ends the connection and
    triggers a reconnect. ``connected`` is set while a subscribed connection is up and
    cleared when it drops. The stale-feed watchdog: with ``stale_after_s`` set, a
    connection that delivers nothing for that long while ``market_open()`` is true is
    dropped and reopened. ``on_reconnect(reason)`` is called before every reconnect.
    """
    attempt = 0
    async with aiohttp.ClientSession() as session:
        while True:
            reason = "closed by the server"
            try:
                async with session.ws_connect(url, heartbeat=10.0) as ws:
                    await ws.send_json({"action": "auth", "key": key_id, "secret": secret_key})
                    await ws.send_json({"action": "subscribe", "bars": bars})
                    async for batch in _decode_frames(ws, stale_after_s, market_open):
                        for msg in batch if isinstance(batch, list) else [batch]:
                            kind = msg.get("T")
                            if kind == "error":
                                raise TemporaryError(f"market data error: {msg}")
                            if kind == "subscription":
                                attempt = 0
                                if connected is not None:
                                    connected.set()
                            elif kind not in ("success",):
                                yield msg
            except (aiohttp.ClientError, TemporaryError, ValueError) as e:
                reason = f"{type(e).__name__}: {e}"
            if connected is not None:
                connected.clear()
            if on_reconnect is not None:
                on_reconnect(reason)
            await asyncio.sleep(backoff_delay(attempt))
            attempt += 1
