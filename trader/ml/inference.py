"""Live per-bar inference: streaming features into ONNX Runtime with pre-bound I/O.

The session, its input buffer and its output buffers are created once; per bar the
features are written into the bound input buffer and ``run_with_iobinding`` fills the
bound outputs in place, so a call allocates no arrays (ONNX Runtime, "IOBinding",
https://onnxruntime.ai/docs/api/python/api_summary.html#iobinding).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from trader.exceptions import ArtefactError
from trader.ml.model import INPUT_NAME, PROBA_OUTPUT, onnx_session
from trader.ml.nb import N_FEATURES, feature_state_nb, features_update_nb


class OnnxSignal:
    """One-row ONNX Runtime inference with bound buffers (single thread).

    Parameters
    ----------
    model : Path or bytes
        ``model.onnx`` of a promoted artefact (or its bytes).

    Raises
    ------
    ArtefactError
        If the model cannot be loaded or does not take ``features`` float32
        ``[N, N_FEATURES]`` and give ``probabilities``.
    """

    def __init__(self, model: Path | bytes) -> None:
        try:
            self.session = onnx_session(str(model) if isinstance(model, Path) else model)
        except Exception as e:  # onnxruntime raises its own, unexported exception types
            raise ArtefactError(f"cannot load ONNX model {model!r:.80}: {e}") from None
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        spec = inputs.get(INPUT_NAME)
        if spec is None or spec.type != "tensor(float)" or spec.shape[-1] != N_FEATURES:
            raise ArtefactError(
                f"ONNX model input must be {INPUT_NAME!r} float32 [N, {N_FEATURES}], "
                f"got {[(i.name, i.type, i.shape) for i in inputs.values()]}"
            )
        if PROBA_OUTPUT not in outputs:
            raise ArtefactError(f"ONNX model has no {PROBA_OUTPUT!r} output: {outputs}")
        #: The bound input row; write features here, then call :meth:`run`.
        self.x = np.zeros((1, N_FEATURES), dtype=np.float32)
        self.binding = self.session.io_binding()
        self.binding.bind_cpu_input(INPUT_NAME, self.x)
        self._proba = np.zeros((1, 2), dtype=np.float32)
        for name in outputs:
            if name == PROBA_OUTPUT:
                buf = ort.OrtValue.ortvalue_from_numpy(self._proba)
            else:  # the class label: bound too, so nothing is allocated per call
                buf = ort.OrtValue.ortvalue_from_shape_and_type([1], np.int64)
            self.binding.bind_ortvalue_output(name, buf)
        self._proba_out = self._proba  # the OrtValue wraps this memory (CPU)

    def run(self) -> float:
        """P(up) for the row in :attr:`x` (float; probability units)."""
        self.session.run_with_iobinding(self.binding)
        return float(self._proba_out[0, 1])

    def __call__(self, features: np.ndarray) -> float:
        """P(up) for one feature row, shape (N_FEATURES,) (cast to float32)."""
        self.x[0, :] = features
        return self.run()


class ModelSignal:
    """The live engine's per-bar model input: streaming features, then ONNX.

    ``update`` returns the model's P(up) for the bar, or NaN while a feature warms up:
    the same values as :func:`trader.ml.pipeline.model_signal` gives the backtester.
    """

    def __init__(self, model: Path | bytes) -> None:
        self.onnx = OnnxSignal(model)
        self.state = feature_state_nb()
        # The kernel writes the features straight into the bound float32 input row (its
        # float64 values rounded to nearest, as research's ``astype(np.float32)``).
        self.row = self.onnx.x[0]
        # compile (or load from the numba cache) before the first bar
        features_update_nb(feature_state_nb(), 0, 1.0, 1.0, 1.0, 1.0, self.row)
        self.onnx.run()

    def reset(self) -> None:
        """Forget every bar: back to the fresh feature state (all zeros)."""
        self.state[:] = 0.0

    def update(self, ts_event: int, high: float, low: float, close: float, volume: float) -> float:
        """Advance the features by one bar and run the model.

        Parameters
        ----------
        ts_event : int
            Bar start, ns since epoch UTC.
        high, low, close : float
            USD per share.
        volume : float
            Shares.

        Returns
        -------
        float
            P(up) in [0, 1], or NaN while the features warm up.
        """
        if not features_update_nb(self.state, ts_event, high, low, close, volume, self.row):
            return float("nan")
        return self.onnx.run()
