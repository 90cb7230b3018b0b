"""The strategy's warm-up from the broker's bar history: a restarted engine continues
exactly as if it had never stopped.

The rule
--------
The engine's strategy state (the step kernel's state vector and, for ML strategies, the
streaming features of :class:`~trader.ml.inference.ModelSignal`) is a function of bars
only, defined so that it never depends on when the engine was started:

* a *session* is an XNYS session as for the engine's daily P&L
  (:func:`live.market_hours.session_of`): from its open (09:30 New York, holidays and
  daylight saving from the calendar) to the next session's open, so pre-market bars
  belong to the session before;
* at the first bar at or after every session's open the state is rebuilt from a fresh
  state by stepping the ``N = spec.warmup_bars`` bars before that bar
  (:data:`trader.strategy.WARMUP_BARS` = 390, one regular session of 1-minute bars;
  fewer only where the data has fewer), oldest first;
* within the session every bar is stepped once, in time order.

So the state at a bar is the fold of at most ``N`` bars before its session and of the
session's bars up to it. Both ways of reaching a bar compute that same fold:

* a running engine keeps the last ``N`` bars it stepped (a ring) and re-folds them at a
  session's first bar; the re-fold is skipped when the state already is the fold of the
  ring (after a start, or when fewer than ``N`` bars were ever stepped);
* a starting engine (the day's first start, or a restart after ``kill -9``), before it
  trades, reads the broker's clock and fetches ``GET /v2/stocks/bars`` (1Min, the
  stream's feed): the ``N`` bars before the open of the session the clock is in
  (``sort=desc``) and the session's bars that have ended since, and steps them through
  the same code, sending no order.

Why this rule: a state carried across sessions without a bound would need every bar
since the first start to rebuild (an unbounded fetch, and a dependence on when that
was); a state rebuilt from the session's open alone leaves the strategy cold for the
first hour of every session. With the rule, a restart needs one REST round of at most
``N`` + 390 bars, and the strategy is warm at the open. Against a backtest that carries
its state across sessions, the rebuild changes an EMA of span ``s`` by a relative
``(1 - 2 / (s + 1)) ** N`` (about 1e-13 for ``s = 26``) and rolling windows of up to ``N``
bars not at all; a backtest of one session as the engine trades it is
``run_backtest(N bars before + the session, warmup=N)``.

The seam
--------
The feed starts after the engine, so bars may end between the history fetch and the
first streamed bar; and a dropped stream misses the bars that end while it reconnects.
The engine never steps a bar twice: a streamed bar at or before the last stepped one is
dropped (and counted). At the first bar of every stream connection (the feed announces
each connection before its first bar), if that bar comes more than one bar interval
after the last stepped bar, the bars in between are fetched first
(:meth:`BarHistory.between`) and stepped without orders; the live bar is then decided
with the state of an uninterrupted run. A target change on bars the engine did not
trade on becomes an order on that live bar (target minus position and pending).

Failures
--------
History that cannot be fetched (data API unreachable through the client's retries, a
4xx answer, a malformed bar) is a :class:`~trader.exceptions.TemporaryError` that stops
the engine's start (or, at the seam, the engine) with the cause, unless ``[recovery]
cold_start = true``: then the strategy starts cold (or with the gap) and the degraded
start is logged and audited (``strategy_warmup``, status ``cold`` or ``gap``).

The kernels stay apart from this I/O: :class:`BarHistory` only fetches and validates
bars; the engine steps them (:meth:`live.engine.Engine.warm_up`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from live.alpaca import AlpacaREST
from live.config import BrokerEndpoints
from live.feed import bar_record
from live.market_hours import session_of
from trader.data import BAR_DTYPE
from trader.exceptions import OrderRejected, TemporaryError

NS_PER_S = 1_000_000_000
#: The bar interval of the stream and of the history, ns (1-minute bars).
BAR_NS = 60 * NS_PER_S
#: How far before the session the ``N`` bars are looked for (weekends, holidays).
LOOKBACK_NS = 14 * 86_400 * NS_PER_S


def rfc3339_s(ns: int) -> str:
    """``ns`` since the epoch as an RFC 3339 UTC time, whole seconds (floor)."""
    return f"{np.datetime_as_string(np.datetime64(ns // NS_PER_S, 's'))}Z"


def bars_from_json(rows: list[dict[str, Any]], what: str) -> np.ndarray:
    """Validate Alpaca bar objects into a BAR_DTYPE array (``ts_recv`` = now).

    Parameters
    ----------
    rows : list of dict
        Alpaca's bars (``t`` RFC 3339 UTC, ``o h l c`` USD, ``v`` shares), oldest first.
    what : str
        Names the request in errors.

    Returns
    -------
    ndarray, shape (len(rows),), BAR_DTYPE

    Raises
    ------
    ValueError
        A bar fails :func:`live.feed.bar_record`'s checks, or times do not increase.
    """
    out = np.zeros(len(rows), dtype=BAR_DTYPE)
    now = time.time_ns()
    for i, row in enumerate(rows):
        try:
            out[i] = bar_record(row, now)[0]
        except ValueError as e:
            raise ValueError(f"{what}: bar {i} ({row.get('t')!r}): {e}") from None
    if len(out) > 1 and (np.diff(out["ts_event"]) <= 0).any():
        i = int(np.flatnonzero(np.diff(out["ts_event"]) <= 0)[0]) + 1
        raise ValueError(f"{what}: bar {i} ({rows[i].get('t')!r}) does not follow bar {i - 1}")
    return out


@dataclass(frozen=True)
class History:
    """Bars for a warm-up.

    Attributes
    ----------
    bars : ndarray, BAR_DTYPE
        The ``before`` bars before the session, then the session's ended bars.
    before : int
        How many of ``bars`` precede the session.
    now_ns : int
        The broker's clock when they were fetched, ns since the epoch UTC.
    seconds : float
        Wall time of the fetch (clock and bar requests), s.
    """

    bars: np.ndarray
    before: int
    now_ns: int
    seconds: float


class BarHistory:
    """The broker's 1-minute bars of one symbol for the warm-up (market-data REST of
    Alpaca, or of the simulator, which serves only bars that have ended).

    Parameters
    ----------
    broker : BrokerEndpoints
        Trading URL (the data URL follows it, see :class:`~live.alpaca.AlpacaREST`),
        keys, and the data stream, whose last path segment is the feed (``iex``).
    symbol : str
    n_before : int
        Bars before the session to rebuild the state from (``spec.warmup_bars``).
    """

    def __init__(self, broker: BrokerEndpoints, symbol: str, n_before: int) -> None:
        self.broker = broker
        self.symbol = symbol
        self.n_before = n_before
        self.feed = broker.data_stream_url.rstrip("/").rsplit("/", 1)[-1]

    def _rest(self) -> AlpacaREST:
        b = self.broker
        return AlpacaREST(b.trading_url, b.key_id, b.secret_key)

    async def _fetch(
        self, rest: AlpacaREST, start_ns: int, end_ns: int, *, last: int | None = None
    ) -> np.ndarray:
        """Bars starting in ``[start_ns, end_ns]`` (whole seconds), oldest first; with
        ``last``, only the ``last`` most recent of them."""
        what = f"GET /v2/stocks/bars {self.symbol} {rfc3339_s(start_ns)}..{rfc3339_s(end_ns)}"
        if end_ns < start_ns:
            return np.zeros(0, dtype=BAR_DTYPE)
        got = await rest.bars(
            [self.symbol],
            "1Min",
            rfc3339_s(start_ns),
            rfc3339_s(end_ns),
            feed=self.feed,
            limit=last,
            sort="asc" if last is None else "desc",
        )
        rows = got.get(self.symbol, [])
        bars = bars_from_json(rows if last is None else rows[::-1], what)
        ts = bars["ts_event"]
        return bars[(ts >= start_ns) & (ts <= end_ns)]

    async def _session(self) -> History:
        t0 = time.perf_counter()
        async with self._rest() as rest:
            clock = await rest.clock()
            now = int(pd.Timestamp(clock["timestamp"]).value)
            start = session_of(now).open_ns
            before = np.zeros(0, dtype=BAR_DTYPE)
            if self.n_before:
                before = await self._fetch(
                    rest, start - LOOKBACK_NS, start - NS_PER_S, last=self.n_before
                )
            today = await self._fetch(rest, start, now - BAR_NS)
        bars = np.concatenate([before[-self.n_before :], today])
        return History(bars, len(bars) - len(today), now, time.perf_counter() - t0)

    async def _between(self, after_ns: int, before_ns: int) -> np.ndarray:
        async with self._rest() as rest:
            # whole seconds: bars start on the minute, so (after, before) is
            # [after + 1 s, before - 1 s]
            return await self._fetch(
                rest, (after_ns // NS_PER_S + 1) * NS_PER_S, before_ns - NS_PER_S
            )

    def session(self) -> History:
        """The bars to warm up on now: the ``n_before`` bars before the open of the XNYS
        session the broker's clock is in and the session's bars that have ended.

        Raises
        ------
        TemporaryError
            The broker's clock or data API did not answer (after retries).
        OrderRejected
            The data API refused the request (4xx).
        ValueError
            A malformed bar, times that do not increase, or a clock outside the XNYS
            calendar.
        """
        return asyncio.run(self._session())

    def between(self, after_ns: int, before_ns: int) -> np.ndarray:
        """The bars starting strictly between ``after_ns`` and ``before_ns`` (ns UTC),
        oldest first; errors as :meth:`session`."""
        return asyncio.run(self._between(after_ns, before_ns))


#: What a failed history fetch raises (the engine's start catches exactly these).
FETCH_ERRORS = (TemporaryError, OrderRejected, ValueError, KeyError)
