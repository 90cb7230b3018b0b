"""The risk gate's kernels: every pre-trade control in one numba call (no Python objects,
no exceptions), returning a control code; :class:`live.risk.RiskGate` names it.

Comparisons are in float64 on USD and shares; exact amounts stay in the Decimal ledger.
:func:`check_nb` returns the code of the first control that denies, in the order of
:data:`CONTROLS`, and writes the offending value and the limit in force (after
volatility scaling) to ``out``. An order that reduces the absolute position of its
symbol ("reducing") passes every exposure, open-order, loss, drawdown and VaR control
and the open circuit breaker: exits are never blocked by them (SEC Rule 15c3-5 asks for
controls that prevent *new* risk, not ones that trap a position). The kill switch, stale
data, the per-order caps, the price collar, the venue rules and the order rate apply to
every order.

State layout (owned by the gate, updated off the hot path):

* ``sym`` float64 (n_symbols, N_SYM): ``S_POS``, ``S_PEND`` (signed shares held and in
  open orders), ``S_PRICE`` (last trade/quote/bar price, USD), ``S_VOL_SCALE`` (limit
  multiplier in (0, 1]), ``S_SHORTABLE`` (1/0), ``S_SECTOR`` (sector id, -1 none);
* ``last_ns`` int64 (n_symbols,): wall-clock ns of the symbol's last market-data update;
* ``acct`` float64 (N_ACCT,): ``A_HALTED``, ``A_BREAKER`` (0 closed, 1 open, 2 half-open
  probe available, 3 half-open probe in flight), ``A_EQUITY`` and ``A_BUYING_POWER``
  (USD, NaN until the broker's account is known), ``A_DAY_PNL``, ``A_DAY_PEAK`` (USD),
  ``A_OPEN_ORDERS``;
* ``recent`` int64 (n_symbols + 1, k): rings of approval times, one per symbol and the
  last row for all symbols;
* ``returns`` float64 (T, n_symbols): one-day return scenarios (T = 0: VaR off) and
  ``scratch`` float64 (T,).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

APPROVED = 0
KILL_SWITCH = 1
CIRCUIT_BREAKER = 2
STALE_DATA = 3
MAX_ORDER_QTY = 4
MAX_ORDER_NOTIONAL = 5
MIN_ORDER_VALUE = 6
PRICE_COLLAR = 7
FRACTIONAL = 8
SUB_PENNY = 9
NOT_SHORTABLE = 10
ORDER_RATE = 11
ORDER_RATE_SYMBOL = 12
MAX_POSITION_QTY = 13
MAX_POSITION_NOTIONAL = 14
MAX_OPEN_POSITIONS = 15
MAX_OPEN_ORDERS = 16
BUYING_POWER = 17
MAX_GROSS_EXPOSURE = 18
MAX_NET_EXPOSURE = 19
MAX_CONCENTRATION = 20
MAX_SECTOR_CONCENTRATION = 21
DAILY_LOSS_LIMIT = 22
MAX_INTRADAY_DRAWDOWN = 23
VAR_LIMIT = 24
#: Control names by code (index); each is the name of its limit in ``config/risk.toml``.
CONTROLS = (
    "approved",
    "kill_switch",
    "circuit_breaker",
    "max_data_age_s",
    "max_order_qty",
    "max_order_notional",
    "min_order_value",
    "price_collar_bps",
    "fractional_order",
    "sub_penny_price",
    "non_shortable",
    "max_orders_per_minute",
    "max_orders_per_minute_per_symbol",
    "max_position_qty",
    "max_position_notional",
    "max_open_positions",
    "max_open_orders",
    "buying_power",
    "max_gross_exposure",
    "max_net_exposure",
    "max_concentration",
    "sectors.max_concentration",
    "daily_loss_limit",
    "max_intraday_drawdown",
    "var.max_var",
)

# limits layout (float64)
L_MAX_ORDER_QTY = 0
L_MAX_ORDER_NOTIONAL = 1
L_MIN_ORDER_VALUE = 2
L_MAX_ORDERS_PER_MINUTE = 3
L_MAX_ORDERS_PER_MINUTE_SYMBOL = 4
L_MAX_POSITION_QTY = 5
L_MAX_POSITION_NOTIONAL = 6
L_MAX_OPEN_POSITIONS = 7
L_MAX_OPEN_ORDERS = 8
L_MAX_GROSS = 9
L_MAX_NET = 10
L_MAX_CONCENTRATION = 11
L_MAX_SECTOR_CONCENTRATION = 12  # inf when no [sectors]
L_DAILY_LOSS_LIMIT = 13
L_MAX_INTRADAY_DRAWDOWN = 14
L_PRICE_COLLAR_BPS = 15
L_MAX_DATA_AGE_NS = 16
L_MAX_VAR = 17  # inf when no [var]
L_VAR_CONFIDENCE = 18
N_LIMITS = 19

# per-symbol state columns
S_POS = 0
S_PEND = 1
S_PRICE = 2
S_VOL_SCALE = 3
S_SHORTABLE = 4
S_SECTOR = 5
N_SYM = 6

# account state
A_HALTED = 0
A_BREAKER = 1
A_EQUITY = 2
A_BUYING_POWER = 3
A_DAY_PNL = 4
A_DAY_PEAK = 5
A_OPEN_ORDERS = 6
N_ACCT = 7

BREAKER_CLOSED = 0.0
BREAKER_OPEN = 1.0
BREAKER_PROBE_READY = 2.0
BREAKER_PROBE_IN_FLIGHT = 3.0

MINUTE_NS = 60_000_000_000


@njit(cache=True)
def orders_last_minute_nb(recent: np.ndarray, now_ns: int) -> int:
    """Count the approvals stamped in ``recent`` (int64 ns, 0 = empty) within the last 60 s."""
    n = 0
    for t in recent:
        if t > 0 and now_ns - t < MINUTE_NS:
            n += 1
    return n


@njit(cache=True)
def record_order_nb(recent: np.ndarray, s: int, now_ns: int) -> None:
    """Stamp one approval for symbol row ``s`` and the all-symbols row of ``recent``,
    overwriting the oldest entry of each ring."""
    row = recent[s]
    row[np.argmin(row)] = now_ns
    total = recent[recent.shape[0] - 1]
    total[np.argmin(total)] = now_ns


@njit(cache=True)
def select_nb(a: np.ndarray, k: int) -> float:
    """Return the k-th smallest value of ``a`` (0-based), reordering ``a`` in place
    (Hoare's quickselect, expected O(len(a)), no allocation)."""
    lo, hi = 0, a.shape[0] - 1
    while lo < hi:
        pivot = a[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return a[k]
    return a[k]


@njit(cache=True)
def var_nb(
    sym: np.ndarray,
    returns: np.ndarray,
    scratch: np.ndarray,
    s: int,
    qty: float,
    confidence: float,
) -> float:
    """Historical-simulation VaR of the portfolio after an order of ``qty`` in symbol ``s``.

    Every scenario t revalues today's exposures (``(pos + pend) x price``, USD, plus the
    order's ``qty x price``) with the one-day returns of row t; VaR is the loss at the
    ``1 - confidence`` quantile of these P&Ls: ``-P&L_(k)`` with ``k = floor((1 - c) T)``
    the k-th smallest of T scenarios (Jorion, *Value at Risk*, 3rd ed., ch. 10,
    "historical simulation"). USD, >= 0 only when the quantile is a loss.

    Parameters
    ----------
    sym : ndarray, shape (n, N_SYM), float64
    returns : ndarray, shape (T, n), float64
        One-day simple returns, aligned by date across symbols.
    scratch : ndarray, shape (T,), float64
        Work buffer (overwritten).
    s : int
        Symbol index of the order.
    qty : float
        Signed order quantity, shares.
    confidence : float
        In (0.5, 1), e.g. 0.99.
    """
    t_len, n = returns.shape
    for t in range(t_len):
        pnl = 0.0
        for i in range(n):
            pnl += (sym[i, S_POS] + sym[i, S_PEND]) * sym[i, S_PRICE] * returns[t, i]
        scratch[t] = pnl + qty * sym[s, S_PRICE] * returns[t, s]
    k = math.floor((1.0 - confidence) * t_len)
    return -select_nb(scratch, k)


@njit(cache=True)
def check_nb(
    limits: np.ndarray,
    sym: np.ndarray,
    last_ns: np.ndarray,
    acct: np.ndarray,
    recent: np.ndarray,
    returns: np.ndarray,
    scratch: np.ndarray,
    s: int,
    qty: float,
    price: float,
    limit_order: bool,
    day_tif: bool,
    now_ns: int,
    out: np.ndarray,
) -> int:
    """Evaluate the pre-trade controls for one intent.

    Parameters
    ----------
    limits : ndarray, shape (N_LIMITS,), float64
        See the ``L_*`` layout (shares, USD, orders per minute, fractions, bps, ns).
    sym, last_ns, acct, recent, returns, scratch : ndarray
        The gate's state (module docstring).
    s : int
        Symbol index of the order.
    qty : float
        Signed order quantity, shares (+ buy, - sell); non-zero.
    price : float
        Limit price, or the expected fill price of a market order, USD/share.
    limit_order, day_tif : bool
        Order type is limit (else market); time in force is ``day``.
    now_ns : int
        Wall clock, ns since epoch UTC.
    out : ndarray, shape (2,), float64
        Receives the offending value and the limit in force on denial.

    Returns
    -------
    int
        ``APPROVED`` (0) or the code of the first denying control.
    """
    out[0] = 0.0
    out[1] = 0.0
    if acct[A_HALTED] != 0.0:
        return KILL_SWITCH
    pos = sym[s, S_POS] + sym[s, S_PEND]
    after = pos + qty
    reducing = abs(after) < abs(pos) and after * pos >= 0.0
    breaker = acct[A_BREAKER]
    if not reducing and (breaker in (BREAKER_OPEN, BREAKER_PROBE_IN_FLIGHT)):
        out[0] = breaker
        return CIRCUIT_BREAKER
    age = now_ns - last_ns[s]
    if age > limits[L_MAX_DATA_AGE_NS]:
        out[0] = age / 1e9
        out[1] = limits[L_MAX_DATA_AGE_NS] / 1e9
        return STALE_DATA
    size = abs(qty)
    if size > limits[L_MAX_ORDER_QTY]:
        out[0] = size
        out[1] = limits[L_MAX_ORDER_QTY]
        return MAX_ORDER_QTY
    value = size * price
    scale = sym[s, S_VOL_SCALE]
    cap = limits[L_MAX_ORDER_NOTIONAL] * scale
    if value > cap:
        out[0] = value
        out[1] = cap
        return MAX_ORDER_NOTIONAL
    if value < limits[L_MIN_ORDER_VALUE]:
        out[0] = value
        out[1] = limits[L_MIN_ORDER_VALUE]
        return MIN_ORDER_VALUE
    last = sym[s, S_PRICE]
    collar = abs(price - last) / last * 1e4
    if not collar <= limits[L_PRICE_COLLAR_BPS]:  # NaN (no price yet) denies
        out[0] = collar
        out[1] = limits[L_PRICE_COLLAR_BPS]
        return PRICE_COLLAR
    if size != math.floor(size) and (limit_order or not day_tif):
        out[0] = size
        return FRACTIONAL
    if limit_order:
        ticks = price * (100.0 if price >= 1.0 else 10_000.0)
        if abs(ticks - round(ticks)) > 1e-6:
            out[0] = price
            out[1] = 0.01 if price >= 1.0 else 0.0001
            return SUB_PENNY
    if after < 0.0 and qty < 0.0 and sym[s, S_SHORTABLE] == 0.0:
        out[0] = after
        return NOT_SHORTABLE
    n_all = orders_last_minute_nb(recent[recent.shape[0] - 1], now_ns)
    if n_all >= limits[L_MAX_ORDERS_PER_MINUTE]:
        out[0] = n_all
        out[1] = limits[L_MAX_ORDERS_PER_MINUTE]
        return ORDER_RATE
    n_sym = orders_last_minute_nb(recent[s], now_ns)
    if n_sym >= limits[L_MAX_ORDERS_PER_MINUTE_SYMBOL]:
        out[0] = n_sym
        out[1] = limits[L_MAX_ORDERS_PER_MINUTE_SYMBOL]
        return ORDER_RATE_SYMBOL
    if reducing:  # exposure, loss and VaR controls do not apply
        return APPROVED
    size_after = abs(after)
    if size_after > limits[L_MAX_POSITION_QTY]:
        out[0] = size_after
        out[1] = limits[L_MAX_POSITION_QTY]
        return MAX_POSITION_QTY
    cap = limits[L_MAX_POSITION_NOTIONAL] * scale
    if size_after * last > cap:
        out[0] = size_after * last
        out[1] = cap
        return MAX_POSITION_NOTIONAL
    n_sym_total = sym.shape[0]
    gross = 0.0
    net = 0.0
    open_positions = 0
    sector_exposure = 0.0
    sector = sym[s, S_SECTOR]
    for i in range(n_sym_total):
        shares = sym[i, S_POS] + sym[i, S_PEND]
        if i == s:
            shares = after
        exposure = shares * sym[i, S_PRICE]
        if shares != 0.0:
            open_positions += 1
            gross += abs(exposure)
            net += exposure
            if sector >= 0.0 and sym[i, S_SECTOR] == sector:
                sector_exposure += abs(exposure)
    if pos == 0.0 and open_positions > limits[L_MAX_OPEN_POSITIONS]:
        out[0] = open_positions
        out[1] = limits[L_MAX_OPEN_POSITIONS]
        return MAX_OPEN_POSITIONS
    if acct[A_OPEN_ORDERS] >= limits[L_MAX_OPEN_ORDERS]:
        out[0] = acct[A_OPEN_ORDERS]
        out[1] = limits[L_MAX_OPEN_ORDERS]
        return MAX_OPEN_ORDERS
    if not value <= acct[A_BUYING_POWER]:  # NaN (account not known yet) denies
        out[0] = value
        out[1] = acct[A_BUYING_POWER]
        return BUYING_POWER
    if gross > limits[L_MAX_GROSS]:
        out[0] = gross
        out[1] = limits[L_MAX_GROSS]
        return MAX_GROSS_EXPOSURE
    if abs(net) > limits[L_MAX_NET] and abs(net) > abs(net - qty * last):
        out[0] = net
        out[1] = limits[L_MAX_NET]
        return MAX_NET_EXPOSURE
    equity = acct[A_EQUITY]
    share = size_after * last / equity
    if not (equity > 0.0 and share <= limits[L_MAX_CONCENTRATION]):
        out[0] = share
        out[1] = limits[L_MAX_CONCENTRATION]
        return MAX_CONCENTRATION
    if sector >= 0.0 and sector_exposure / equity > limits[L_MAX_SECTOR_CONCENTRATION]:
        out[0] = sector_exposure / equity
        out[1] = limits[L_MAX_SECTOR_CONCENTRATION]
        return MAX_SECTOR_CONCENTRATION
    if acct[A_DAY_PNL] <= -limits[L_DAILY_LOSS_LIMIT]:
        out[0] = acct[A_DAY_PNL]
        out[1] = -limits[L_DAILY_LOSS_LIMIT]
        return DAILY_LOSS_LIMIT
    drawdown = acct[A_DAY_PEAK] - acct[A_DAY_PNL]
    if drawdown >= limits[L_MAX_INTRADAY_DRAWDOWN]:
        out[0] = drawdown
        out[1] = limits[L_MAX_INTRADAY_DRAWDOWN]
        return MAX_INTRADAY_DRAWDOWN
    if returns.shape[0] > 0:
        var = var_nb(sym, returns, scratch, s, qty, limits[L_VAR_CONFIDENCE])
        if var > limits[L_MAX_VAR]:
            out[0] = var
            out[1] = limits[L_MAX_VAR]
            return VAR_LIMIT
    return APPROVED


@njit(cache=True)
def update_price_nb(
    sym: np.ndarray,
    last_ns: np.ndarray,
    vol_ring: np.ndarray,
    vol_count: np.ndarray,
    vol_params: np.ndarray,
    s: int,
    price: float,
    now_ns: int,
) -> None:
    """Record a market-data update of symbol ``s`` and refresh its volatility scale.

    ``vol_ring`` (n, window) float64 holds the symbol's last log returns (ring indexed
    by ``vol_count`` (n,) int64 modulo the window). With ``vol_params`` =
    ``[target_vol, periods_per_year, min_scale]`` (annualised fraction, updates per year,
    fraction; ``target_vol`` 0 = scaling off) the scale is
    ``clip(target_vol / (std(log returns) x sqrt(periods_per_year)), min_scale, 1)``
    once the window is full (Moreira and Muir, "Volatility-managed portfolios",
    J. Finance 2017, scale exposure by inverse realised volatility).
    """
    prev = sym[s, S_PRICE]
    sym[s, S_PRICE] = price
    last_ns[s] = now_ns
    if vol_params[0] == 0.0 or not (prev > 0.0) or not (price > 0.0):
        return
    window = vol_ring.shape[1]
    vol_ring[s, vol_count[s] % window] = math.log(price / prev)
    vol_count[s] += 1
    if vol_count[s] < window:
        return
    mean = 0.0
    for j in range(window):
        mean += vol_ring[s, j]
    mean /= window
    var = 0.0
    for j in range(window):
        d = vol_ring[s, j] - mean
        var += d * d
    realised = math.sqrt(var / (window - 1) * vol_params[1])
    scale = 1.0 if realised == 0.0 else vol_params[0] / realised
    sym[s, S_VOL_SCALE] = min(1.0, max(vol_params[2], scale))


# stops: parameters (float64) and per-symbol state (float64)
P_STATIC_BPS = 0
P_TRAILING_BPS = 1
P_ATR_MULTIPLE = 2
P_ATR_PERIOD = 3
P_MAX_HOLDING_NS = 4
N_STOP_PARAMS = 5
T_SIGN = 0  # sign of the position the stops watch (0 flat)
T_ENTRY_TS = 1  # market time the position was opened, ns
T_BEST = 2  # best close since entry (highest for a long, lowest for a short), USD
T_ATR = 3  # average true range, USD
T_N_TR = 4  # true ranges seen (up to the ATR period)
T_PREV_CLOSE = 5
T_LOCK = 6  # sign of the strategy target held flat after a stop (0 none)
N_STOP_STATE = 7
STOP_NONE = 0
STOP_STATIC = 1
STOP_TRAILING = 2
STOP_ATR = 3
STOP_TIME = 4
#: Stop names by code.
STOPS = ("none", "static", "trailing", "atr", "time")


@njit(cache=True)
def new_stop_state_nb() -> np.ndarray:
    """A fresh stop state (flat, no ATR history)."""
    state = np.zeros(N_STOP_STATE)
    state[T_PREV_CLOSE] = np.nan
    return state


@njit(cache=True)
def stop_nb(
    state: np.ndarray,
    params: np.ndarray,
    target: float,
    position: float,
    avg_price: float,
    high: float,
    low: float,
    close: float,
    ts: int,
) -> tuple[float, int]:
    """Evaluate the stops of one position on a price update; return the target to trade
    to and the stop that fired (``STOP_*``; 0 none).

    Parameters
    ----------
    state : ndarray, shape (N_STOP_STATE,), float64
        ``T_*`` layout (:func:`new_stop_state_nb`), updated in place.
    params : ndarray, shape (N_STOP_PARAMS,), float64
        ``static_bps``, ``trailing_bps`` (bps), ``atr_multiple``, ``atr_period`` (bars),
        ``max_holding_ns``; 0 switches that stop off.
    target : float
        The strategy's target position, shares.
    position : float
        Signed shares held; ``avg_price`` their average cost, USD.
    high, low, close : float
        The update's bar, USD.
    ts : int
        Market time, ns since epoch UTC.

    Notes
    -----
    Long position (short mirrored): static fires when ``close <= avg (1 - static/1e4)``,
    trailing when ``close <= best (1 - trailing/1e4)``, ATR when
    ``close <= avg - atr_multiple x ATR`` with Wilder's ATR (Wilder, *New Concepts in
    Technical Trading Systems*, 1978: mean of the first ``period`` true ranges, then
    ``ATR += (TR - ATR) / period``), time when ``ts - entry >= max_holding_ns``. A stop
    sets the target to 0 and holds it flat while the strategy keeps asking for the same
    side (``T_LOCK``).
    """
    prev = state[T_PREV_CLOSE]
    tr = high - low
    if prev == prev:  # not NaN
        tr = max(tr, abs(high - prev), abs(low - prev))
    period = params[P_ATR_PERIOD]
    n = state[T_N_TR]
    if n < period:
        state[T_ATR] = (state[T_ATR] * n + tr) / (n + 1.0)
        state[T_N_TR] = n + 1.0
    else:
        state[T_ATR] += (tr - state[T_ATR]) / period
    state[T_PREV_CLOSE] = close
    lock = state[T_LOCK]
    if lock != 0.0:
        if target * lock > 0.0:
            target = 0.0
        else:
            state[T_LOCK] = 0.0
    sign = 1.0 if position > 0.0 else (-1.0 if position < 0.0 else 0.0)
    if sign == 0.0:
        state[T_SIGN] = 0.0
        return target, STOP_NONE
    if sign != state[T_SIGN]:
        state[T_SIGN] = sign
        state[T_ENTRY_TS] = ts
        state[T_BEST] = close
    if sign * (close - state[T_BEST]) > 0.0:
        state[T_BEST] = close
    code = STOP_NONE
    move = sign * (close - avg_price)  # > 0: in the position's favour
    if params[P_STATIC_BPS] > 0.0 and move <= -avg_price * params[P_STATIC_BPS] / 1e4:
        code = STOP_STATIC
    elif (
        params[P_TRAILING_BPS] > 0.0
        and sign * (close - state[T_BEST]) <= -state[T_BEST] * params[P_TRAILING_BPS] / 1e4
    ):
        code = STOP_TRAILING
    elif (
        params[P_ATR_MULTIPLE] > 0.0
        and state[T_N_TR] >= period
        and move <= -params[P_ATR_MULTIPLE] * state[T_ATR]
    ):
        code = STOP_ATR
    elif params[P_MAX_HOLDING_NS] > 0.0 and ts - state[T_ENTRY_TS] >= params[P_MAX_HOLDING_NS]:
        code = STOP_TIME
    if code != STOP_NONE:
        state[T_LOCK] = sign
        return 0.0, code
    return target, STOP_NONE
