"""The promotion gates of a model-driven strategy.

A model version reaches ``live`` only with all four kinds of evidence, each a
:class:`~trader.promote.GateResult` recorded in the manifest:

1. out-of-sample walk-forward results (:func:`trader.ml.walk_forward`) against the
   researcher's thresholds: mean AUC, mean and worst fold Sharpe after costs, worst
   fold drawdown, number of trades;
2. ONNX parity: the largest absolute difference between native XGBoost and ONNX Runtime
   probabilities over the whole validation set;
3. backtest–live parity: orders of the live engine replaying the bars minus the
   backtester's orders (bar, side, quantity); zero mismatches required;
4. reproducibility: training twice on the same inputs gives the same ``model.onnx``
   SHA-256.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from trader.exceptions import ArtefactError
from trader.ml import build_dataset, model_hash, model_signal
from trader.promote import MODEL_FILE, GateResult, promote
from trader.strategy import get_strategy

if TYPE_CHECKING:
    from live.config import RiskLimits

#: ONNX parity tolerance in probability units (the issue's acceptance level).
ONNX_PARITY_TOL = 1e-5


class MlThresholds(BaseModel):
    """Out-of-sample thresholds of the ML gate (notebook parameters)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_auc: float = Field(0.52, ge=0, le=1, description="mean fold AUC at least")
    min_sharpe: float = Field(0.0, description="mean fold Sharpe after costs at least")
    min_fold_sharpe: float = Field(-1e9, description="worst fold Sharpe at least")
    max_drawdown: float = Field(0.05, gt=0, description="worst fold drawdown, fraction")
    min_trades: int = Field(10, ge=0, description="fills over all test folds")
    max_onnx_diff: float = Field(ONNX_PARITY_TOL, gt=0, le=ONNX_PARITY_TOL)


def ml_gates(
    oos: dict[str, float],
    onnx_max_abs_diff: float,
    order_mismatches: int,
    model_hashes: tuple[str, str],
    thresholds: MlThresholds,
) -> list[GateResult]:
    """Build the gate results of an ML candidate.

    Parameters
    ----------
    oos : dict
        :meth:`trader.ml.WalkForwardResult.summary` (``auc_mean``, ``sharpe_mean``,
        ``sharpe_min``, ``max_drawdown_max``, ``n_trades_total``).
    onnx_max_abs_diff : float
        Largest |native - ONNX| probability on the validation set.
    order_mismatches : int
        Orders in one of backtest and live replay but not the other (0 = identical).
    model_hashes : (str, str)
        SHA-256 of ``model.onnx`` from two trainings on the same inputs.
    thresholds : MlThresholds

    Returns
    -------
    list of GateResult
        NaN figures (e.g. AUC of a single-class fold) fail their gate.
    """
    t = thresholds
    return [
        GateResult("oos_auc_mean", oos["auc_mean"], ">=", t.min_auc),
        GateResult("oos_sharpe_mean", oos["sharpe_mean"], ">=", t.min_sharpe),
        GateResult("oos_sharpe_min", oos["sharpe_min"], ">=", t.min_fold_sharpe),
        GateResult("oos_max_drawdown", oos["max_drawdown_max"], "<=", t.max_drawdown),
        GateResult("oos_n_trades", oos["n_trades_total"], ">=", float(t.min_trades)),
        GateResult("onnx_parity_max_abs_diff", onnx_max_abs_diff, "<=", t.max_onnx_diff),
        GateResult("backtest_live_order_mismatches", float(order_mismatches), "<=", 0.0),
        GateResult("reproducible_model_hash", float(model_hashes[0] == model_hashes[1]), ">=", 1.0),
    ]


def promote_ml(
    models_dir: Path,
    version: str,
    bars: pd.DataFrame,
    data_files: list[Path],
    params: dict[str, Any],
    model: bytes,
    evidence: dict[str, Any],
    thresholds: MlThresholds,
    risk: RiskLimits | None = None,
    strategy: str = "ml_threshold",
) -> Path:
    """Check every ML gate and, if all pass, promote ``model`` as ``strategy`` v``version``.

    The backtest–live parity replays ``bars`` through the live engine
    (:func:`live.replay.replay_engine`) of a staged copy of the candidate (a temporary
    models folder holding the same ``model.onnx``) and compares its orders with the
    backtester's on the ONNX signal (:func:`trader.ml.model_signal`).

    Parameters
    ----------
    models_dir : Path
        Where the artefact is written (``models/``).
    version : str
        Artefact version (never overwritten).
    bars : DataFrame
        The real bars of the parity replay.
    data_files : list of Path
        Every data file behind the evidence (fingerprinted in the manifest).
    params : dict
        :class:`~trader.strategy.MlThresholdParams` values.
    model : bytes
        ``model.onnx`` from :func:`trader.ml.to_onnx`.
    evidence : dict
        From the training notebook: ``oos`` (:meth:`WalkForwardResult.summary`),
        ``onnx_parity`` (:func:`trader.ml.onnx_parity`, key ``max_abs_diff``),
        ``model_sha256_runs`` (two hashes of independent trainings), plus anything to
        record (folds, hyper-parameters, horizon).
    thresholds : MlThresholds
    risk : RiskLimits, optional
        Limits of the replayed risk gate; by default limits no replayed order reaches
        (``config/risk.toml``'s rate limit counts wall-clock minutes, which a replay
        compresses).

    Returns
    -------
    Path
        The manifest.

    Raises
    ------
    ArtefactError
        A gate failed (all are named), the model hash or the strategy parameters differ
        from the evidence's, or the version exists.
    """
    from live.config import RiskLimits as Limits
    from live.replay import backtest_orders, order_parity, replay_engine

    runs = evidence["model_sha256_runs"]
    if model_hash(model) not in runs:
        raise ArtefactError("the model to promote is not the one the evidence was computed on")
    wanted = get_strategy(strategy).params(params).model_dump()
    if evidence.get("strategy_params") != wanted:
        raise ArtefactError(
            f"strategy parameters {wanted} differ from those of the out-of-sample evidence "
            f"{evidence.get('strategy_params')}: re-run train_export with them"
        )
    limits = risk or Limits(
        max_order_qty=10**6,
        max_order_notional=10**9,
        min_order_value=0,
        max_orders_per_minute=10_000,
        max_orders_per_minute_per_symbol=10_000,
        max_position_qty=10**6,
        max_position_notional=10**9,
        max_open_positions=10**6,
        max_open_orders=10**6,
        max_gross_exposure=10**9,
        max_net_exposure=10**9,
        max_concentration=1.0,
        daily_loss_limit=10**9,
        max_intraday_drawdown=10**9,
        price_collar_bps=10**6,
        max_data_age_s=10**9,
    )
    with tempfile.TemporaryDirectory(prefix="stage-") as tmp:
        stage = Path(tmp)
        staged = [GateResult("staged_for_replay", 1.0, ">=", 1.0)]
        promote(
            stage,
            strategy,
            "stage",
            params,
            {},
            staged,
            data_files,
            extra_files={MODEL_FILE: model},
        )
        live = replay_engine(bars, stage, strategy, "stage", limits)
    signal = model_signal(model, build_dataset(bars, horizon=1))
    parity = order_parity(backtest_orders(bars, strategy, params, signal), live, len(bars))
    gates = ml_gates(
        evidence["oos"],
        evidence["onnx_parity"]["max_abs_diff"],
        parity["mismatches"],
        (runs[0], runs[1]),
        thresholds,
    )
    metrics = {f"oos_{k}": float(v) for k, v in evidence["oos"].items()}
    record = {
        **evidence,
        "backtest_live_parity": {**parity, "bars": len(bars), "replay": "live.engine.Engine"},
        "thresholds": thresholds.model_dump(),
        "model_sha256": model_hash(model),
    }
    return promote(
        models_dir,
        strategy,
        version,
        params,
        metrics,
        gates,
        data_files,
        extra_files={MODEL_FILE: model},
        evidence=record,
    )
