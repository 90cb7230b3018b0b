"""Configuration of the Alpaca-compatible simulator (``[sim]`` in ``config/live.toml``)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trader import REPO_ROOT


class SimConfig(BaseModel):
    """What the simulator replays, how fast, and with how much money.

    Attributes
    ----------
    data_path : Path
        1-minute bar CSV (see :func:`trader.data.loaders.load_minute_bars`); a relative
        path is resolved against the repository root.
    symbol : str
        The one tradable symbol; the bars of ``data_path`` are its bars.
    start, end : date
        Inclusive New York calendar dates of the replay (regular session bars only).
    speed : float
        Market seconds per wall second (> 0): one 1-minute bar every ``60 / speed`` s.
    initial_cash : Decimal
        Starting cash of the paper account, USD (> 0).
    initial_position_qty, initial_cost_basis : Decimal
        A position the account holds at the start: signed shares of ``symbol`` and the
        signed USD paid for them (deducted from ``initial_cash``). The daemon passes the
        position its database remembers, as an Alpaca paper account keeps its positions
        from one session to the next.
    autostart : bool
        Start the replay when the server starts instead of on the first market-data
        subscription to bars.
    fault_latency_s : float
        Fault injection: seconds added before every trading REST request (>= 0).
    fault_5xx_rate : float
        Fault injection: share of trading REST requests answered 503 *without* being
        processed (0..1).
    fault_lost_response_rate : float
        Fault injection: share of trading REST requests that *are* processed but whose
        response is lost: the connection is closed before the answer (0..1).
    fault_429_rate : float
        Fault injection: share of trading REST requests refused with 429 (0..1).
    rate_limit : int, optional
        Requests per key and wall-clock minute past which trading requests get 429;
        None reports Alpaca's 200 per simulated minute in the headers but never refuses.
    fault_ws_drop_s : float
        Fault injection: every websocket is closed every this many seconds (0: never).
    fault_stall_s : float
        Fault injection: each market-data connection goes silent (open, but sent
        nothing) this many seconds after it subscribes to bars (0: never).
    fault_seed : int
        Seed of the fault draws, so a failing run can be replayed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_path: Path = Path("data/intraday/SPY_2011-01_1min.csv")
    symbol: str = Field("SPY", pattern=r"^[A-Z][A-Z0-9.]{0,9}$")
    start: date = date(2011, 1, 3)
    end: date = date(2011, 1, 31)
    speed: float = 200.0
    initial_cash: Decimal = Decimal("100000")
    initial_position_qty: Decimal = Decimal(0)
    initial_cost_basis: Decimal = Decimal(0)
    autostart: bool = False
    fault_latency_s: float = Field(0.0, ge=0.0)
    fault_5xx_rate: float = Field(0.0, ge=0.0, le=1.0)
    fault_lost_response_rate: float = Field(0.0, ge=0.0, le=1.0)
    fault_429_rate: float = Field(0.0, ge=0.0, le=1.0)
    rate_limit: int | None = Field(None, ge=1)
    fault_ws_drop_s: float = Field(0.0, ge=0.0)
    fault_stall_s: float = Field(0.0, ge=0.0)
    fault_seed: int = 0

    @field_validator("data_path")
    @classmethod
    def _resolve(cls, v: Path) -> Path:
        return v if v.is_absolute() else REPO_ROOT / v

    @field_validator("speed")
    @classmethod
    def _positive_speed(cls, v: float) -> float:
        if not v > 0 or v == float("inf"):
            raise ValueError(f"speed must be a finite number > 0 (market s per wall s), got {v}")
        return v

    @field_validator("initial_cash")
    @classmethod
    def _positive_cash(cls, v: Decimal) -> Decimal:
        if not v.is_finite() or v <= 0:
            raise ValueError(f"initial_cash must be a finite amount > 0 USD, got {v}")
        return v

    @model_validator(mode="after")
    def _ordered_dates(self) -> SimConfig:
        if self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
        return self
