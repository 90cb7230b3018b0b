"""Stops: static, trailing, ATR-based and time-based exits evaluated by the engine on
every price update (kernel :func:`live.risk.nb.stop_nb`).

A stop does not send anything itself: it turns the strategy's target into 0, so the
exit is an ordinary intent through the same risk gate (where a reducing order passes
the exposure, loss and VaR controls) and the same audit trail (``stop_triggered``).
"""

from __future__ import annotations

import numpy as np

from live.config import StopLimits
from live.risk import nb


def stop_params(limits: StopLimits | None) -> np.ndarray | None:
    """The kernel's parameter vector for ``[stops]``, or None when every stop is off.

    Returns
    -------
    ndarray, shape (nb.N_STOP_PARAMS,), float64, or None
        bps, bps, multiple, bars, ns.
    """
    if limits is None:
        return None
    p = np.zeros(nb.N_STOP_PARAMS)
    p[nb.P_STATIC_BPS] = limits.static_bps
    p[nb.P_TRAILING_BPS] = limits.trailing_bps
    p[nb.P_ATR_MULTIPLE] = limits.atr_multiple
    p[nb.P_ATR_PERIOD] = limits.atr_period
    p[nb.P_MAX_HOLDING_NS] = limits.max_holding_s * 1e9
    if not (
        p[[nb.P_STATIC_BPS, nb.P_TRAILING_BPS, nb.P_ATR_MULTIPLE, nb.P_MAX_HOLDING_NS]] > 0
    ).any():
        return None
    return p
