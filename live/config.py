"""Configuration of the live daemon: one frozen, validated object per component.

Values come from ``config/live.toml`` and ``config/risk.toml``; unknown keys, wrong
types and out-of-range values raise :class:`~trader.exceptions.ConfigurationError`
naming the file and the key.
"""

from __future__ import annotations

import os
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from live.sim.config import SimConfig
from trader import REPO_ROOT
from trader.exceptions import ConfigurationError

PAPER_URL = "https://paper-api.alpaca.markets"
LIVE_URL = "https://api.alpaca.markets"
DATA_STREAM_URL = "wss://stream.data.alpaca.markets/v2/iex"
LIVE_CONFIRMATION = "I-UNDERSTAND"

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class RiskLimits(BaseModel):
    """Pre-trade limits (``config/risk.toml``). Money in USD, quantities in shares."""

    model_config = _FROZEN

    max_order_qty: int = Field(gt=0)
    max_order_notional: Decimal = Field(gt=0)
    min_order_value: Decimal = Field(ge=0)
    max_orders_per_minute: int = Field(gt=0, le=10_000)
    max_position_qty: int = Field(gt=0)
    max_position_notional: Decimal = Field(gt=0)
    max_open_orders: int = Field(gt=0)
    daily_loss_limit: Decimal = Field(gt=0)
    max_intraday_drawdown: Decimal = Field(gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> RiskLimits:
        if self.min_order_value >= self.max_order_notional:
            raise ValueError(
                f"min_order_value ({self.min_order_value}) must be below max_order_notional "
                f"({self.max_order_notional})"
            )
        if self.max_order_qty > self.max_position_qty:
            raise ValueError(
                f"max_order_qty ({self.max_order_qty}) exceeds max_position_qty "
                f"({self.max_position_qty})"
            )
        return self


class ControlConfig(BaseModel):
    """Where the control API listens."""

    model_config = _FROZEN

    host: str = "127.0.0.1"
    port: int = Field(8787, ge=0, le=65535)


class DatabaseConfig(BaseModel):
    """Embedded Postgres settings (ignored when ``DATABASE_URL`` is set)."""

    model_config = _FROZEN

    embedded_port: int = Field(55433, ge=1024, le=65535)


class RecoveryConfig(BaseModel):
    """Reconciliation and snapshot schedule (``[recovery]``), seconds."""

    model_config = _FROZEN

    reconcile_interval_s: float = Field(300.0, gt=0)
    snapshot_interval_s: float = Field(60.0, gt=0)


class LiveConfig(BaseModel):
    """The daemon's configuration (``config/live.toml``) with the risk limits."""

    model_config = _FROZEN

    mode: Literal["auto", "sim", "paper", "live"] = "auto"
    strategy: str
    strategy_version: str
    symbol: str = Field(pattern=r"^[A-Z][A-Z0-9.]{0,9}$")
    engine_core: int = Field(1, ge=-1)
    duration_s: float = Field(0.0, ge=0)
    models_dir: Path = REPO_ROOT / "models"
    var_dir: Path = REPO_ROOT / ".var"
    control: ControlConfig = ControlConfig()
    database: DatabaseConfig = DatabaseConfig()
    recovery: RecoveryConfig = RecoveryConfig()
    sim: SimConfig = SimConfig()
    risk: RiskLimits


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigurationError(f"{path}: configuration file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigurationError(f"{path}: not valid TOML: {e}") from None


def _explain(e: ValidationError, where: str) -> ConfigurationError:
    lines = [
        f"{where}: {'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {err.get('input')!r})"
        for err in e.errors()
    ]
    return ConfigurationError("invalid configuration:\n  " + "\n  ".join(lines))


def load_config(
    live_path: Path = REPO_ROOT / "config/live.toml",
    risk_path: Path = REPO_ROOT / "config/risk.toml",
    **overrides: Any,
) -> LiveConfig:
    """Read, merge and validate the live and risk configuration files.

    Parameters
    ----------
    live_path, risk_path : Path
        TOML files.
    **overrides
        Top-level keys of :class:`LiveConfig` to replace (``duration_s=120``) and
        ``sim_speed`` for the simulator's replay speed; ``None`` values are ignored.

    Raises
    ------
    ConfigurationError
        Missing file, bad TOML, unknown key or invalid value (the message names them).
    """
    raw = _read_toml(live_path)
    raw["risk"] = _read_toml(risk_path)
    speed = overrides.pop("sim_speed", None)
    if speed is not None:
        raw["sim"] = {**raw.get("sim", {}), "speed": speed}
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return LiveConfig.model_validate(raw)
    except ValidationError as e:
        raise _explain(e, f"{live_path} / {risk_path}") from None


class BrokerEndpoints(BaseModel):
    """Resolved broker URLs and credentials for the chosen mode (secrets never logged)."""

    model_config = ConfigDict(frozen=True)

    mode: Literal["sim", "paper", "live"]
    trading_url: str
    trade_stream_url: str
    data_stream_url: str
    key_id: str = Field(repr=False)
    secret_key: str = Field(repr=False)


def resolve_mode(cfg: LiveConfig, *, allow_live: bool = False) -> Literal["sim", "paper", "live"]:
    """Decide the trading mode from the configuration and the environment.

    ``auto`` is ``paper`` when ``APCA_API_KEY_ID`` and ``APCA_API_SECRET_KEY`` are set and
    ``sim`` otherwise. ``live`` needs ``allow_live`` (the ``--live`` flag) *and*
    ``TRADER_CONFIRM_LIVE=I-UNDERSTAND``.

    Raises
    ------
    ConfigurationError
        Paper/live without keys, or live without both confirmations.
    """
    has_keys = bool(os.environ.get("APCA_API_KEY_ID") and os.environ.get("APCA_API_SECRET_KEY"))
    mode = cfg.mode if cfg.mode != "auto" else ("paper" if has_keys else "sim")
    if mode in ("paper", "live") and not has_keys:
        raise ConfigurationError(f"mode {mode!r} needs APCA_API_KEY_ID and APCA_API_SECRET_KEY")
    if mode == "live" and not (
        allow_live and os.environ.get("TRADER_CONFIRM_LIVE") == LIVE_CONFIRMATION
    ):
        raise ConfigurationError(
            "mode 'live' trades real money: pass --live and set "
            f"TRADER_CONFIRM_LIVE={LIVE_CONFIRMATION}"
        )
    return mode
