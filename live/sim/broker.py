"""The simulator's paper broker: orders, matching against replayed bars, one position,
and the account. Pure Python, no I/O, every amount a :class:`~decimal.Decimal`.

JSON shapes (Order, Position, Account, trade_updates events, error bodies) follow
Alpaca's Trading API v2 as summarised in ``shared/reference/alpaca.md`` §2-§4: numbers
as decimal strings, timestamps RFC 3339 UTC with ``Z``.

Matching rules (:meth:`SimBroker.on_bar`)
-----------------------------------------
* An order submitted before bar ``t`` is published is matched against bar ``t``; bar
  ``t`` is "published" at its end (start + 60 s), which is also the timestamp of every
  event the match produces.
* Market orders fill at bar ``t``'s open. A limit buy fills if ``low <= limit``, at
  ``min(open, limit)``; a limit sell fills if ``high >= limit``, at ``max(open, limit)``
  (a limit that is already marketable at the open gets the open: price improvement).
* A bar's volume is shared by the orders it fills, oldest first: each fill is capped
  at the volume the bar has left, the rest stays open (``partial_fill`` now, ``fill``
  on a later bar).
* ``ioc``: whatever is unfilled after the order's first bar is canceled. ``day``: still
  open at the end of the New York session -> ``expired`` (:meth:`SimBroker.end_session`;
  an order submitted while the market is closed is for the next session). ``gtc``: open
  until filled or canceled.
* After :meth:`SimBroker.end_of_data` (the replay is over) new orders are accepted and
  immediately ``rejected``: no bar will ever fill them.

Account model
-------------
A long/short account without leverage (``multiplier`` 1): ``equity = cash +
long_market_value + short_market_value`` (the short value is negative), positions are
marked at the last bar's close, ``initial_margin = maintenance_margin = long_market_value
+ |short_market_value|`` and ``buying_power = equity - initial_margin - reserved``, where
``reserved`` is, for every open order, its remaining shares that would open or increase
a position times its limit price (market orders: the last price). An order whose
opening shares times that price exceed the buying power is refused with 403; orders
that only reduce a position never are, and an order may reverse a position (long to
short) in one go. Selling short credits the proceeds to cash. Realized P&L uses the
average entry price; no fees, borrow costs, interest or margin calls.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

NS_PER_S = 1_000_000_000
BAR_NS = 60 * NS_PER_S
ZERO = Decimal(0)
#: Quantum of computed (divided) amounts: average prices and removed cost basis, USD.
_QUANTUM = Decimal("1e-9")
#: Quantum of ratios (``unrealized_plpc``, ``change_today``).
_RATIO_QUANTUM = Decimal("1e-10")
#: Upper bound of quantities and prices accepted in a request.
_MAX_INPUT = Decimal("1e12")
#: Alpaca's maximum ``client_order_id`` length [DOC].
MAX_CLIENT_ORDER_ID = 48
#: Alpaca's exchange code of the simulated asset (SPY is listed on NYSE Arca).
EXCHANGE = "ARCA"

# Alpaca error codes (alpaca.md §3).
CODE_INVALID = 40010001
CODE_FORBIDDEN = 40310000
CODE_NOT_FOUND = 40410000
CODE_UNPROCESSABLE = 42210000

_ORDER_TYPES = {"market", "limit", "stop", "stop_limit", "trailing_stop"}
_TIME_IN_FORCE = {"day", "gtc", "opg", "cls", "ioc", "fok"}
_INTENTS = {"buy_to_open", "buy_to_close", "sell_to_open", "sell_to_close"}
_UNSUPPORTED_FIELDS = ("stop_price", "trail_price", "trail_percent", "take_profit", "stop_loss")


class SimAPIError(Exception):
    """An Alpaca-shaped API error.

    Parameters
    ----------
    status : int
        HTTP status.
    code : int
        Alpaca's 8-digit error code.
    message : str
        Human-readable reason.
    **extra : str
        Additional body fields (e.g. ``buying_power`` and ``cost_basis`` on a 403).

    Attributes
    ----------
    body : dict
        The JSON error body: ``{"code", "message", **extra}``.
    """

    def __init__(self, status: int, code: int, message: str, **extra: str) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"code": code, "message": message, **extra}


def invalid(message: str) -> SimAPIError:
    """A 422 validation error (code 40010001) with ``message``."""
    return SimAPIError(422, CODE_INVALID, message)


def rfc3339(ns: int) -> str:
    """Format ns since the epoch (UTC) as RFC 3339 like Go's ``RFC3339Nano`` (Alpaca's
    servers): ``2011-01-03T14:30:00Z``, ``2011-01-03T14:30:00.5Z`` (trailing zeros dropped).
    """
    secs, frac = divmod(ns, NS_PER_S)
    base = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:09d}".rstrip("0").rstrip(".") + "Z"


def fmt(d: Decimal) -> str:
    """Format a Decimal as Alpaca does: plain notation, no trailing zeros (``"100"``)."""
    return "0" if d == 0 else format(d.normalize(), "f")


def to_decimal(value: object) -> Decimal:
    """Exact Decimal of a bar value (float, int, str or Decimal) via its shortest repr."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _ratio(a: Decimal, b: Decimal) -> Decimal:
    return (a / b).quantize(_RATIO_QUANTUM) if b else ZERO


def _number(body: dict[str, Any], name: str) -> Decimal | None:
    """Parse an optional numeric field (JSON number or numeric string)."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise invalid(f"{name} must be a number or a numeric string, got {value!r}")
    try:
        d = Decimal(str(value).strip())
    except InvalidOperation:
        raise invalid(f"{name} must be a number, got {value!r}") from None
    if not d.is_finite():
        raise invalid(f"{name} must be a finite number, got {value!r}")
    if abs(d) >= _MAX_INPUT:
        raise invalid(f"{name} must be less than {_MAX_INPUT:.0e}, got {value!r}")
    return d


def _choice(body: dict[str, Any], name: str, allowed: set[str]) -> str:
    value = body.get(name)
    if value is None:
        raise invalid(f"{name} is required")
    if value not in allowed:
        raise invalid(f"invalid {name} {value!r}: must be one of {', '.join(sorted(allowed))}")
    return str(value)


def check_tick(name: str, price: Decimal) -> None:
    """Refuse a sub-penny price: more than 2 decimals at >= $1, more than 4 below $1.

    Raises
    ------
    SimAPIError
        422, code 42210000 (alpaca.md §7 "Sub-penny prices").
    """
    places = 2 if price >= 1 else 4
    if price != price.quantize(Decimal(1).scaleb(-places)):
        raise SimAPIError(
            422,
            CODE_UNPROCESSABLE,
            f"invalid {name} {fmt(price)}. sub-penny increment does not fulfill minimum "
            f"pricing criteria ({places} decimals {'at or above' if places == 2 else 'below'} $1)",
        )


def _apply(qty: Decimal, cost: Decimal, q: Decimal, price: Decimal) -> tuple[Decimal, ...]:
    """Apply a signed fill of ``q`` shares at ``price`` to a position of ``qty`` shares
    with signed cost basis ``cost``; return ``(qty, cost, realized P&L)``, USD."""
    if qty == 0 or (qty > 0) == (q > 0):
        return qty + q, cost + q * price, ZERO
    closed = min(abs(q), abs(qty))
    removed = (cost * closed / abs(qty)).quantize(_QUANTUM)
    realized = (closed * price if qty > 0 else -closed * price) - removed
    rest = q + closed if q < 0 else q - closed
    if rest != 0:  # reversed through zero: the rest opens a new position
        return rest, rest * price, realized
    return qty - closed if qty > 0 else qty + closed, cost - removed, realized


@dataclass
class _Order:
    id: str
    client_order_id: str
    symbol: str
    asset_id: str
    side: str
    type: str
    time_in_force: str
    qty: Decimal
    limit_price: Decimal | None
    position_intent: str
    opening_qty: Decimal  # the trailing shares of qty that open/increase a position
    submitted_ns: int
    status: str = "new"
    filled_qty: Decimal = ZERO
    filled_notional: Decimal = ZERO
    filled_ns: int | None = None
    canceled_ns: int | None = None
    expired_ns: int | None = None
    failed_ns: int | None = None
    updated_ns: int = field(init=False)

    def __post_init__(self) -> None:
        self.updated_ns = self.submitted_ns

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.filled_qty

    def to_json(self) -> dict[str, Any]:
        """The full Alpaca Order object (alpaca.md §2, ``entities/order-v2.yaml``)."""

        def ts(ns: int | None) -> str | None:  # Alpaca stores order times in microseconds
            return None if ns is None else rfc3339(ns // 1000 * 1000)

        avg = (
            fmt((self.filled_notional / self.filled_qty).quantize(_QUANTUM))
            if self.filled_qty
            else None
        )
        return {
            "id": self.id,
            "client_order_id": self.client_order_id,
            "created_at": ts(self.submitted_ns),
            "updated_at": ts(self.updated_ns),
            "submitted_at": ts(self.submitted_ns),
            "filled_at": ts(self.filled_ns),
            "expired_at": ts(self.expired_ns),
            "canceled_at": ts(self.canceled_ns),
            "failed_at": ts(self.failed_ns),
            "replaced_at": None,
            "replaced_by": None,
            "replaces": None,
            "asset_id": self.asset_id,
            "symbol": self.symbol,
            "asset_class": "us_equity",
            "notional": None,
            "qty": fmt(self.qty),
            "filled_qty": fmt(self.filled_qty),
            "filled_avg_price": avg,
            "order_class": "",
            "order_type": self.type,
            "type": self.type,
            "side": self.side,
            "position_intent": self.position_intent,
            "time_in_force": self.time_in_force,
            "limit_price": None if self.limit_price is None else fmt(self.limit_price),
            "stop_price": None,
            "status": self.status,
            "extended_hours": False,
            "legs": None,
            "trail_percent": None,
            "trail_price": None,
            "hwm": None,
        }


class SimBroker:
    """A single-symbol Alpaca-like paper broker (see the module docstring for the
    matching rules and the account model).

    Parameters
    ----------
    symbol : str
        The only tradable asset; orders for any other symbol are refused.
    initial_cash : Decimal
        Starting cash, USD.
    reference_price : Decimal
        Price of ``symbol`` before the first bar (USD/share): marks positions and prices
        market orders for the buying-power check until :meth:`on_bar` sets the last close.
    now_ns : int
        Creation time, ns since the epoch UTC (the account's ``created_at``).

    Notes
    -----
    Mutating methods take the simulated time ``now_ns`` (ns since the epoch, UTC) and
    return the ``trade_updates`` events they caused, each the ``data`` of a
    ``{"stream": "trade_updates", "data": ...}`` message (alpaca.md §4). Errors are raised
    as :class:`SimAPIError` carrying Alpaca's HTTP status and body.
    """

    def __init__(
        self, symbol: str, initial_cash: Decimal, *, reference_price: Decimal, now_ns: int
    ) -> None:
        self.symbol = symbol
        self.asset_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"live.sim/asset/{symbol}"))
        self.account_id = str(uuid.uuid4())
        self.account_number = "PA" + uuid.uuid4().hex[:10].upper()
        self.created_ns = now_ns
        self.cash = initial_cash
        self.last_price = reference_price
        self.lastday_price = reference_price
        self.last_equity = initial_cash
        self.last_maintenance_margin = ZERO
        #: Cumulative realized P&L, USD.
        self.realized_pl = ZERO
        #: Signed position in ``symbol``, shares (short < 0).
        self.position_qty = ZERO
        #: Signed cost basis of the position, USD (short < 0).
        self.cost_basis = ZERO
        self._day_cost = ZERO  # cost basis re-marked at the last session close
        self._accepting = True
        self._orders: dict[str, _Order] = {}
        self._by_client_id: dict[str, _Order] = {}
        self._open: dict[str, _Order] = {}  # insertion (= submission) order

    # -- account ---------------------------------------------------------------------
    @property
    def market_value(self) -> Decimal:
        """Signed market value of the position at the last price, USD."""
        return self.position_qty * self.last_price

    @property
    def equity(self) -> Decimal:
        """``cash + long_market_value + short_market_value``, USD."""
        return self.cash + self.market_value

    @property
    def initial_margin(self) -> Decimal:
        """Gross market value of the position (100 % margin), USD."""
        return abs(self.market_value)

    @property
    def buying_power(self) -> Decimal:
        """``equity - initial_margin - reserved for open orders``, USD."""
        reserved = sum(
            (min(o.remaining, o.opening_qty) * self._reference(o) for o in self._open.values()),
            ZERO,
        )
        return self.equity - self.initial_margin - reserved

    def _reference(self, order: _Order) -> Decimal:
        return self.last_price if order.limit_price is None else order.limit_price

    def account(self) -> dict[str, Any]:
        """The Alpaca Account object (``GET /v2/account``, ``account-v2.yaml``)."""
        mv, bp = self.market_value, fmt(self.buying_power)
        return {
            "id": self.account_id,
            "account_number": self.account_number,
            "status": "ACTIVE",
            "currency": "USD",
            "cash": fmt(self.cash),
            "portfolio_value": fmt(self.equity),
            "buying_power": bp,
            "regt_buying_power": bp,
            "daytrading_buying_power": "0",
            "non_marginable_buying_power": bp,
            "accrued_fees": "0",
            "equity": fmt(self.equity),
            "last_equity": fmt(self.last_equity),
            "long_market_value": fmt(max(mv, ZERO)),
            "short_market_value": fmt(min(mv, ZERO)),
            "initial_margin": fmt(self.initial_margin),
            "maintenance_margin": fmt(self.initial_margin),
            "last_maintenance_margin": fmt(self.last_maintenance_margin),
            "sma": "0",
            "multiplier": "1",
            "shorting_enabled": True,
            "trading_blocked": False,
            "transfers_blocked": False,
            "account_blocked": False,
            "trade_suspended_by_user": False,
            "pattern_day_trader": False,
            "daytrade_count": 0,
            "created_at": rfc3339(self.created_ns // 1000 * 1000),
        }

    # -- positions -------------------------------------------------------------------
    def positions(self) -> list[dict[str, Any]]:
        """``GET /v2/positions``: the open positions (zero or one)."""
        return [] if self.position_qty == 0 else [self._position_json()]

    def position(self, symbol_or_asset_id: str) -> dict[str, Any]:
        """``GET /v2/positions/{symbol_or_asset_id}``.

        Raises
        ------
        SimAPIError
            404 ``position does not exist`` (code 40410000).
        """
        if symbol_or_asset_id not in (self.symbol, self.asset_id) or self.position_qty == 0:
            raise SimAPIError(404, CODE_NOT_FOUND, "position does not exist")
        return self._position_json()

    def _position_json(self) -> dict[str, Any]:
        qty, last, mv = self.position_qty, self.last_price, self.market_value
        closing = "sell" if qty > 0 else "buy"
        held = sum((o.remaining for o in self._open.values() if o.side == closing), ZERO)
        return {
            "asset_id": self.asset_id,
            "symbol": self.symbol,
            "exchange": EXCHANGE,
            "asset_class": "us_equity",
            "asset_marginable": True,
            "avg_entry_price": fmt((self.cost_basis / qty).quantize(_QUANTUM)),
            "qty": fmt(qty),
            "side": "long" if qty > 0 else "short",
            "market_value": fmt(mv),
            "cost_basis": fmt(self.cost_basis),
            "unrealized_pl": fmt(mv - self.cost_basis),
            "unrealized_plpc": fmt(_ratio(mv - self.cost_basis, abs(self.cost_basis))),
            "unrealized_intraday_pl": fmt(mv - self._day_cost),
            "unrealized_intraday_plpc": fmt(_ratio(mv - self._day_cost, abs(self._day_cost))),
            "current_price": fmt(last),
            "lastday_price": fmt(self.lastday_price),
            "change_today": fmt(_ratio(last - self.lastday_price, self.lastday_price)),
            "qty_available": fmt(max(abs(qty) - held, ZERO)),
        }

    # -- orders ----------------------------------------------------------------------
    def _find(self, order_id: str) -> _Order:
        try:
            uuid.UUID(order_id)
        except ValueError:
            raise invalid(f"order_id {order_id!r} is not a valid UUID") from None
        order = self._orders.get(order_id)
        if order is None:
            raise SimAPIError(404, CODE_NOT_FOUND, "order not found")
        return order

    def get_order(self, order_id: str) -> dict[str, Any]:
        """``GET /v2/orders/{order_id}``.

        Raises
        ------
        SimAPIError
            422 for an id that is not a UUID, 404 ``order not found`` (code 40410000).
        """
        return self._find(order_id).to_json()

    def get_order_by_client_id(self, client_order_id: str) -> dict[str, Any]:
        """``GET /v2/orders:by_client_order_id``; 404 ``order not found`` if unknown."""
        order = self._by_client_id.get(client_order_id)
        if order is None:
            raise SimAPIError(404, CODE_NOT_FOUND, "order not found")
        return order.to_json()

    def list_orders(
        self,
        *,
        status: str = "open",
        limit: int = 50,
        after_ns: int | None = None,
        until_ns: int | None = None,
        direction: str = "desc",
        symbols: list[str] | None = None,
        side: str | None = None,
    ) -> list[dict[str, Any]]:
        """``GET /v2/orders`` (Alpaca's defaults: open, 50, newest first).

        Parameters
        ----------
        status : {"open", "closed", "all"}
        limit : int
            Maximum number of orders returned (after filtering and sorting).
        after_ns, until_ns : int, optional
            Exclusive bounds on the submission time, ns since the epoch UTC.
        direction : {"asc", "desc"}
            Order by submission time.
        symbols : list of str, optional
        side : {"buy", "sell"}, optional
        """
        orders = [
            o
            for o in self._orders.values()
            if (status == "all" or (o.id in self._open) == (status == "open"))
            and (after_ns is None or o.submitted_ns > after_ns)
            and (until_ns is None or o.submitted_ns < until_ns)
            and (symbols is None or o.symbol in symbols)
            and (side is None or o.side == side)
        ]
        if direction == "desc":
            orders.reverse()
        return [o.to_json() for o in orders[:limit]]

    def submit_order(self, body: object, now_ns: int) -> tuple[dict[str, Any], list[dict]]:
        """``POST /v2/orders``: validate, check buying power, accept (``new``).

        Parameters
        ----------
        body : object
            The decoded JSON body (alpaca-py sends numbers as floats, others strings).
        now_ns : int
            Submission time, ns since the epoch UTC.

        Returns
        -------
        order : dict
            The Order object (status ``new``, or ``rejected`` after :meth:`end_of_data`).
        events : list of dict
            The ``new`` (or ``rejected``) trade update.

        Raises
        ------
        SimAPIError
            422 malformed or unsupported request (code 40010001), sub-penny price
            (42210000), unknown symbol (40010001 ``asset SYM not found``) or reused
            ``client_order_id`` (40010001 ``client_order_id must be unique``); 403
            insufficient buying power (40310000, with ``buying_power``/``cost_basis``).
        """
        if not isinstance(body, dict):
            raise invalid("request body must be a JSON object")
        self._refuse_unsupported(body)
        symbol = body.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            raise invalid("symbol is required")
        if symbol != self.symbol:
            raise invalid(f"asset {symbol} not found")
        qty = _number(body, "qty")
        if qty is None:
            raise invalid("qty is required")
        if qty <= 0:
            raise invalid(f"qty must be > 0, got {fmt(qty)}")
        if qty != qty.to_integral_value():
            raise invalid("qty must be integer (fractional orders are not simulated)")
        side = _choice(body, "side", {"buy", "sell"})
        order_type = _choice(body, "type", _ORDER_TYPES)
        if order_type not in ("market", "limit"):
            raise invalid(f"order type {order_type} is not supported by the simulator")
        tif = _choice(body, "time_in_force", _TIME_IN_FORCE)
        if tif not in ("day", "gtc", "ioc"):
            raise invalid(f"time_in_force {tif} is not supported by the simulator")
        limit = _number(body, "limit_price")
        if order_type == "limit":
            if limit is None:
                raise invalid("limit_price is required for limit orders")
            if limit <= 0:
                raise invalid(f"limit_price must be > 0, got {fmt(limit)}")
            check_tick("limit_price", limit)
        elif limit is not None:
            raise invalid("limit_price must not be set for market orders")
        client_id = body.get("client_order_id")
        if client_id is None:
            client_id = str(uuid.uuid4())
        elif not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_CLIENT_ORDER_ID:
            raise invalid(f"client_order_id must be a string of 1 to {MAX_CLIENT_ORDER_ID} chars")
        if client_id in self._by_client_id:
            raise invalid("client_order_id must be unique")
        intent = body.get("position_intent")
        if intent is not None and intent not in _INTENTS:
            raise invalid(f"invalid position_intent {intent!r}")

        # Shares of this order that would open or increase a position, given the
        # position and the same-side orders already working.
        pending = sum((o.remaining for o in self._open.values() if o.side == side), ZERO)
        capacity = -(self.position_qty + pending) if side == "buy" else self.position_qty - pending
        opening = qty - min(qty, max(capacity, ZERO))
        order = _Order(
            id=str(uuid.uuid4()),
            client_order_id=client_id,
            symbol=symbol,
            asset_id=self.asset_id,
            side=side,
            type=order_type,
            time_in_force=tif,
            qty=qty,
            limit_price=limit,
            position_intent=intent or f"{side}_to_{'open' if opening else 'close'}",
            opening_qty=opening,
            submitted_ns=now_ns,
        )
        cost = opening * self._reference(order)
        if cost > 0 and cost > self.buying_power:
            raise SimAPIError(
                403,
                CODE_FORBIDDEN,
                "insufficient buying power",
                buying_power=fmt(self.buying_power),
                cost_basis=fmt(cost),
            )
        self._orders[order.id] = order
        self._by_client_id[client_id] = order
        if not self._accepting:
            order.status, order.failed_ns = "rejected", now_ns
            return order.to_json(), [self._event("rejected", order, now_ns)]
        self._open[order.id] = order
        return order.to_json(), [self._event("new", order, now_ns)]

    @staticmethod
    def _refuse_unsupported(body: dict[str, Any]) -> None:
        if body.get("notional") is not None:
            raise invalid("notional orders are not supported by the simulator; send qty")
        if body.get("order_class") not in (None, "", "simple"):
            raise invalid(f"order_class {body['order_class']!r} is not supported by the simulator")
        if body.get("extended_hours"):
            raise invalid("extended_hours orders are not supported by the simulator")
        for name in _UNSUPPORTED_FIELDS:
            if body.get(name) is not None:
                raise invalid(f"{name} is not supported by the simulator")

    def cancel_order(self, order_id: str, now_ns: int) -> list[dict[str, Any]]:
        """``DELETE /v2/orders/{order_id}``: cancel at once; return the ``canceled`` event.

        Raises
        ------
        SimAPIError
            422 bad id, 404 unknown order, 422 ``order is not cancelable`` (42210000)
            when it is no longer open.
        """
        order = self._find(order_id)
        if order.id not in self._open:
            raise SimAPIError(422, CODE_UNPROCESSABLE, "order is not cancelable")
        return [self._finish(order, "canceled", now_ns)]

    def cancel_all(self, now_ns: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``DELETE /v2/orders``: cancel every open order.

        Returns
        -------
        results : list of dict
            The 207 body: ``[{"id", "status": 200, "body": Order}]``.
        events : list of dict
            The ``canceled`` trade updates.
        """
        events = [self._finish(o, "canceled", now_ns) for o in list(self._open.values())]
        results = [{"id": e["order"]["id"], "status": 200, "body": e["order"]} for e in events]
        return results, events

    def close_position(
        self,
        symbol_or_asset_id: str,
        now_ns: int,
        *,
        qty: str | None = None,
        percentage: str | None = None,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """``DELETE /v2/positions/{symbol_or_asset_id}``: submit a market day order that
        closes all of the position, ``qty`` shares of it, or ``percentage`` percent
        (rounded down to whole shares); it fills on the next bar.

        Raises
        ------
        SimAPIError
            404 ``position does not exist``; 422 bad or conflicting ``qty``/``percentage``;
            403 ``insufficient qty available for order`` (40310000).
        """
        held = Decimal(self.position(symbol_or_asset_id)["qty"])
        if qty is not None and percentage is not None:
            raise invalid("qty and percentage are mutually exclusive")
        size = abs(held)
        if qty is not None:
            size = self._query_number("qty", qty)
        elif percentage is not None:
            pct = self._query_number("percentage", percentage)
            if pct > 100:
                raise invalid(f"percentage must be <= 100, got {percentage}")
            size = (abs(held) * pct / 100).to_integral_value(rounding=ROUND_FLOOR)
            if size == 0:
                raise invalid(f"percentage {percentage} of {fmt(abs(held))} shares is 0 shares")
        if size > abs(held):
            raise SimAPIError(
                403,
                CODE_FORBIDDEN,
                f"insufficient qty available for order (requested: {fmt(size)}, "
                f"available: {fmt(abs(held))})",
            )
        body = {
            "symbol": self.symbol,
            "qty": fmt(size),
            "side": "sell" if held > 0 else "buy",
            "type": "market",
            "time_in_force": "day",
        }
        return self.submit_order(body, now_ns)

    @staticmethod
    def _query_number(name: str, value: str) -> Decimal:
        d = _number({name: value}, name)
        if d is None or d <= 0:
            raise invalid(f"{name} must be > 0, got {value!r}")
        return d

    def close_all(
        self, now_ns: int, *, cancel_orders: bool = False
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``DELETE /v2/positions``: cancel open orders if asked, then close the position.

        Returns
        -------
        results : list of dict
            The 207 body: ``[{"symbol", "status": 200, "order_id", "body": Order}]``.
        events : list of dict
            ``canceled`` and ``new`` trade updates.
        """
        events = self.cancel_all(now_ns)[1] if cancel_orders else []
        results = []
        if self.position_qty != 0:
            order, new = self.close_position(self.symbol, now_ns)
            events += new
            results.append(
                {"symbol": self.symbol, "status": 200, "order_id": order["id"], "body": order}
            )
        return results, events

    # -- market events ---------------------------------------------------------------
    def on_bar(
        self,
        ts_start_ns: int,
        o: float | Decimal,
        h: float | Decimal,
        l: float | Decimal,  # noqa: E741 - Alpaca's bar field name
        c: float | Decimal,
        v: float | Decimal,
    ) -> list[dict[str, Any]]:
        """Match the open orders against one 1-minute bar of ``symbol``.

        Parameters
        ----------
        ts_start_ns : int
            Bar start, ns since the epoch UTC; events are stamped at its end.
        o, h, l, c : float or Decimal
            Open, high, low, close, USD/share (floats are read via their repr).
        v : float or Decimal
            Volume, shares: the most this bar can fill across all orders.

        Returns
        -------
        list of dict
            ``partial_fill``/``fill`` (with ``price``, ``qty``, ``position_qty``,
            ``execution_id``) and ``canceled`` (ioc rest) trade updates, in order.
        """
        op, hi, lo, volume = to_decimal(o), to_decimal(h), to_decimal(l), to_decimal(v)
        now = ts_start_ns + BAR_NS
        events: list[dict[str, Any]] = []
        for order in list(self._open.values()):
            price = self._match_price(order, op, hi, lo)
            if price is not None and volume > 0:
                q = min(order.remaining, volume)
                volume -= q
                events.append(self._fill(order, q, price, now))
            if order.time_in_force == "ioc" and order.id in self._open:
                events.append(self._finish(order, "canceled", now))
        self.last_price = to_decimal(c)
        return events

    @staticmethod
    def _match_price(order: _Order, o: Decimal, h: Decimal, lo: Decimal) -> Decimal | None:
        limit = order.limit_price
        if limit is None:
            return o
        if order.side == "buy":
            return min(o, limit) if lo <= limit else None
        return max(o, limit) if h >= limit else None

    def end_session(self, now_ns: int) -> list[dict[str, Any]]:
        """Close the New York session: expire open ``day`` orders and roll the day marks
        (``lastday_price``, ``last_equity``, intraday cost basis) to the last close.

        Returns
        -------
        list of dict
            The ``expired`` trade updates.
        """
        events = [
            self._finish(o, "expired", now_ns)
            for o in list(self._open.values())
            if o.time_in_force == "day"
        ]
        self.lastday_price = self.last_price
        self.last_equity = self.equity
        self.last_maintenance_margin = self.initial_margin
        self._day_cost = self.market_value
        return events

    def end_of_data(self) -> None:
        """The replay is over: from now on new orders are ``rejected`` (none could fill)."""
        self._accepting = False

    # -- internals -------------------------------------------------------------------
    def _fill(self, order: _Order, q: Decimal, price: Decimal, now_ns: int) -> dict[str, Any]:
        signed = q if order.side == "buy" else -q
        self.cash -= signed * price
        qty, self.cost_basis, realized = _apply(self.position_qty, self.cost_basis, signed, price)
        self._day_cost = _apply(self.position_qty, self._day_cost, signed, price)[1]
        self.position_qty = qty
        self.realized_pl += realized
        order.filled_qty += q
        order.filled_notional += q * price
        order.updated_ns = now_ns
        if order.remaining == 0:
            order.status, order.filled_ns = "filled", now_ns
            del self._open[order.id]
        else:
            order.status = "partially_filled"
        event = self._event("fill" if order.status == "filled" else "partial_fill", order, now_ns)
        event.update(
            execution_id=str(uuid.uuid4()),
            price=fmt(price),
            qty=fmt(q),
            position_qty=fmt(self.position_qty),
        )
        return event

    def _finish(self, order: _Order, status: str, now_ns: int) -> dict[str, Any]:
        order.status, order.updated_ns = status, now_ns
        if status == "canceled":
            order.canceled_ns = now_ns
        else:
            order.expired_ns = now_ns
        del self._open[order.id]
        return self._event(status, order, now_ns)

    @staticmethod
    def _event(event: str, order: _Order, now_ns: int) -> dict[str, Any]:
        return {"event": event, "order": order.to_json(), "timestamp": rfc3339(now_ns)}
