"""Alpaca v2 client: REST (aiohttp) with idempotent order submission, and the
``trade_updates`` and market-data websocket streams with reconnection.

Shapes, errors and stream protocols follow Alpaca's API reference as summarised in
``shared/reference/alpaca.md`` (REST ``/v2/orders``, ``/v2/positions``, ``/v2/account``;
``/stream`` ``authenticate``/``listen``; market data v2 ``auth``/``subscribe``).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from trader.exceptions import OrderRejected, TemporaryError

DUPLICATE_CLIENT_ORDER_ID = "client_order_id must be unique"


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
    """

    def __init__(self, base_url: str, key_id: str, secret_key: str, timeout_s: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self._headers = {"APCA-API-KEY-ID": key_id, "APCA-API-SECRET-KEY": secret_key}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

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
    ) -> Any:
        """Send one request; return the decoded JSON (None for an empty body).

        Raises
        ------
        TemporaryError
            Timeout, connection failure, 429 or 5xx: the outcome is unknown or retryable.
        OrderRejected
            Any other non-2xx; ``status`` and Alpaca's ``code`` are attached.
        """
        assert self._session is not None, "use 'async with AlpacaREST(...)'"
        url = f"{self.base_url}/v2{path}"
        try:
            async with self._session.request(method, url, params=params, json=body) as r:
                text = await r.text()
                status = r.status
        except (TimeoutError, aiohttp.ClientError) as e:
            raise TemporaryError(f"{method} {path}: {type(e).__name__}: {e}") from e
        if status == 429 or status >= 500:
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

    async def list_orders(self, status: str = "open", limit: int = 500) -> list[dict[str, Any]]:
        """``GET /v2/orders?status=...`` (open|closed|all), newest first."""
        result: list[dict[str, Any]] = await self.request(
            "GET", "/orders", params={"status": status, "limit": str(limit)}
        )
        return result

    async def cancel_all_orders(self) -> list[dict[str, Any]]:
        """``DELETE /v2/orders``: request cancellation of every open order (207 body)."""
        result: list[dict[str, Any]] = await self.request("DELETE", "/orders") or []
        return result

    async def cancel_order(self, order_id: str) -> None:
        """``DELETE /v2/orders/{order_id}`` (204; 422 if it is no longer cancelable)."""
        await self.request("DELETE", f"/orders/{order_id}")

    async def get_order(self, order_id: str) -> dict[str, Any]:
        """``GET /v2/orders/{order_id}``."""
        result: dict[str, Any] = await self.request("GET", f"/orders/{order_id}")
        return result

    async def fill_activities(self, after: str | None = None) -> list[dict[str, Any]]:
        """``GET /v2/account/activities/FILL`` from ``after`` (RFC 3339) on, oldest first,
        every page (``page_size`` 100, ``page_token`` = the last activity id)."""
        out: list[dict[str, Any]] = []
        params = {"direction": "asc", "page_size": "100"}
        if after:
            params["after"] = after
        while True:
            page: list[dict[str, Any]] = await self.request(
                "GET", "/account/activities/FILL", params=params
            )
            out.extend(page)
            if len(page) < 100:
                return out
            params["page_token"] = str(page[-1]["id"])

    async def positions(self) -> list[dict[str, Any]]:
        """``GET /v2/positions``."""
        result: list[dict[str, Any]] = await self.request("GET", "/positions")
        return result

    async def account(self) -> dict[str, Any]:
        """``GET /v2/account``."""
        result: dict[str, Any] = await self.request("GET", "/account")
        return result


async def _decode_frames(ws: aiohttp.ClientWebSocketResponse) -> AsyncIterator[Any]:
    async for m in ws:
        if m.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            yield json.loads(m.data)
        elif m.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
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
) -> AsyncIterator[dict[str, Any]]:
    """Yield every data message (``T`` in b/q/t/...) of the market-data v2 stream (JSON),
    after ``auth`` and ``subscribe`` to ``bars``; reconnect forever with backoff.

    Control messages are consumed; an ``error`` message ends the connection and
    triggers a reconnect. ``connected`` is set while a subscribed connection is up and
    cleared when it drops.
    """
    attempt = 0
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.ws_connect(url, heartbeat=10.0) as ws:
                    await ws.send_json({"action": "auth", "key": key_id, "secret": secret_key})
                    await ws.send_json({"action": "subscribe", "bars": bars})
                    async for batch in _decode_frames(ws):
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
            except (aiohttp.ClientError, TemporaryError, ValueError):
                pass
            if connected is not None:
                connected.clear()
            await asyncio.sleep(backoff_delay(attempt))
            attempt += 1
