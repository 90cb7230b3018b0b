"""XGBoost training, ONNX export and the ONNX parity check.

Training is reproducible: a fixed seed, one thread and the ``hist`` tree method give
the same trees for the same inputs, and the export writes a fixed graph name and
producer, so the same inputs give the same ``model.onnx`` bytes (the promotion gate's
reproducibility check compares their SHA-256).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxmltools import convert_xgboost
from onnxmltools.convert.common.data_types import FloatTensorType
from pydantic import BaseModel, ConfigDict, Field
from xgboost import XGBClassifier

from trader.ml.nb import N_FEATURES

#: ONNX opset of the export: onnxmltools' XGBoost converter supports up to 15.
ONNX_OPSET = 15
GRAPH_NAME = "trader_ml_xgb"
INPUT_NAME = "features"
PROBA_OUTPUT = "probabilities"


class XgbParams(BaseModel):
    """Hyper-parameters of the XGBoost classifier (validated on creation)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_estimators: int = Field(100, ge=1, le=2000, description="boosting rounds (trees)")
    max_depth: int = Field(4, ge=1, le=12, description="tree depth")
    learning_rate: float = Field(0.05, gt=0, le=1)
    subsample: float = Field(0.8, gt=0, le=1, description="row fraction per tree")
    colsample_bytree: float = Field(0.8, gt=0, le=1, description="feature fraction per tree")
    min_child_weight: float = Field(5.0, ge=0)
    seed: int = Field(0, ge=0, description="random seed (row/feature sampling)")


def train_xgb(x: np.ndarray, y: np.ndarray, params: XgbParams | None = None) -> XGBClassifier:
    """Fit a binary XGBoost classifier, single-threaded and seeded (reproducible).

    Parameters
    ----------
    x : ndarray, shape (n, N_FEATURES), float32 or float64
        Finite feature rows (XGBoost works in float32 internally).
    y : ndarray, shape (n,)
        Labels 0/1.
    params : XgbParams, optional
        Defaults of :class:`XgbParams` otherwise.

    Raises
    ------
    ValueError
        Wrong shapes, non-finite features, labels other than 0/1 or a single class.
    """
    p = params or XgbParams()
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.asarray(y)
    if x.ndim != 2 or x.shape[1] != N_FEATURES or y.shape != (x.shape[0],):
        raise ValueError(f"need x (n, {N_FEATURES}) and y (n,), got {x.shape} and {y.shape}")
    if not np.isfinite(x).all():
        raise ValueError("training features contain NaN/inf: drop warm-up rows first")
    classes = set(np.unique(y).tolist())
    if classes != {0.0, 1.0}:
        raise ValueError(f"labels must contain both 0 and 1 and nothing else, got {classes}")
    clf = XGBClassifier(
        n_estimators=p.n_estimators,
        max_depth=p.max_depth,
        learning_rate=p.learning_rate,
        subsample=p.subsample,
        colsample_bytree=p.colsample_bytree,
        min_child_weight=p.min_child_weight,
        random_state=p.seed,
        n_jobs=1,
        tree_method="hist",
        objective="binary:logistic",
        eval_metric="logloss",
    )
    clf.fit(x, y.astype(np.int64))
    return clf


def to_onnx(clf: XGBClassifier) -> bytes:
    """Export ``clf`` to ONNX (opset :data:`ONNX_OPSET`, input ``features`` float32
    ``[None, N_FEATURES]``, outputs ``label`` int64 and ``probabilities`` float32
    ``[None, 2]``) and return the serialised model."""
    model = convert_xgboost(
        clf,
        name=GRAPH_NAME,
        initial_types=[(INPUT_NAME, FloatTensorType([None, N_FEATURES]))],
        target_opset=ONNX_OPSET,
    )
    model.graph.name = GRAPH_NAME
    model.doc_string = ""
    blob: bytes = model.SerializeToString()
    return blob


def model_hash(blob: bytes) -> str:
    """SHA-256 (hex) of a serialised model."""
    return hashlib.sha256(blob).hexdigest()


def onnx_session(blob_or_path: bytes | str) -> ort.InferenceSession:
    """An ONNX Runtime CPU session limited to one thread (no thread pool wake-ups)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(blob_or_path, so, providers=["CPUExecutionProvider"])


def onnx_predict(blob: bytes, x: np.ndarray) -> np.ndarray:
    """P(label = 1) from the ONNX model for every row of ``x``.

    Parameters
    ----------
    blob : bytes
        Serialised ONNX model from :func:`to_onnx`.
    x : ndarray, shape (n, N_FEATURES)
        Cast to float32 (the model's input type).

    Returns
    -------
    ndarray, shape (n,), float64
    """
    sess = onnx_session(blob)
    out = sess.run([PROBA_OUTPUT], {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})
    return np.asarray(out[0][:, 1], dtype=np.float64)


def native_predict(clf: XGBClassifier, x: np.ndarray) -> np.ndarray:
    """P(label = 1) from native XGBoost for every row of ``x`` (float32), shape (n,)."""
    proba = clf.predict_proba(np.ascontiguousarray(x, dtype=np.float32))
    return np.asarray(proba[:, 1], dtype=np.float64)


def onnx_parity(clf: XGBClassifier, blob: bytes, x: np.ndarray) -> dict[str, Any]:
    """Compare native XGBoost and ONNX Runtime probabilities on every row of ``x``.

    Returns
    -------
    dict
        ``rows`` (int), ``max_abs_diff`` (float, probability units) and
        ``label_mismatches`` (rows where the two sides fall on different sides of 0.5).
    """
    a = native_predict(clf, x)
    b = onnx_predict(blob, x)
    return {
        "rows": len(a),
        "max_abs_diff": float(np.max(np.abs(a - b))) if len(a) else 0.0,
        "label_mismatches": int(np.sum((a > 0.5) != (b > 0.5))),
    }
