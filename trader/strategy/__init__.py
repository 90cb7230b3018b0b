"""Strategies: parameter objects and the registry mapping a name to its step kernel."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from trader.exceptions import ConfigurationError
from trader.strategy import nb


class StrategyParams(BaseModel):
    """Base of every strategy's parameter object: frozen, validated, no unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_array(self) -> np.ndarray:
        """Return the kernel's parameter vector, float64."""
        raise NotImplementedError


class EmaRsiParams(StrategyParams):
    """Parameters of :func:`trader.strategy.nb.ema_rsi_step_nb` (validated on creation).

    Raises
    ------
    pydantic.ValidationError
        On an unknown key, a non-positive window, ``fast >= slow``, or an RSI level
        outside (0, 100).
    """

    fast: int = Field(12, ge=1, description="fast EMA span, bars")
    slow: int = Field(26, ge=2, description="slow EMA span, bars")
    rsi_window: int = Field(14, ge=1, description="RSI look-back, bars")
    rsi_overbought: float = Field(70.0, gt=0, lt=100, description="no entry at/above this RSI")
    qty: int = Field(100, ge=1, description="position size when long, shares")

    @model_validator(mode="after")
    def _fast_below_slow(self) -> EmaRsiParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be below slow ({self.slow})")
        return self

    def to_array(self) -> np.ndarray:
        """Return the kernel's parameter vector, shape (N_PARAMS,) float64."""
        return np.array(
            [self.fast, self.slow, self.rsi_window, self.rsi_overbought, self.qty],
            dtype=np.float64,
        )


class SignalParams(StrategyParams):
    """Parameters of :func:`trader.strategy.nb.signal_target_step_nb`.

    Raises
    ------
    pydantic.ValidationError
        On an unknown key or a non-positive scale.
    """

    qty: float = Field(1.0, gt=0, description="shares per unit of signal")

    def to_array(self) -> np.ndarray:
        """Return the kernel's parameter vector ``[qty]``, shape (1,) float64."""
        return np.array([self.qty], dtype=np.float64)


class MlThresholdParams(StrategyParams):
    """Parameters of :func:`trader.strategy.nb.ml_threshold_step_nb`.

    Raises
    ------
    pydantic.ValidationError
        On an unknown key, a probability outside [0, 1], ``exit >= enter`` or ``qty < 1``.
    """

    enter: float = Field(0.55, ge=0, le=1, description="go long at/above this P(up)")
    exit: float = Field(0.45, ge=0, le=1, description="go flat at/below this P(up)")
    qty: int = Field(100, ge=1, description="position size when long, shares")

    @model_validator(mode="after")
    def _exit_below_enter(self) -> MlThresholdParams:
        if self.exit >= self.enter:
            raise ValueError(f"exit ({self.exit}) must be below enter ({self.enter})")
        return self

    def to_array(self) -> np.ndarray:
        """Return the kernel's parameter vector, shape (N_ML_PARAMS,) float64."""
        return np.array([self.enter, self.exit, self.qty], dtype=np.float64)


#: Bars of history before a session's first bar that the strategy state is rebuilt
#: from at every session start (one regular session of 1-minute bars): an EMA of span
#: ``s`` then weighs what lies before the window by ``(1 - 2 / (s + 1)) ** 390`` (1e-13
#: for ``s = 26``), and every rolling window of the ML features (at most 61 bars) is full.
WARMUP_BARS = 390


@dataclass(frozen=True)
class StrategySpec:
    """What the backtester and the live engine need to run a strategy.

    ``needs_model``: the step kernel's ``signal`` is a model output, so a promoted
    artefact must carry ``model.onnx`` and the engine runs it per bar.
    ``warmup_bars``: the live engine rebuilds the state at every session start from
    this many bars before the session's first bar (the rule of :mod:`live.warmup`).
    """

    name: str
    params_type: type[StrategyParams]
    step_nb: Callable[..., float]
    state_size: int
    needs_model: bool = False
    warmup_bars: int = WARMUP_BARS

    def params(self, values: dict[str, Any]) -> StrategyParams:
        """Validate ``values`` into this strategy's parameter object."""
        return self.params_type(**values)

    def new_state(self) -> np.ndarray:
        """Return a zeroed state vector, shape (state_size,) float64."""
        return np.zeros(self.state_size)

    def warm_state(
        self, params: np.ndarray, close: np.ndarray, signal: np.ndarray | None = None
    ) -> np.ndarray:
        """The state after stepping the kernel over ``close`` from a fresh state.

        Parameters
        ----------
        params : ndarray, shape (n_params,), float64
            The kernel's parameter vector (:meth:`StrategyParams.to_array`).
        close : ndarray, shape (n,), float64
            Closes, USD, oldest first.
        signal : ndarray, shape (n,), float64, optional
            The step's external input per bar (NaN, the default, for rule strategies).

        Returns
        -------
        ndarray, shape (state_size,), float64
        """
        state = self.new_state()
        sig = np.full(len(close), np.nan) if signal is None else signal
        for c, s in zip(close.tolist(), sig.tolist(), strict=True):
            self.step_nb(state, params, c, s)
        return state


STRATEGIES: dict[str, StrategySpec] = {
    "ema_rsi": StrategySpec("ema_rsi", EmaRsiParams, nb.ema_rsi_step_nb, nb.STATE_SIZE),
    "signal": StrategySpec("signal", SignalParams, nb.signal_target_step_nb, nb.SIGNAL_STATE_SIZE),
    "ml_threshold": StrategySpec(
        "ml_threshold",
        MlThresholdParams,
        nb.ml_threshold_step_nb,
        nb.ML_STATE_SIZE,
        needs_model=True,
    ),
}


def get_strategy(name: str) -> StrategySpec:
    """Look up a strategy by name.

    Raises
    ------
    ConfigurationError
        If ``name`` is not registered.
    """
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown strategy {name!r}; known: {sorted(STRATEGIES)}"
        ) from None


__all__ = [
    "STRATEGIES",
    "WARMUP_BARS",
    "EmaRsiParams",
    "MlThresholdParams",
    "SignalParams",
    "StrategyParams",
    "StrategySpec",
    "get_strategy",
    "nb",
]
