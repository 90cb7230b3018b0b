"""The pre-trade risk gate: named controls evaluated for every order intent.

A denial is an event (:class:`RiskDecision` with ``approved=False``), not an exception:
the engine writes it to the audit trail with the control's name, limit and the
offending value. Only approved intents carry the gate's MAC
(:func:`live.bus.encode_intent`) and only those are accepted by the execution process.

The controls, their order and the exemption of exposure-reducing orders are documented
in :mod:`live.risk.nb`; each limit is a key of ``config/risk.toml``
(:class:`live.config.RiskLimits`), changeable at run time with :meth:`RiskGate.set_limits`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from live.config import RiskLimits
from live.risk import nb
from live.risk.var import return_scenarios
from trader.exceptions import ConfigurationError


@dataclass(frozen=True)
class RiskDecision:
    """Outcome of the gate for one intent (``control``/``limit``/``value`` set on denial)."""

    approved: bool
    control: str = ""
    limit: str = ""
    value: str = ""

    @property
    def reason(self) -> str:
        """Human-readable denial reason ("" when approved)."""
        if self.approved:
            return ""
        return f"{self.control}: value {self.value} breaches limit {self.limit}"


_LIMIT_KEYS = (
    (nb.L_MAX_ORDER_QTY, "max_order_qty"),
    (nb.L_MAX_ORDER_NOTIONAL, "max_order_notional"),
    (nb.L_MIN_ORDER_VALUE, "min_order_value"),
    (nb.L_MAX_ORDERS_PER_MINUTE, "max_orders_per_minute"),
    (nb.L_MAX_ORDERS_PER_MINUTE_SYMBOL, "max_orders_per_minute_per_symbol"),
    (nb.L_MAX_POSITION_QTY, "max_position_qty"),
    (nb.L_MAX_POSITION_NOTIONAL, "max_position_notional"),
    (nb.L_MAX_OPEN_POSITIONS, "max_open_positions"),
    (nb.L_MAX_OPEN_ORDERS, "max_open_orders"),
    (nb.L_MAX_GROSS, "max_gross_exposure"),
    (nb.L_MAX_NET, "max_net_exposure"),
    (nb.L_MAX_CONCENTRATION, "max_concentration"),
    (nb.L_DAILY_LOSS_LIMIT, "daily_loss_limit"),
    (nb.L_MAX_INTRADAY_DRAWDOWN, "max_intraday_drawdown"),
    (nb.L_PRICE_COLLAR_BPS, "price_collar_bps"),
)
_BREAKER_STATES = {0.0: "closed", 1.0: "open", 2.0: "half_open", 3.0: "half_open_probe"}


class RiskGate:
    """The controls' limits and state (positions, prices, account, order-rate windows).

    Parameters
    ----------
    limits : RiskLimits
    symbols : tuple of str
        The tradable symbols; symbol index ``s`` in the methods is a position in it.
    halted : bool
        Initial kill-switch state (persisted across restarts by the daemon).

    Raises
    ------
    ConfigurationError
        ``[var]`` history missing or unusable for a symbol.
    """

    def __init__(
        self, limits: RiskLimits, symbols: tuple[str, ...] = ("SPY",), *, halted: bool = False
    ) -> None:
        if not symbols or len(set(symbols)) != len(symbols):
            raise ConfigurationError(f"RiskGate: symbols must be unique and non-empty: {symbols}")
        self.symbols = tuple(symbols)
        self.index = {s: i for i, s in enumerate(self.symbols)}
        n = len(self.symbols)
        self.sym = np.zeros((n, nb.N_SYM))
        self.sym[:, nb.S_PRICE] = np.nan
        self.sym[:, nb.S_VOL_SCALE] = 1.0
        self.last_ns = np.zeros(n, dtype=np.int64)
        self.acct = np.zeros(nb.N_ACCT)
        self.acct[[nb.A_EQUITY, nb.A_BUYING_POWER]] = np.nan
        self.out = np.zeros(2)
        self.limits_array = np.zeros(nb.N_LIMITS)
        self.recent = np.zeros((n + 1, 1), dtype=np.int64)
        self.returns = np.zeros((0, n))
        self.scratch = np.zeros(0)
        self.vol_ring = np.zeros((n, 1))
        self.vol_count = np.zeros(n, dtype=np.int64)
        self.vol_params = np.zeros(3)
        self.limits = limits
        self.set_limits(limits)
        self.halted = halted
        self._warm_up()

    # -- limits ---------------------------------------------------------------------------
    def set_limits(self, limits: RiskLimits) -> None:
        """Put new limits in force (run-time change from the control API).

        Order-rate windows keep their history; the volatility window restarts when its
        length changes; ``[var]`` history is (re)loaded before anything changes, so a bad
        history leaves the old limits in force.

        Raises
        ------
        ConfigurationError
            ``limits`` is not a :class:`RiskLimits`, or its ``[var]`` history is unusable.
        """
        if not isinstance(limits, RiskLimits):
            raise ConfigurationError(f"set_limits needs RiskLimits, got {type(limits).__name__}")
        returns = (
            return_scenarios(limits.var.history, self.symbols, limits.var.lookback)
            if limits.var is not None
            else np.zeros((0, len(self.symbols)))
        )
        arr = np.zeros(nb.N_LIMITS)
        for index, name in _LIMIT_KEYS:
            arr[index] = float(getattr(limits, name))
        arr[nb.L_MAX_DATA_AGE_NS] = limits.max_data_age_s * 1e9
        arr[nb.L_MAX_SECTOR_CONCENTRATION] = (
            limits.sectors.max_concentration if limits.sectors else math.inf
        )
        arr[nb.L_MAX_VAR] = float(limits.var.max_var) if limits.var else math.inf
        arr[nb.L_VAR_CONFIDENCE] = limits.var.confidence if limits.var else 0.99
        sectors = limits.sectors.map if limits.sectors else {}
        names = sorted(set(sectors.values()))
        for i, s in enumerate(self.symbols):
            self.sym[i, nb.S_SHORTABLE] = 0.0 if s in limits.non_shortable else 1.0
            self.sym[i, nb.S_SECTOR] = names.index(sectors[s]) if s in sectors else -1.0
        k = max(limits.max_orders_per_minute, self.recent.shape[1])
        if k > self.recent.shape[1]:
            grown = np.zeros((self.recent.shape[0], k), dtype=np.int64)
            grown[:, : self.recent.shape[1]] = self.recent
            self.recent = grown
        vol = limits.vol_scaling
        if vol is None:
            self.vol_params[:] = 0.0
            self.sym[:, nb.S_VOL_SCALE] = 1.0
        else:
            self.vol_params[:] = (vol.target_vol, vol.periods_per_year, vol.min_scale)
            if vol.window != self.vol_ring.shape[1]:
                self.vol_ring = np.zeros((len(self.symbols), vol.window))
                self.vol_count[:] = 0
                self.sym[:, nb.S_VOL_SCALE] = 1.0
        self.returns = returns
        self.scratch = np.zeros(returns.shape[0])
        self.limits_array[:] = arr
        self.limits = limits

    def _warm_up(self) -> None:
        """Compile (or load from the numba cache) every kernel before trading."""
        sym, last, acct, recent = (
            self.sym.copy(),
            self.last_ns.copy(),
            self.acct.copy(),
            self.recent.copy(),
        )
        sym[0, nb.S_PRICE] = 100.0
        acct[[nb.A_EQUITY, nb.A_BUYING_POWER]] = 1e6
        nb.check_nb(
            self.limits_array, sym, last, acct, recent, self.returns, self.scratch,
            0, 1.0, 100.0, False, True, 1, self.out,
        )  # fmt: skip
        nb.record_order_nb(recent, 0, 1)
        nb.update_price_nb(
            sym, last, self.vol_ring.copy(), self.vol_count.copy(), self.vol_params, 0, 100.0, 1
        )
        scenarios = np.linspace(-0.05, 0.05, 128).reshape(-1, 1).repeat(len(self.symbols), 1)
        nb.var_nb(sym, scenarios, np.zeros(128), 0, 1.0, 0.99)

    # -- state ------------------------------------------------------------------------------
    @property
    def halted(self) -> bool:
        """Kill switch engaged."""
        return bool(self.acct[nb.A_HALTED])

    @halted.setter
    def halted(self, value: bool) -> None:
        self.acct[nb.A_HALTED] = 1.0 if value else 0.0

    @property
    def breaker(self) -> float:
        """Circuit-breaker state as the kernel reads it (``nb.BREAKER_*``)."""
        return float(self.acct[nb.A_BREAKER])

    @breaker.setter
    def breaker(self, value: float) -> None:
        self.acct[nb.A_BREAKER] = value

    def update_price(self, s: int, price: float, now_ns: int) -> None:
        """Record a market-data update (USD) of symbol ``s`` received at ``now_ns``
        (wall clock, ns since epoch UTC)."""
        nb.update_price_nb(
            self.sym, self.last_ns, self.vol_ring, self.vol_count, self.vol_params, s, price, now_ns
        )

    def set_position(self, s: int, position: float, pending: float) -> None:
        """Signed shares held and in open orders for symbol ``s``."""
        self.sym[s, nb.S_POS] = position
        self.sym[s, nb.S_PEND] = pending

    def set_account(self, equity: float, buying_power: float) -> None:
        """The broker account's equity and buying power, USD."""
        self.acct[nb.A_EQUITY] = equity
        self.acct[nb.A_BUYING_POWER] = buying_power

    def set_day(self, day_pnl: float, day_peak_pnl: float, open_orders: int) -> None:
        """Realized + unrealized P&L since the session open and its peak today (USD), and
        the orders sent and not yet terminal."""
        self.acct[nb.A_DAY_PNL] = day_pnl
        self.acct[nb.A_DAY_PEAK] = day_peak_pnl
        self.acct[nb.A_OPEN_ORDERS] = open_orders

    # -- checks -----------------------------------------------------------------------------
    def check_code(
        self, s: int, qty: float, price: float, now_ns: int, limit_order: bool, day_tif: bool
    ) -> int:
        """Run every control (hot path); 0 if approved, else a :mod:`live.risk.nb` code
        (then :meth:`explain` names it). Arguments as in :func:`live.risk.nb.check_nb`."""
        return int(
            nb.check_nb(
                self.limits_array,
                self.sym,
                self.last_ns,
                self.acct,
                self.recent,
                self.returns,
                self.scratch,
                s,
                qty,
                price,
                limit_order,
                day_tif,
                now_ns,
                self.out,
            )
        )

    def record(self, s: int, now_ns: int) -> None:
        """Count one approved order of symbol ``s`` in the order-rate windows."""
        nb.record_order_nb(self.recent, s, now_ns)

    def var(self, s: int = 0, qty: float = 0.0) -> float:
        """One-day VaR (USD) of the portfolio after an order of ``qty`` shares of symbol
        ``s`` (NaN without ``[var]``); see :func:`live.risk.nb.var_nb`."""
        if self.returns.shape[0] == 0:
            return math.nan
        return float(
            nb.var_nb(
                self.sym, self.returns, self.scratch, s, qty, self.limits_array[nb.L_VAR_CONFIDENCE]
            )
        )

    def explain(self, code: int) -> RiskDecision:
        """Describe the outcome ``code`` of the last :meth:`check_code`."""
        if code == nb.APPROVED:
            return RiskDecision(True)
        control = nb.CONTROLS[code]
        value, limit = float(self.out[0]), float(self.out[1])
        texts = {
            nb.KILL_SWITCH: ("order", "engaged"),
            nb.CIRCUIT_BREAKER: (_BREAKER_STATES.get(value, "?"), "closed"),
            nb.FRACTIONAL: (f"{value:g} shares", "market/day orders only"),
            nb.SUB_PENNY: (f"{value:.6f}", f"tick {limit:g}"),
            nb.NOT_SHORTABLE: (f"{value:g} shares after", ">= 0"),
            nb.STALE_DATA: (f"{value:.3f}", f"{limit:g}"),
        }
        v, lim = texts.get(code, (f"{value:.6g}", f"{limit:.6g}"))
        return RiskDecision(False, control, lim, v)

    def check(
        self,
        symbol: str,
        qty: float,
        price: float,
        *,
        now_ns: int | None = None,
        limit_order: bool = False,
        day_tif: bool = True,
    ) -> RiskDecision:
        """Check one intent against the current state and describe the outcome.

        Parameters
        ----------
        symbol : str
            One of :attr:`symbols`.
        qty : float
            Signed order quantity, shares (+ buy, - sell); non-zero.
        price : float
            Limit price or expected fill price, USD per share.
        now_ns : int, optional
            Wall clock, ns since epoch UTC (default now).
        limit_order, day_tif : bool
            Order type limit (else market); time in force ``day``.

        Raises
        ------
        KeyError
            Unknown symbol.
        """
        now = time.time_ns() if now_ns is None else now_ns
        code = self.check_code(self.index[symbol], qty, price, now, limit_order, day_tif)
        return self.explain(code)
