"""Record dtypes shared by research and live.

``BAR_DTYPE`` is the wire format of a bar on the ZeroMQ market-data socket and
the row type of the backtester's input, so both sides read the same bytes.
"""

from __future__ import annotations

import struct

import numpy as np

#: One OHLCV bar. ``ts_event``: bar *start*, int64 ns since epoch UTC;
#: ``ts_recv``: when our feed received it (int64 ns, 0 in research);
#: prices in USD; ``volume`` in shares.
BAR_DTYPE = np.dtype(
    [
        ("ts_event", "<i8"),
        ("ts_recv", "<i8"),
        ("open", "<f8"),
        ("high", "<f8"),
        ("low", "<f8"),
        ("close", "<f8"),
        ("volume", "<f8"),
    ]
)

#: Columns every bar DataFrame carries, in this order.
BAR_COLUMNS = ("open", "high", "low", "close", "volume")

#: The same layout as ``BAR_DTYPE`` for ``struct``: one call unpacks a bar from the wire
#: into (ts_event, ts_recv, open, high, low, close, volume).
BAR_STRUCT = struct.Struct("<qqddddd")
assert BAR_STRUCT.size == BAR_DTYPE.itemsize
