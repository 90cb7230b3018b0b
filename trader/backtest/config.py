"""The execution and cost model of a backtest: one frozen, validated object."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from trader.backtest.enums import OrderType, TimeInForce

# Layout of the float64 vector the kernels read (ExecutionConfig.to_array()).
C_ORDER_TYPE = 0
C_TIF = 1
C_LIMIT_OFFSET_BPS = 2
C_STOP_OFFSET_BPS = 3
C_COMMISSION_PER_SHARE = 4
C_COMMISSION_BPS = 5
C_COMMISSION_MIN = 6
C_SLIPPAGE_BPS = 7
C_SPREAD_BPS = 8
C_LATENCY_NS = 9
C_BAR_NS = 10
C_PARTICIPATION = 11
C_CASH_CHECK = 12
N_CONFIG = 13


class ExecutionConfig(BaseModel):
    """How the strategy's targets become orders, and what filling them costs.

    The strategy returns a target position at each bar's close; when it changes, an
    order of :attr:`order_type` for the difference is sent and arrives
    ``bar_ns + latency_ns`` after the bar's start (see :mod:`trader.backtest.nb` for the
    fill rules). Prices derived from the decision bar's close ``c`` for an order of side
    ``s`` (+1 buy, -1 sell), rounded to the tick (0.01 USD at or above 1 USD, else
    0.0001):

    * limit: ``c * (1 - s * limit_offset_bps / 1e4)`` (a buy below the close);
    * stop: ``c * (1 + s * stop_offset_bps / 1e4)`` (a buy above the close);
    * stop-limit: that stop, and the limit ``stop * (1 + s * limit_offset_bps / 1e4)``.

    Costs per fill of ``q`` shares at price ``p`` (USD):
    commission ``max(commission_min, q * commission_per_share + q * p * commission_bps
    / 1e4)``; market and stop fills pay ``slippage_bps + spread_bps / 2`` on the price
    (against the buyer), limit fills none (they fill at the limit or better).

    Raises
    ------
    pydantic.ValidationError
        On an unknown key, a negative cost, offset or latency, a participation outside
        (0, 1], a non-positive bar length, or offsets given for market orders.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    order_type: OrderType = Field(OrderType.MARKET, description="type of every order")
    time_in_force: TimeInForce = Field(TimeInForce.DAY, description="time in force")
    limit_offset_bps: float = Field(0.0, ge=0, description="limit away from the close, bps")
    stop_offset_bps: float = Field(0.0, ge=0, description="stop away from the close, bps")
    commission_per_share: float = Field(0.0, ge=0, description="USD per share")
    commission_bps: float = Field(0.0, ge=0, description="bps of traded notional")
    commission_min: float = Field(0.0, ge=0, description="minimum per fill, USD")
    slippage_bps: float = Field(0.0, ge=0, description="on market and stop fills, bps")
    spread_bps: float = Field(
        0.0, ge=0, description="assumed bid-ask spread on bars, bps; half of it is paid"
    )
    latency_ns: int = Field(0, ge=0, description="decision to arrival, ns")
    bar_ns: int | None = Field(
        None,
        gt=0,
        description="bar length, ns (decision time = start + bar_ns); None: inferred",
    )
    max_participation: float = Field(
        1.0, gt=0, le=1, description="max fraction of a bar's volume we may fill"
    )
    cash_check: bool = Field(True, description="buys limited to what cash pays for")

    @model_validator(mode="after")
    def _offsets_fit_type(self) -> ExecutionConfig:
        if self.order_type == OrderType.MARKET and (self.limit_offset_bps or self.stop_offset_bps):
            raise ValueError("limit/stop offsets given for market orders")
        return self

    def to_array(self, bar_ns: int = 0) -> np.ndarray:
        """Return the kernels' config vector, shape (N_CONFIG,) float64 (``C_*`` layout).

        ``bar_ns`` (ns) is used when :attr:`bar_ns` is None (0 for quote events).
        """
        out = np.empty(N_CONFIG)
        out[C_ORDER_TYPE] = int(self.order_type)
        out[C_TIF] = int(self.time_in_force)
        out[C_LIMIT_OFFSET_BPS] = self.limit_offset_bps
        out[C_STOP_OFFSET_BPS] = self.stop_offset_bps
        out[C_COMMISSION_PER_SHARE] = self.commission_per_share
        out[C_COMMISSION_BPS] = self.commission_bps
        out[C_COMMISSION_MIN] = self.commission_min
        out[C_SLIPPAGE_BPS] = self.slippage_bps
        out[C_SPREAD_BPS] = self.spread_bps
        out[C_LATENCY_NS] = float(self.latency_ns)
        out[C_BAR_NS] = float(self.bar_ns if self.bar_ns is not None else bar_ns)
        out[C_PARTICIPATION] = self.max_participation
        out[C_CASH_CHECK] = 1.0 if self.cash_check else 0.0
        return out


#: Daily bars: a decision at the session's close acts from the next session.
DAY_NS = 86_400_000_000_000

__all__ = ["DAY_NS", "ExecutionConfig"]
