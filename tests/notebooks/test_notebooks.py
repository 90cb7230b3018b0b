"""The research notebooks, executed by papermill on the real data with small parameters."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from trader import REPO_ROOT
from trader.promote import load_artefact
from trader.research import run_notebook

pytestmark = pytest.mark.notebooks
NOTEBOOKS = REPO_ROOT / "notebooks"


def _outputs(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return json.dumps([c.get("outputs", []) for c in nb.cells])


def test_explore_notebook_when_run_then_indicators_chart_and_lobster_summary(
    tmp_path: Path,
) -> None:
    out = tmp_path / "explore.ipynb"
    run_notebook(NOTEBOOKS / "explore.ipynb", out, {"day": "2011-01-04", "daily_symbol": "MSFT"})
    text = _outputs(out)
    assert "image/png" in text
    assert "ema12" in text and "upper" in text and "rsi" in text
    assert "6268" in text  # trades in the LOBSTER hour (data/PROVENANCE.md)


def test_backtest_notebook_when_run_then_metrics_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "backtest.ipynb"
    run_notebook(NOTEBOOKS / "backtest.ipynb", out,
                 {"start": "2011-01-03", "end": "2011-01-05", "fast": 5, "slow": 20})
    text = _outputs(out)
    assert "total_return" in text and "max_drawdown" in text
    assert "image/png" in text  # the equity/drawdown figure was drawn
    assert out.with_suffix(".html").stat().st_size > 10_000


def test_sweep_notebook_when_run_then_ranked_grid_heatmap_and_out_of_sample(
    tmp_path: Path,
) -> None:
    out = tmp_path / "sweep.ipynb"
    run_notebook(NOTEBOOKS / "sweep.ipynb", out,
                 {"in_sample": ["2011-01-03", "2011-01-05"],
                  "out_of_sample": ["2011-01-06", "2011-01-07"],
                  "fast": [3, 5], "slow": [5, 20, 30], "rsi_overbought": [70.0]})
    text = _outputs(out)
    assert "5 parameter sets on 1170 in-sample bars (1 invalid" in text  # 3 days x 390
    assert "image/png" in text  # heatmap and out-of-sample equity
    assert "out_of_sample" in text and "best set" in text


def test_promote_notebook_when_gates_pass_then_verified_artefact(tmp_path: Path) -> None:
    run_notebook(NOTEBOOKS / "promote.ipynb", tmp_path / "promote.ipynb",
                 {"models_dir": str(tmp_path / "models"), "version": "9",
                  "start": "2011-01-03", "end": "2011-01-07", "min_trades": 5})
    art = load_artefact(tmp_path / "models", "ema_rsi", "9")
    assert art.manifest["metrics"]["n_trades"] >= 5
    assert {g["name"] for g in art.manifest["gates"]} == {
        "min_trades", "max_drawdown", "min_total_return"}


def test_promote_notebook_when_gate_fails_then_execution_error_and_no_artefact(
    tmp_path: Path,
) -> None:
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError, match="gates failed"):
        run_notebook(NOTEBOOKS / "promote.ipynb", tmp_path / "promote.ipynb",
                     {"models_dir": str(tmp_path / "models"), "start": "2011-01-03",
                      "end": "2011-01-04", "min_trades": 100_000})
    assert not (tmp_path / "models" / "ema_rsi").exists()


def test_committed_notebooks_have_no_outputs_and_a_parameters_cell() -> None:
    for path in NOTEBOOKS.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), path
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), path


def test_train_export_then_promote_ml_when_thresholds_met_then_artefact_with_model(
    tmp_path: Path,
) -> None:
    cand = tmp_path / "candidate"
    run_notebook(NOTEBOOKS / "train_export.ipynb", tmp_path / "train_export.ipynb",
                 {"start": "2011-01-03", "end": "2011-01-07", "horizon": 10, "n_splits": 3,
                  "n_estimators": 20, "max_depth": 3, "daily_symbols": "",
                  "candidate_dir": str(cand)})
    text = _outputs(tmp_path / "train_export.ipynb")
    assert "auc_mean" in text and "onnx_max_abs_diff" in text and "image/png" in text
    assert (cand / "model.onnx").stat().st_size > 1000
    run_notebook(NOTEBOOKS / "promote.ipynb", tmp_path / "promote.ipynb",
                 {"strategy": "ml_threshold", "models_dir": str(tmp_path / "models"),
                  "version": "3", "start": "2011-01-03", "end": "2011-01-07",
                  "candidate_dir": str(cand), "min_auc": 0.0, "min_sharpe": -1e9,
                  "max_drawdown": 1.0, "min_trades": 1})
    art = load_artefact(tmp_path / "models", "ml_threshold", "3")
    assert art.model_path is not None
    assert art.model_path.read_bytes() == (cand / "model.onnx").read_bytes()
    assert art.manifest["evidence"]["backtest_live_parity"]["mismatches"] == 0
