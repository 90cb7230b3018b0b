"""Machine-learning strategy: features from the streaming indicator kernels, labels,
XGBoost training with purged walk-forward validation, ONNX export with a parity check,
and the live per-bar inference (:mod:`trader.ml.inference`)."""

from trader.ml.model import (
    ONNX_OPSET,
    XgbParams,
    model_hash,
    native_predict,
    onnx_parity,
    onnx_predict,
    to_onnx,
    train_xgb,
)
from trader.ml.nb import FEATURE_NAMES, N_FEATURES, WARMUP_BARS
from trader.ml.pipeline import (
    Candidate,
    Dataset,
    build_dataset,
    fit_final,
    load_candidate,
    model_signal,
    save_candidate,
    train_export,
)
from trader.ml.validation import WalkForwardResult, walk_forward, walk_forward_splits

__all__ = [
    "FEATURE_NAMES",
    "N_FEATURES",
    "ONNX_OPSET",
    "WARMUP_BARS",
    "Candidate",
    "Dataset",
    "WalkForwardResult",
    "XgbParams",
    "build_dataset",
    "fit_final",
    "load_candidate",
    "model_hash",
    "model_signal",
    "native_predict",
    "onnx_parity",
    "onnx_predict",
    "save_candidate",
    "to_onnx",
    "train_export",
    "train_xgb",
    "walk_forward",
    "walk_forward_splits",
]
