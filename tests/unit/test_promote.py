"""Promotion gate and artefact verification: refusals for every kind of bad artefact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SPY_MINUTE
from trader import REPO_ROOT
from trader.exceptions import ArtefactError
from trader.promote import GateResult, load_artefact, promote

PARAMS = {"fast": 5, "slow": 20}
PASSING = [GateResult("min_trades", 10.0, ">=", 5.0), GateResult("max_drawdown", 0.01, "<=", 0.02)]


def _promote(models: Path, gates: list[GateResult] = PASSING, **kw: object) -> Path:
    return promote(models, "ema_rsi", "7", PARAMS, {"sharpe": 1.0}, gates, [SPY_MINUTE], **kw)  # type: ignore[arg-type]


def test_promote_when_gates_pass_then_artefact_loads(tmp_path: Path) -> None:
    path = _promote(tmp_path, extra_files={"model.onnx": b"\x08\x01"})
    art = load_artefact(tmp_path, "ema_rsi", "7")
    assert art.params.fast == 5
    assert art.params.slow == 20
    m = json.loads(path.read_text())
    assert m["data"]["SPY_2011-01_1min.csv"] == art.manifest["data"]["SPY_2011-01_1min.csv"]
    assert len(m["data"]["SPY_2011-01_1min.csv"]) == 64
    assert all(g["passed"] for g in m["gates"])


def test_promote_when_a_gate_fails_then_nothing_written(tmp_path: Path) -> None:
    gates = [*PASSING, GateResult("min_sharpe", float("nan"), ">=", 0.5)]
    with pytest.raises(ArtefactError, match="min_sharpe"):
        _promote(tmp_path, gates)
    assert not (tmp_path / "ema_rsi" / "7").exists()


def test_promote_when_version_exists_then_refused(tmp_path: Path) -> None:
    _promote(tmp_path)
    with pytest.raises(ArtefactError, match="exists"):
        _promote(tmp_path)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda d: (d / "manifest.json").unlink(), "missing"),
        (
            lambda d: (d / "manifest.json").write_text(
                (d / "manifest.json").read_text().replace('"fast": 5', '"fast": 6')
            ),
            "content_sha256",
        ),
        (lambda d: (d / "model.onnx").write_bytes(b"\x00"), "does not match"),
        (lambda d: (d / "model.onnx").unlink(), "file model.onnx missing"),
        (lambda d: (d / "extra.bin").write_bytes(b"x"), "not in the manifest"),
        (lambda d: (d / "manifest.json").write_text("{"), "not valid JSON"),
    ],
)
def test_load_artefact_when_tampered_then_refused(
    tmp_path: Path, tamper: object, message: str
) -> None:
    _promote(tmp_path, extra_files={"model.onnx": b"\x08\x01"})
    tamper(tmp_path / "ema_rsi" / "7")  # type: ignore[operator]
    with pytest.raises(ArtefactError, match=message):
        load_artefact(tmp_path, "ema_rsi", "7")


def test_load_artefact_when_failing_gate_recorded_then_refused(tmp_path: Path) -> None:
    path = _promote(tmp_path)
    m = json.loads(path.read_text())
    m["gates"][0]["passed"] = False
    from trader.promote import _content_hash

    m["content_sha256"] = _content_hash(m)  # a consistent manifest that records a failure
    path.write_text(json.dumps(m))
    with pytest.raises(ArtefactError, match="gates not passed"):
        load_artefact(tmp_path, "ema_rsi", "7")


def test_committed_demo_artefact_is_valid() -> None:
    art = load_artefact(REPO_ROOT / "models", "ema_rsi", "1")
    assert art.manifest["data"]  # fingerprints recorded
    assert art.manifest["code_version"] != "unknown"


def test_promote_when_strategy_needs_a_model_and_none_given_then_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtefactError, match=r"needs model\.onnx"):
        promote(tmp_path, "ml_threshold", "1", {}, {}, PASSING, [SPY_MINUTE])
    assert not (tmp_path / "ml_threshold").exists()


def test_load_artefact_when_model_strategy_then_model_path_verified(tmp_path: Path) -> None:
    promote(
        tmp_path,
        "ml_threshold",
        "1",
        {"enter": 0.6, "exit": 0.4},
        {},
        PASSING,
        [SPY_MINUTE],
        extra_files={"model.onnx": b"\x08\x01"},
    )
    art = load_artefact(tmp_path, "ml_threshold", "1")
    assert art.model_path == tmp_path / "ml_threshold" / "1" / "model.onnx"
    assert art.spec.needs_model
    assert load_artefact(REPO_ROOT / "models", "ema_rsi", "1").model_path is None


def test_committed_ml_artefact_is_valid_and_its_model_loads() -> None:
    from trader.ml.inference import OnnxSignal

    art = load_artefact(REPO_ROOT / "models", "ml_threshold", "1")
    assert art.model_path is not None
    assert 0.0 <= OnnxSignal(art.model_path).run() <= 1.0
    ev = art.manifest["evidence"]
    assert ev["backtest_live_parity"]["mismatches"] == 0
    assert (
        ev["model_sha256_runs"][0]
        == ev["model_sha256_runs"][1]
        == art.manifest["files"]["model.onnx"]
    )
