"""Round-trip trades rebuilt from a backtest's signed fills by FIFO lot matching."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trader.backtest import BacktestResult

#: Columns of :func:`trade_list`, in order.
TRADE_COLUMNS = (
    "entry_ts",
    "exit_ts",
    "side",
    "qty",
    "entry_price",
    "exit_price",
    "entry_bar",
    "exit_bar",
    "bars_held",
    "duration",
    "commission",
    "gross_pnl",
    "pnl",
    "return",
)

#: Shares below which an open lot or an unmatched fill remainder counts as zero.
QTY_EPS = 1e-9


@dataclass
class _Lot:
    """An open lot: what is left of one fill that opened or added to the position."""

    fill: int  # row of the opening fill
    bar: int
    price: float  # USD per share
    qty: float  # signed shares still open
    commission_per_share: float  # USD per share of the opening fill


def trade_list(result: BacktestResult) -> pd.DataFrame:
    """Round-trip trades of a backtest, matched first-in first-out from its fills.

    Each fill (signed ``qty``) first closes the oldest open lots of the opposite sign
    (FIFO lot relief, as in the default cost-basis method of US IRS Publication 550), one
    round trip per (opening lot, closing fill) pair, so a partial close yields a round
    trip for the closed part and leaves the rest of the lot open; whatever remains of
    the fill opens a new lot, so a fill that crosses zero (a flip) closes the old side
    and opens the new one. Each fill's commission is charged pro rata to shares, to the
    round trips that use that fill, so a round trip carries its share of the commissions
    of both legs. Lots still open after the last fill are not round trips and are left
    out (their P&L is unrealised).

    Parameters
    ----------
    result : BacktestResult
        Only ``result.fills`` is read (``bar``, ``qty`` signed shares, ``price`` USD,
        ``commission`` USD, index ``ts`` UTC), in time order.

    Returns
    -------
    DataFrame
        One row per round trip, in order of exit then entry, with a ``RangeIndex``:

        - ``entry_ts``, ``exit_ts``: fill times (UTC) of the two legs;
        - ``side``: ``"long"`` (bought then sold) or ``"short"`` (sold then bought);
        - ``qty``: shares closed (> 0);
        - ``entry_price``, ``exit_price``: USD per share, after slippage;
        - ``entry_bar``, ``exit_bar``: bar numbers of the fills; ``bars_held`` is their
          difference (bars) and ``duration`` the calendar time between them (Timedelta);
        - ``commission``: USD, the pro-rata share of both legs' commissions;
        - ``gross_pnl``: USD, ``qty * (exit_price - entry_price)`` for a long and its
          negative for a short;
        - ``pnl``: USD, ``gross_pnl - commission``;
        - ``return``: ``pnl / (qty * entry_price)``, net return on the entry notional
          (fraction).

    Notes
    -----
    When the position is flat after the last fill, ``trades["pnl"].sum()`` equals the
    final equity minus the initial cash (both are ``-sum(qty * price) - sum(commission)``).
    """
    return round_trips(result.fills)


def round_trips(fills: pd.DataFrame) -> pd.DataFrame:
    """:func:`trade_list` on a fills table (``bar``, ``qty``, ``price``, ``commission``,
    index ``ts``) rather than a :class:`~trader.backtest.BacktestResult`."""
    qty = fills["qty"].to_numpy(dtype=np.float64)
    price = fills["price"].to_numpy(dtype=np.float64)
    commission = fills["commission"].to_numpy(dtype=np.float64)
    bar = fills["bar"].to_numpy(dtype=np.int64)
    lots: deque[_Lot] = deque()
    entry_i: list[int] = []
    exit_i: list[int] = []
    closed: list[float] = []
    sign: list[float] = []
    commissions: list[float] = []
    for i in range(len(fills)):
        q = float(qty[i])
        if abs(q) <= QTY_EPS:
            continue
        c_per_share = float(commission[i]) / abs(q)
        while lots and abs(q) > QTY_EPS and np.sign(lots[0].qty) != np.sign(q):
            lot = lots[0]
            m = min(abs(lot.qty), abs(q))
            entry_i.append(lot.fill)
            exit_i.append(i)
            closed.append(m)
            sign.append(float(np.sign(lot.qty)))
            commissions.append(m * (lot.commission_per_share + c_per_share))
            lot.qty -= np.sign(lot.qty) * m
            q -= np.sign(q) * m
            if abs(lot.qty) <= QTY_EPS:
                lots.popleft()
        if abs(q) > QTY_EPS:
            lots.append(_Lot(i, int(bar[i]), float(price[i]), q, c_per_share))

    ent, ext = np.asarray(entry_i, dtype=np.int64), np.asarray(exit_i, dtype=np.int64)
    n = np.asarray(closed, dtype=np.float64)
    s = np.asarray(sign, dtype=np.float64)
    com = np.asarray(commissions, dtype=np.float64)
    ts = pd.DatetimeIndex(fills.index)
    entry_ts, exit_ts = ts[ent], ts[ext]
    gross = s * n * (price[ext] - price[ent])
    pnl = gross - com
    out = pd.DataFrame(
        {
            "entry_ts": entry_ts,
            "exit_ts": exit_ts,
            "side": np.where(s > 0, "long", "short").astype(object),
            "qty": n,
            "entry_price": price[ent],
            "exit_price": price[ext],
            "entry_bar": bar[ent],
            "exit_bar": bar[ext],
            "bars_held": bar[ext] - bar[ent],
            "duration": exit_ts - entry_ts,
            "commission": com,
            "gross_pnl": gross,
            "pnl": pnl,
            "return": pnl / (n * price[ent]),
        }
    )
    return out[list(TRADE_COLUMNS)]


__all__ = ["TRADE_COLUMNS", "round_trips", "trade_list"]
