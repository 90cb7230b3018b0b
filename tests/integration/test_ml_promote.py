"""The ML promotion gate end to end on real SPY bars: train, export, replay the bars
through the live engine (real Engine, ZeroMQ sockets, ONNX session, risk gate) and
compare its orders with the backtester's, then promote or refuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SPY_MINUTE
from trader.data import load_minute_bars
from trader.exceptions import ArtefactError
from trader.ml import Candidate, XgbParams, train_export
from trader.promote import load_artefact
from trader.promote.ml import MlThresholds, promote_ml

pytestmark = pytest.mark.integration
PARAMS = {"enter": 0.52, "exit": 0.48, "qty": 10}
OPEN_GATES = MlThresholds(min_auc=0.0, min_sharpe=-1e9, max_drawdown=1.0, min_trades=1)


@pytest.fixture(scope="module")
def candidate() -> Candidate:
    bars = load_minute_bars(SPY_MINUTE, session="regular", start="2011-01-03", end="2011-01-07")
    return train_export(
        bars, 10, XgbParams(n_estimators=30, max_depth=3), n_splits=3, strategy_params=PARAMS
    )


def test_promote_ml_when_gates_pass_then_live_orders_equal_backtest_and_artefact_loads(
    tmp_path: Path, candidate: Candidate
) -> None:
    bars = candidate.data.bars
    path = promote_ml(
        tmp_path, "1", bars, [SPY_MINUTE], PARAMS, candidate.model, candidate.evidence, OPEN_GATES
    )
    art = load_artefact(tmp_path, "ml_threshold", "1")
    assert art.model_path is not None
    assert art.model_path.read_bytes() == candidate.model
    m = json.loads(path.read_text())
    parity = m["evidence"]["backtest_live_parity"]
    assert parity["backtest_orders"] > 10
    assert parity["equal"] == parity["backtest_orders"] == parity["live_orders"]
    assert parity["mismatches"] == 0
    gates = {g["name"]: g for g in m["gates"]}
    assert gates["onnx_parity_max_abs_diff"]["value"] < 1e-5
    assert gates["reproducible_model_hash"]["passed"]
    assert m["evidence"]["model_sha256"] == m["files"]["model.onnx"]
    with pytest.raises(ArtefactError, match="exists"):  # a second promotion never overwrites
        promote_ml(
            tmp_path,
            "1",
            bars,
            [SPY_MINUTE],
            PARAMS,
            candidate.model,
            candidate.evidence,
            OPEN_GATES,
        )


def test_promote_ml_when_oos_below_thresholds_then_refused_and_nothing_written(
    tmp_path: Path, candidate: Candidate
) -> None:
    strict = MlThresholds(min_auc=0.99, min_sharpe=50.0)
    with pytest.raises(ArtefactError, match=r"oos_auc_mean.*oos_sharpe_mean"):
        promote_ml(
            tmp_path,
            "1",
            candidate.data.bars,
            [SPY_MINUTE],
            PARAMS,
            candidate.model,
            candidate.evidence,
            strict,
        )
    assert not (tmp_path / "ml_threshold").exists()


def test_promote_ml_when_model_differs_from_evidence_then_refused(
    tmp_path: Path, candidate: Candidate
) -> None:
    with pytest.raises(ArtefactError, match="not the one the evidence"):
        promote_ml(
            tmp_path,
            "1",
            candidate.data.bars,
            [SPY_MINUTE],
            PARAMS,
            candidate.model + b"\x00",
            candidate.evidence,
            OPEN_GATES,
        )


def test_promote_ml_when_params_differ_from_evidence_then_refused(
    tmp_path: Path, candidate: Candidate
) -> None:
    other = {**PARAMS, "enter": 0.6}
    with pytest.raises(ArtefactError, match="differ from those of the out-of-sample evidence"):
        promote_ml(
            tmp_path,
            "1",
            candidate.data.bars,
            [SPY_MINUTE],
            other,
            candidate.model,
            candidate.evidence,
            OPEN_GATES,
        )
