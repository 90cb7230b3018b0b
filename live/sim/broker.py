"""The simulator's paper broker: orders, matching against replayed bars, one position,
and the account. Pure Python, no I/O, every amount a :class:`~decimal.Decimal`.

JSON shapes (Order, Position, Account, trade_updates events, error bodies) follow
Alpaca's Trading API v2 as summarised in ``shared/reference/alpaca.md`` §2-§4 and §7:
numbers as decimal strings, timestamps RFC 3339 UTC with ``Z``.

Orders
------
Types ``market``, ``limit``, ``stop``, ``stop_limit`` and ``trailing_stop``
(``trail_price`` or ``trail_percent``); ``qty`` (up to 9 decimals) or ``notional`` (USD);
time in force ``day``, ``gtc``, ``ioc``, ``fok``, ``opg``, ``cls``; order classes
``simple``, ``bracket``, ``oto`` and ``oco``; replacement (``PATCH``). Alpaca's rules
that the simulator enforces (alpaca.md §7): fractional and notional orders are market
``day`` orders and never open a short; ``extended_hours`` needs a ``limit`` ``day``
order; ``opg`` is refused from 09:28 to 19:00 New York time and ``cls`` from 15:50 to
19:00; sub-penny prices are refused; a ``client_order_id`` is unique for the account's
lifetime. Orders submitted while the market is closed wait for the next session.

Matching rules (:meth:`SimBroker.on_bar`)
-----------------------------------------
* An order submitted before bar ``t`` is published is matched against bar ``t``; bar
  ``t`` is "published" at its end (start + 60 s), which is also the timestamp of every
  event the match produces. Within a bar the price path is unknown, so no rule below
  assumes one (open first, then anything within ``[low, high]``).
* Market orders fill at the open. A limit buy fills if ``low <= limit``, at
  ``min(open, limit)``; a limit sell if ``high >= limit``, at ``max(open, limit)``.
* A stop buy triggers if ``high >= stop`` and fills at ``max(open, stop)`` (a gap
  through the stop fills at the open); a stop sell mirrors it with ``low``. A
  ``stop_limit`` triggers the same way; it fills on that bar only if the trigger price
  satisfies its limit, otherwise it rests as a limit order from the next bar.
* A trailing stop's stop is ``hwm - trail_price`` or ``hwm * (1 - trail_percent/100)``
  for a sell (``hwm`` the highest price since submission; a buy mirrors it with the
  lowest price). Each bar is checked against the stop set by the bars *before* it,
  then its high (low) moves ``hwm``.
* A bar's volume is shared by the orders it fills, oldest first: each fill is capped at
  the volume left, the rest stays open (``partial_fill`` now, ``fill`` later). A
  ``notional`` order buys ``notional / price`` shares, rounded down to 9 decimals.
* ``ioc``: what is unfilled after the order's first bar is canceled. ``fok``: filled
  completely on its first bar or canceled without a fill. ``opg``: matched only against
  the open of a session's first bar, then canceled; ``cls``: only against the close of a
  session's last bar, then canceled. ``day``: open at the end of the New York session ->
  ``expired`` (:meth:`SimBroker.end_session`). ``gtc``: open until filled or canceled.
* ``bracket``: an entry (market or limit) with a take-profit limit leg and a stop-loss
  (stop or stop-limit) leg; ``oto``: an entry with one of them. The legs are ``held``
  until the entry is completely filled, then work with the entry's quantity; when one
  leg fills (even partly) the other is canceled. ``oco``: a take-profit limit order and
  a stop-loss leg, both working at once, each canceling the other on a fill. Canceling
  an entry cancels its legs.
* ``PATCH /v2/orders/{id}`` replaces a working, unfilled simple order at once: the old
  order becomes ``replaced`` (``replaced_by``), the new one (new ``id``, ``replaces``)
  takes its place in the queue; the stream gets ``replaced`` then ``new``.
* After :meth:`SimBroker.end_of_data` (the replay is over) new orders are accepted and
  immediately ``rejected``: no bar will ever fill them.

Account model
-------------
A long/short account without leverage (``multiplier`` 1): ``equity = cash +
long_market_value + short_market_value`` (the short value is negative), positions are
marked at the last bar's close, ``initial_margin = maintenance_margin = long_market_value
+ |short_market_value|`` and ``buying_power = equity - initial_margin - reserved``, where
``reserved`` is, for every working order, its remaining shares that would open or
increase a position times its limit price (stop orders: the stop price; market orders:
the last price; notional orders: the notional). An order whose opening shares times
that price exceed the buying power is refused with 403; orders that only reduce a
position never are (nor are the exit legs of bracket, oto and oco orders), and an order
may reverse a position (long to short) in one go. Selling short credits the proceeds to
cash. Realized P&L uses the average entry price; no fees, borrow costs, interest or
margin calls.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from live.market_hours import submission_problem

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
#: The price fields each order type needs (trailing stops: one of the two trails).
_PRICE_FIELDS = {
    "market": (),
    "limit": ("limit_price",),
    "stop": ("stop_price",),
    "stop_limit": ("limit_price", "stop_price"),
    "trailing_stop": ("trail_price", "trail_percent"),
}
_STOP_LOSS = ("stop_price", "limit_price")


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


def _tick_price(body: dict[str, Any], name: str) -> Decimal | None:
    """An optional positive price field on the venue's tick (see :func:`check_tick`)."""
    price = _number(body, name)
    if price is None:
        return None
    if price <= 0:
        raise invalid(f"{name} must be > 0, got {fmt(price)}")
    check_tick(name, price)
    return price


@dataclass(eq=False)
class _Order:
    id: str
    client_order_id: str
    symbol: str
    asset_id: str
    side: str
    type: str
    time_in_force: str
    qty: Decimal  # for a notional order: an estimate (notional / last price) until filled
    limit_price: Decimal | None
    position_intent: str
    opening_qty: Decimal  # the trailing shares of qty that open/increase a position
    submitted_ns: int
    notional: Decimal | None = None
    stop_price: Decimal | None = None
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    hwm: Decimal | None = None
    extended_hours: bool = False
    order_class: str = ""
    legs: list[_Order] = field(default_factory=list)
    parent: _Order | None = None
    status: str = "new"
    triggered: bool = False  # stop_limit: the stop was hit, it now rests as a limit
    matched: bool = False  # has met a bar it may trade on (ioc, fok, opg, cls)
    filled_qty: Decimal = ZERO
    filled_notional: Decimal = ZERO
    filled_ns: int | None = None
    canceled_ns: int | None = None
    expired_ns: int | None = None
    failed_ns: int | None = None
    replaced_ns: int | None = None
    replaced_by: str | None = None
    replaces: str | None = None
    updated_ns: int = field(init=False)

    def __post_init__(self) -> None:
        self.updated_ns = self.submitted_ns

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.filled_qty

    @property
    def reference(self) -> Decimal | None:
        """Price that reserves buying power (None: the last price)."""
        return self.limit_price if self.limit_price is not None else self.stop_price

    def trail_stop(self) -> Decimal | None:
        """The trailing stop's current stop price (None before it has a ``hwm``)."""
        if self.hwm is None:
            return None
        if self.trail_price is not None:
            delta = self.trail_price
        else:
            assert self.trail_percent is not None
            delta = (self.hwm * self.trail_percent / 100).quantize(Decimal("0.01"), ROUND_HALF_UP)
        return self.hwm - delta if self.side == "sell" else self.hwm + delta

    def to_json(self, *, nested: bool = True) -> dict[str, Any]:
        """The full Alpaca Order object (alpaca.md §2, ``entities/order-v2.yaml``); the
        legs of a bracket/oto/oco entry are nested unless ``nested`` is False."""

        def ts(ns: int | None) -> str | None:  # Alpaca stores order times in microseconds
            return None if ns is None else rfc3339(ns // 1000 * 1000)

        def price(d: Decimal | None) -> str | None:
            return None if d is None else fmt(d)

        avg = (
            fmt((self.filled_notional / self.filled_qty).quantize(_QUANTUM))
            if self.filled_qty
            else None
        )
        unfilled_notional = self.notional is not None and self.status not in ("filled",)
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
            "replaced_at": ts(self.replaced_ns),
            "replaced_by": self.replaced_by,
            "replaces": self.replaces,
            "asset_id": self.asset_id,
            "symbol": self.symbol,
            "asset_class": "us_equity",
            "notional": price(self.notional),
            "qty": None if unfilled_notional else fmt(self.qty),
            "filled_qty": fmt(self.filled_qty),
            "filled_avg_price": avg,
            "order_class": self.order_class,
            "order_type": self.type,
            "type": self.type,
            "side": self.side,
            "position_intent": self.position_intent,
            "time_in_force": self.time_in_force,
            "limit_price": price(self.limit_price),
            "stop_price": price(
                self.trail_stop() if self.type == "trailing_stop" else self.stop_price
            ),
            "status": self.status,
            "extended_hours": self.extended_hours,
            "legs": [leg.to_json() for leg in self.legs] if nested and self.legs else None,
            "trail_percent": price(self.trail_percent),
            "trail_price": price(self.trail_price),
            "hwm": price(self.hwm),
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
        #: FILL account activities, oldest first (``GET /v2/account/activities/FILL``).
        self.activities: list[tuple[int, dict[str, Any]]] = []

    # -- account ---------------------------------------------------------------------
    def open_position(self, qty: Decimal, cost_basis: Decimal) -> None:
        """Start the account holding ``qty`` signed shares bought for ``cost_basis``
        signed USD, paid from cash (a paper account carried over from an earlier session).

        Raises
        ------
        ValueError
            If the account has traded already, or ``qty`` and ``cost_basis`` disagree in sign.
        """
        if self._orders:
            raise ValueError("open_position: the account has traded already")
        if qty * cost_basis < 0 or (qty == 0) != (cost_basis == 0):
            raise ValueError(f"open_position: qty {qty} and cost basis {cost_basis} disagree")
        self.position_qty = qty
        self.cost_basis = self._day_cost = cost_basis
        self.cash -= cost_basis
        self.last_equity = self.equity

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
            (
                min(o.remaining, o.opening_qty) * (o.reference or self.last_price)
                for o in self._open.values()
                if o.status != "held"
            ),
            ZERO,
        )
        return self.equity - self.initial_margin - reserved

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
        held = sum(
            (o.remaining for o in self._open.values() if o.side == closing and not o.parent),
            ZERO,
        )
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

    def get_order(self, order_id: str, *, nested: bool = True) -> dict[str, Any]:
        """``GET /v2/orders/{order_id}`` (legs nested unless ``nested`` is False).

        Raises
        ------
        SimAPIError
            422 for an id that is not a UUID, 404 ``order not found`` (code 40410000).
        """
        return self._find(order_id).to_json(nested=nested)

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
        nested: bool = False,
    ) -> list[dict[str, Any]]:
        """``GET /v2/orders`` (Alpaca's defaults: open, 50, newest first).

        Parameters
        ----------
        status : {"open", "closed", "all"}
            ``open`` includes ``held`` legs.
        limit : int
            Maximum number of orders returned (after filtering and sorting).
        after_ns, until_ns : int, optional
            Exclusive bounds on the submission time, ns since the epoch UTC.
        direction : {"asc", "desc"}
            Order by submission time.
        symbols : list of str, optional
        side : {"buy", "sell"}, optional
        nested : bool
            Legs inside their entry's ``legs`` instead of as orders of their own.
        """
        orders = [
            o
            for o in self._orders.values()
            if (status == "all" or (o.id in self._open) == (status == "open"))
            and (after_ns is None or o.submitted_ns > after_ns)
            and (until_ns is None or o.submitted_ns < until_ns)
            and (symbols is None or o.symbol in symbols)
            and (side is None or o.side == side)
            and not (nested and o.parent is not None)
        ]
        if direction == "desc":
            orders.reverse()
        return [o.to_json(nested=nested) for o in orders[:limit]]

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
            The Order object (status ``new``, or ``rejected`` after :meth:`end_of_data`),
            legs nested.
        events : list of dict
            The ``new`` (or ``rejected``) trade updates of the order and of its working
            ``oco`` leg.

        Raises
        ------
        SimAPIError
            422 malformed, inconsistent or unsupported request (code 40010001), sub-penny
            price or ``opg``/``cls`` outside their submission window (42210000), unknown
            symbol (40010001 ``asset SYM not found``) or reused ``client_order_id``
            (40010001 ``client_order_id must be unique``); 403 insufficient buying power
            (40310000, with ``buying_power``/``cost_basis``) or a fractional short sale.
        """
        if not isinstance(body, dict):
            raise invalid("request body must be a JSON object")
        take_profit = body.get("take_profit")
        if body.get("order_class") == "oco" and isinstance(take_profit, dict):
            body = {"limit_price": take_profit.get("limit_price"), **body}  # may be omitted
            if body["limit_price"] is None:
                body["limit_price"] = take_profit.get("limit_price")
        order = self._parse(body, now_ns)
        self._attach_legs(order, body, now_ns)
        self._check_buying_power(order)
        self._register(order)
        if not self._accepting:
            for o in (order, *order.legs):
                o.status, o.failed_ns = "rejected", now_ns
            return order.to_json(), [self._event("rejected", order, now_ns)]
        for o in (order, *order.legs):
            self._open[o.id] = o
        working = [order, *(leg for leg in order.legs if leg.status == "new")]
        return order.to_json(), [self._event("new", o, now_ns) for o in working]

    def _parse(self, body: dict[str, Any], now_ns: int) -> _Order:
        """Validate the fields of a simple order and build it (not yet registered)."""
        symbol = body.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            raise invalid("symbol is required")
        if symbol != self.symbol:
            raise invalid(f"asset {symbol} not found")
        qty, notional = _number(body, "qty"), _number(body, "notional")
        if qty is None and notional is None:
            raise invalid("qty is required (or notional)")
        if qty is not None and notional is not None:
            raise invalid("qty and notional are mutually exclusive")
        if qty is not None and qty <= 0:
            raise invalid(f"qty must be > 0, got {fmt(qty)}")
        if qty is not None and qty != qty.quantize(_QUANTUM):
            raise invalid(f"qty must have at most 9 decimal places, got {fmt(qty)}")
        if notional is not None and notional < 1:
            raise invalid(f"notional must be >= 1, got {fmt(notional)}")
        if notional is not None and notional != notional.quantize(Decimal("0.01")):
            raise invalid(f"notional must have at most 2 decimal places, got {fmt(notional)}")
        side = _choice(body, "side", {"buy", "sell"})
        order_type = _choice(body, "type", _ORDER_TYPES)
        tif = _choice(body, "time_in_force", _TIME_IN_FORCE)
        fractional = notional is not None or (qty is not None and qty != qty.to_integral_value())
        if fractional and tif != "day":
            raise invalid("fractional orders must be DAY orders")
        if fractional and order_type != "market":
            raise invalid("fractional and notional orders must be market orders")
        limit, stop = _tick_price(body, "limit_price"), _tick_price(body, "stop_price")
        trail_price, trail_percent = _number(body, "trail_price"), _number(body, "trail_percent")
        needs = _PRICE_FIELDS[order_type]
        given = {
            "limit_price": limit,
            "stop_price": stop,
            "trail_price": trail_price,
            "trail_percent": trail_percent,
        }
        for name, value in given.items():
            if name in needs and value is None and order_type != "trailing_stop":
                raise invalid(f"{name} is required for {order_type} orders")
            if name not in needs and value is not None:
                raise invalid(f"{name} must not be set for {order_type} orders")
        if order_type == "trailing_stop":
            if (trail_price is None) == (trail_percent is None):
                raise invalid(
                    "trailing_stop orders need exactly one of trail_price and trail_percent"
                )
            trail = trail_price if trail_price is not None else trail_percent
            assert trail is not None
            if trail <= 0 or (trail_percent is not None and trail_percent >= 100):
                raise invalid(f"trail must be > 0 (and a percent < 100), got {fmt(trail)}")
            if tif not in ("day", "gtc"):
                raise invalid("trailing_stop orders must be DAY or GTC orders")
        extended = body.get("extended_hours", False)
        if not isinstance(extended, bool):
            raise invalid(f"extended_hours must be a boolean, got {extended!r}")
        if extended and (order_type != "limit" or tif != "day"):
            raise invalid("extended hours order must be DAY limit orders")
        if tif in ("opg", "cls"):
            if order_type not in ("market", "limit"):
                raise invalid(f"{tif} orders must be market or limit orders")
            problem = submission_problem(order_type, tif, extended, now_ns)
            if problem:
                raise SimAPIError(422, CODE_UNPROCESSABLE, problem)
        client_id = self._client_order_id(body.get("client_order_id"))
        intent = body.get("position_intent")
        if intent is not None and intent not in _INTENTS:
            raise invalid(f"invalid position_intent {intent!r}")
        estimate = qty if qty is not None else (notional or ZERO) / self.last_price
        opening = self._opening(side, estimate)
        if fractional and side == "sell" and opening > 0:
            raise SimAPIError(403, CODE_FORBIDDEN, "fractional orders cannot be sold short")
        return _Order(
            id=str(uuid.uuid4()),
            client_order_id=client_id,
            symbol=symbol,
            asset_id=self.asset_id,
            side=side,
            type=order_type,
            time_in_force=tif,
            qty=estimate,
            limit_price=limit,
            position_intent=intent or f"{side}_to_{'open' if opening else 'close'}",
            opening_qty=opening,
            submitted_ns=now_ns,
            notional=notional,
            stop_price=stop,
            trail_price=trail_price,
            trail_percent=trail_percent,
            hwm=self.last_price if order_type == "trailing_stop" else None,
            extended_hours=extended,
        )

    def _client_order_id(self, value: object) -> str:
        if value is None:
            return str(uuid.uuid4())
        if not isinstance(value, str) or not 0 < len(value) <= MAX_CLIENT_ORDER_ID:
            raise invalid(f"client_order_id must be a string of 1 to {MAX_CLIENT_ORDER_ID} chars")
        if value in self._by_client_id:
            raise invalid("client_order_id must be unique")
        return value

    def _opening(self, side: str, qty: Decimal) -> Decimal:
        """Shares of a ``side`` order of ``qty`` that would open or increase a position,
        given the position and the same-side orders already working."""
        pending = sum(
            (o.remaining for o in self._open.values() if o.side == side and o.status != "held"),
            ZERO,
        )
        capacity = -(self.position_qty + pending) if side == "buy" else self.position_qty - pending
        return qty - min(qty, max(capacity, ZERO))

    def _attach_legs(self, order: _Order, body: dict[str, Any], now_ns: int) -> None:
        """Validate ``order_class``, ``take_profit`` and ``stop_loss`` and build the legs."""
        order_class = body.get("order_class") or "simple"
        if order_class not in ("simple", "bracket", "oto", "oco"):
            raise invalid(f"order_class {order_class!r} is not supported by the simulator")
        exits = {}
        for name, keys in (("take_profit", ("limit_price",)), ("stop_loss", _STOP_LOSS)):
            value = body.get(name)
            if value is None:
                continue
            if not isinstance(value, dict) or not set(value) <= set(keys):
                raise invalid(f"{name} must be an object with {' and/or '.join(keys)}")
            exits[name] = {k: _tick_price(value, k) for k in keys}
            if exits[name][keys[0]] is None:
                raise invalid(f"{name}.{keys[0]} is required")
        if order_class == "simple":
            if exits:
                raise invalid("take_profit and stop_loss need order_class bracket, oto or oco")
            return
        if order.notional is not None or order.remaining != order.remaining.to_integral_value():
            raise invalid(f"{order_class} orders must be for whole shares")
        if order_class in ("bracket", "oco") and len(exits) != 2:
            raise invalid(f"{order_class} orders require take_profit and stop_loss")
        if order_class == "oto" and len(exits) != 1:
            raise invalid("oto orders require exactly one of take_profit and stop_loss")
        if order.time_in_force not in ("day", "gtc"):
            raise invalid(f"{order_class} orders must be DAY or GTC orders")
        tp = exits.get("take_profit", {}).get("limit_price")
        sl = exits.get("stop_loss", {})
        order.order_class = order_class
        if order_class == "oco":
            if order.type != "limit":
                raise invalid("oco orders must be limit orders (the take-profit leg)")
            if order.limit_price is not None and order.limit_price != tp:
                raise invalid("oco limit_price must equal take_profit.limit_price")
            order.limit_price = tp
            exit_side = order.side
        else:
            if order.type not in ("market", "limit"):
                raise invalid(f"{order_class} entry orders must be market or limit orders")
            exit_side = "sell" if order.side == "buy" else "buy"
        stop = sl.get("stop_price")
        if tp is not None and stop is not None:
            profit_above = exit_side == "sell"
            if (tp > stop) != profit_above:
                relation = ">" if profit_above else "<"
                raise invalid(
                    f"take_profit.limit_price must be {relation} stop_loss.stop_price "
                    f"for {exit_side} exits"
                )
        legs: list[tuple[str, Decimal | None, Decimal | None]] = []
        if tp is not None and order_class != "oco":
            legs.append(("limit", tp, None))
        if sl:
            legs.append(
                ("stop_limit" if sl["limit_price"] else "stop", sl["limit_price"], sl["stop_price"])
            )
        for leg_type, leg_limit, leg_stop in legs:
            order.legs.append(
                _Order(
                    id=str(uuid.uuid4()),
                    client_order_id=str(uuid.uuid4()),
                    symbol=order.symbol,
                    asset_id=order.asset_id,
                    side=exit_side,
                    type=leg_type,
                    time_in_force=order.time_in_force,
                    qty=order.qty,
                    limit_price=leg_limit,
                    position_intent=f"{exit_side}_to_close",
                    opening_qty=ZERO,
                    submitted_ns=now_ns,
                    stop_price=leg_stop,
                    order_class=order_class,
                    parent=order,
                    status="new" if order_class == "oco" else "held",
                )
            )

    def _check_buying_power(self, order: _Order) -> None:
        cost = order.opening_qty * (order.reference or self.last_price)
        if cost > 0 and cost > self.buying_power:
            raise SimAPIError(
                403,
                CODE_FORBIDDEN,
                "insufficient buying power",
                buying_power=fmt(self.buying_power),
                cost_basis=fmt(cost),
            )

    def _register(self, order: _Order) -> None:
        for o in (order, *order.legs):
            self._orders[o.id] = o
            self._by_client_id[o.client_order_id] = o

    def replace_order(
        self, order_id: str, body: object, now_ns: int
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """``PATCH /v2/orders/{order_id}``: replace a working, unfilled simple order.

        ``body`` may set ``qty``, ``time_in_force``, ``limit_price``, ``stop_price``,
        ``trail`` (the trailing stop's ``trail_price`` or ``trail_percent``) and
        ``client_order_id``; every other attribute is the old order's.

        Returns
        -------
        order : dict
            The new Order (new ``id``, ``replaces`` = the old id).
        events : list of dict
            ``replaced`` (the old order, ``replaced_by`` set) and ``new``.

        Raises
        ------
        SimAPIError
            404/422 as :meth:`get_order`; 422 (42210000) if the order is not working, is
            partly filled or has legs; 422 (40010001) for a bad field; 403 as
            :meth:`submit_order`.
        """
        old = self._find(order_id)
        if not isinstance(body, dict):
            raise invalid("request body must be a JSON object")
        unknown = set(body) - {"qty", "time_in_force", "limit_price", "stop_price", "trail"}
        if unknown - {"client_order_id"}:
            raise invalid(f"cannot replace {', '.join(sorted(unknown - {'client_order_id'}))}")
        if old.id not in self._open or old.status == "held":
            raise SimAPIError(422, CODE_UNPROCESSABLE, f"order is not replaceable ({old.status})")
        if old.filled_qty or old.legs or old.parent is not None:
            raise SimAPIError(
                422,
                CODE_UNPROCESSABLE,
                "partly filled, bracket, oto and oco orders are not replaced by the simulator",
            )
        fields: dict[str, Any] = {
            "symbol": old.symbol,
            "side": old.side,
            "type": old.type,
            "time_in_force": old.time_in_force,
            "qty": old.qty if old.notional is None else None,
            "notional": old.notional,
            "limit_price": old.limit_price,
            "stop_price": old.stop_price,
            "trail_price": old.trail_price,
            "trail_percent": old.trail_percent,
            "extended_hours": old.extended_hours,
        }
        fields = {
            k: None if v is None else v if isinstance(v, str | bool) else str(v)
            for k, v in fields.items()
        }
        for name in ("qty", "time_in_force", "limit_price", "stop_price", "client_order_id"):
            if body.get(name) is not None:
                fields[name] = body[name]
        if body.get("trail") is not None:
            fields["trail_price" if old.trail_price is not None else "trail_percent"] = body[
                "trail"
            ]
        working = dict(self._open)
        del self._open[old.id]  # the new order must not count the old one as pending
        try:
            new = self._parse({k: v for k, v in fields.items() if v is not None}, now_ns)
            self._check_buying_power(new)
        except SimAPIError:
            self._open = working
            raise
        new.replaces, new.hwm = old.id, old.hwm if old.type == "trailing_stop" else None
        old.status, old.replaced_by, old.replaced_ns, old.updated_ns = (
            "replaced",
            new.id,
            now_ns,
            now_ns,
        )
        self._register(new)
        self._open[new.id] = new
        return new.to_json(), [
            self._event("replaced", old, now_ns),
            self._event("new", new, now_ns),
        ]

    def cancel_order(self, order_id: str, now_ns: int) -> list[dict[str, Any]]:
        """``DELETE /v2/orders/{order_id}``: cancel at once (an entry with its legs).

        Returns
        -------
        list of dict
            The ``canceled`` trade updates.

        Raises
        ------
        SimAPIError
            422 bad id, 404 unknown order, 422 ``order is not cancelable`` (42210000)
            when it is no longer open.
        """
        order = self._find(order_id)
        if order.id not in self._open:
            raise SimAPIError(422, CODE_UNPROCESSABLE, "order is not cancelable")
        return self._finish(order, "canceled", now_ns)

    def cancel_all(self, now_ns: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``DELETE /v2/orders``: cancel every open order (legs included).

        Returns
        -------
        results : list of dict
            The 207 body: ``[{"id", "status": 200, "body": Order}]``.
        events : list of dict
            The ``canceled`` trade updates.
        """
        events = []
        for o in list(self._open.values()):
            if o.id in self._open:
                events += self._finish(o, "canceled", now_ns)
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
        (rounded down to whole shares, or to 9 decimals if the position is fractional);
        it fills on the next bar.

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
            whole = held == held.to_integral_value()
            step = Decimal(1) if whole else _QUANTUM
            size = (abs(held) * pct / 100).quantize(step, rounding=ROUND_FLOOR)
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
        *,
        first: bool = False,
        last: bool = False,
    ) -> list[dict[str, Any]]:
        """Match the working orders against one 1-minute bar of ``symbol``.

        Parameters
        ----------
        ts_start_ns : int
            Bar start, ns since the epoch UTC; events are stamped at its end.
        o, h, l, c : float or Decimal
            Open, high, low, close, USD/share (floats are read via their repr).
        v : float or Decimal
            Volume, shares: the most this bar can fill across all orders.
        first, last : bool
            The bar opens (closes) a session: ``opg`` (``cls``) orders trade on it.

        Returns
        -------
        list of dict
            ``partial_fill``/``fill`` (with ``price``, ``qty``, ``position_qty``,
            ``execution_id``), ``new`` (bracket legs released) and ``canceled`` (ioc,
            fok, opg and cls rests, oco siblings) trade updates, in order.
        """
        bar = tuple(map(to_decimal, (o, h, l, c)))
        volume = to_decimal(v)
        now = ts_start_ns + BAR_NS
        events: list[dict[str, Any]] = []
        for order in list(self._open.values()):
            tif = order.time_in_force
            if order.id not in self._open or order.status == "held":
                continue
            if (tif == "opg" and not first) or (tif == "cls" and not last):
                continue
            price = self._match_price(order, *bar)
            if price is not None and volume > 0:
                want = self._wanted(order, price)
                if want > 0 and not (tif == "fok" and want > volume):
                    q = min(want, volume)
                    volume -= q
                    events += self._fill(order, q, price, now, complete=q == want)
            if order.id in self._open:
                if tif in ("ioc", "fok", "opg", "cls"):
                    events += self._finish(order, "canceled", now)
                elif order.type == "trailing_stop":
                    assert order.hwm is not None
                    order.hwm = (
                        max(order.hwm, bar[1]) if order.side == "sell" else min(order.hwm, bar[2])
                    )
        self.last_price = bar[3]
        return events

    def _wanted(self, order: _Order, price: Decimal) -> Decimal:
        """Shares the order still wants at ``price`` (notional orders: rounded down to
        9 decimals; a notional sell never beyond the long position)."""
        if order.notional is None:
            return order.remaining
        shares = ((order.notional - order.filled_notional) / price).quantize(_QUANTUM, ROUND_FLOOR)
        return min(shares, max(self.position_qty, ZERO)) if order.side == "sell" else shares

    @staticmethod
    def _match_price(
        order: _Order, o: Decimal, h: Decimal, lo: Decimal, c: Decimal
    ) -> Decimal | None:
        buy = order.side == "buy"
        limit = order.limit_price
        if order.time_in_force in ("opg", "cls"):  # the auction price: the open or close
            auction = o if order.time_in_force == "opg" else c
            if limit is None or (auction <= limit if buy else auction >= limit):
                return auction
            return None
        if order.type in ("stop", "trailing_stop", "stop_limit") and not order.triggered:
            stop = order.trail_stop() if order.type == "trailing_stop" else order.stop_price
            assert stop is not None
            if buy and h >= stop:
                trigger = max(o, stop)
            elif not buy and lo <= stop:
                trigger = min(o, stop)
            else:
                return None
            if order.type != "stop_limit":
                return trigger
            order.triggered = True
            assert limit is not None
            return trigger if (trigger <= limit if buy else trigger >= limit) else None
        if limit is None:
            return o
        if buy:
            return min(o, limit) if lo <= limit else None
        return max(o, limit) if h >= limit else None

    def end_session(self, now_ns: int) -> list[dict[str, Any]]:
        """Close the New York session: expire working ``day`` orders and roll the day
        marks (``lastday_price``, ``last_equity``, intraday cost basis) to the last close.

        Returns
        -------
        list of dict
            The ``expired`` (and legs' ``canceled``) trade updates.
        """
        events = []
        for o in list(self._open.values()):
            if o.id in self._open and o.time_in_force == "day":
                events += self._finish(o, "expired", now_ns)
        self.lastday_price = self.last_price
        self.last_equity = self.equity
        self.last_maintenance_margin = self.initial_margin
        self._day_cost = self.market_value
        return events

    def end_of_data(self) -> None:
        """The replay is over: from now on new orders are ``rejected`` (none could fill)."""
        self._accepting = False

    # -- internals -------------------------------------------------------------------
    def _fill(
        self, order: _Order, q: Decimal, price: Decimal, now_ns: int, *, complete: bool
    ) -> list[dict[str, Any]]:
        """Execute ``q`` shares of ``order`` at ``price``; return the fill event, then the
        legs it releases (``new``) or the oco siblings it cancels."""
        signed = q if order.side == "buy" else -q
        self.cash -= signed * price
        qty, self.cost_basis, realized = _apply(self.position_qty, self.cost_basis, signed, price)
        self._day_cost = _apply(self.position_qty, self._day_cost, signed, price)[1]
        self.position_qty = qty
        self.realized_pl += realized
        order.filled_qty += q
        order.filled_notional += q * price
        order.updated_ns = now_ns
        if complete:
            order.status, order.filled_ns, order.qty = "filled", now_ns, order.filled_qty
            del self._open[order.id]
        else:
            order.status = "partially_filled"
        event = self._event("fill" if complete else "partial_fill", order, now_ns)
        event.update(
            execution_id=str(uuid.uuid4()),
            price=fmt(price),
            qty=fmt(q),
            position_qty=fmt(self.position_qty),
        )
        # A real FILL activity's id is "<UTC yyyymmddHHMMSSmmm>::<uuid>" (Alpaca-API issue
        # #170), not the stream's execution_id; whether its uuid is that execution_id is
        # undocumented, so the sim gives it another one: a fill missed on the stream must
        # be recognised by the part of the order it covers (live.fills), not by its id.
        stamp = datetime.fromtimestamp(now_ns // 1_000_000_000, UTC).strftime("%Y%m%d%H%M%S")
        self.activities.append(
            (
                now_ns,
                {
                    "id": f"{stamp}{now_ns // 1_000_000 % 1000:03d}::{uuid.uuid4()}",
                    "activity_type": "FILL",
                    "transaction_time": rfc3339(now_ns),
                    "type": event["event"],
                    "price": fmt(price),
                    "qty": fmt(q),
                    "side": order.side,
                    "symbol": order.symbol,
                    "leaves_qty": fmt(order.remaining),
                    "order_id": order.id,
                    "cum_qty": fmt(order.filled_qty),
                    "order_status": order.status,
                },
            )
        )
        events = [event]
        if complete and order.parent is None and order.order_class in ("bracket", "oto"):
            for leg in order.legs:
                leg.status, leg.qty, leg.updated_ns = "new", order.filled_qty, now_ns
                events.append(self._event("new", leg, now_ns))
        siblings = [order.parent, *order.parent.legs] if order.parent else []
        if order.order_class == "oco" and order.parent is None:
            siblings = order.legs
        for other in siblings:
            if other is not None and other is not order and other.id in self._open:
                events += self._finish(other, "canceled", now_ns)
        return events

    def fill_activities(
        self, *, after_ns: int | None, direction: str, page_size: int, page_token: str | None
    ) -> list[dict[str, Any]]:
        """FILL activities after ``after_ns`` (ns since the epoch UTC), ``asc`` or ``desc``,
        ``page_size`` of them after the activity ``page_token`` (alpaca.md: account
        activities)."""
        acts = [a for ns, a in self.activities if after_ns is None or ns > after_ns]
        if direction == "desc":
            acts.reverse()
        if page_token is not None:
            ids = [a["id"] for a in acts]
            if page_token not in ids:
                raise invalid(f"page_token {page_token!r} is not an activity id")
            acts = acts[ids.index(page_token) + 1 :]
        return acts[:page_size]

    def _finish(self, order: _Order, status: str, now_ns: int) -> list[dict[str, Any]]:
        """End a working order as ``canceled`` or ``expired``; an entry's legs that are
        still held (or its oco leg) are canceled with it."""
        order.status, order.updated_ns = status, now_ns
        if status == "canceled":
            order.canceled_ns = now_ns
        else:
            order.expired_ns = now_ns
        del self._open[order.id]
        events = [self._event(status, order, now_ns)]
        for leg in order.legs:
            if leg.id in self._open and (leg.status == "held" or order.order_class == "oco"):
                events += self._finish(leg, "canceled", now_ns)
        return events

    @staticmethod
    def _event(event: str, order: _Order, now_ns: int) -> dict[str, Any]:
        return {"event": event, "order": order.to_json(), "timestamp": rfc3339(now_ns)}
