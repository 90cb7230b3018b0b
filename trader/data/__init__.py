"""Market data: loaders, validation and record dtypes."""

from trader.data.dtypes import BAR_COLUMNS, BAR_DTYPE, BAR_STRUCT
from trader.data.loaders import (
    fingerprint,
    load_daily_csv,
    load_lobster,
    load_minute_bars,
    to_bar_array,
    validate_bars,
)

__all__ = [
    "BAR_COLUMNS",
    "BAR_DTYPE",
    "BAR_STRUCT",
    "fingerprint",
    "load_daily_csv",
    "load_lobster",
    "load_minute_bars",
    "to_bar_array",
    "validate_bars",
]
