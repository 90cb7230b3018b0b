"""The circuit breaker: closed -> open -> half-open -> closed.

=============  =====================================================================
state          orders
=============  =====================================================================
closed         the gate's other controls decide
open           no new risk (exits that reduce a position and cancels still pass)
half_open      one probe order may go; while it is in flight no other new risk
=============  =====================================================================

It trips (closed or half-open -> open) on the day's P&L at or below ``-daily_loss``
(once per day: the day's loss limit in the gate keeps blocking new risk afterwards), on
a fall of ``drawdown`` USD from the highest P&L of the last ``drawdown_window_s``, or on
``max_errors`` broker errors/rejections within ``error_window_s``. After ``cooldown_s``
it turns half-open; the probe order's fill closes it, its rejection (or cancel) opens it
again. Time is the market-data clock (ns since epoch UTC of the last bar), so a replay
behaves as it would live and a stalled feed never ends a cool-down. Every transition is
returned as a :class:`Transition` for the caller to audit (``circuit_breaker`` events).

:meth:`CircuitBreaker.describe` is the whole state to keep across a restart (the engine
reports it in its status, the daemon stores it in ``risk_state`` whenever it changes);
:meth:`CircuitBreaker.restore` puts it back without a transition, so a breaker open
before a crash is open after it, with the cool-down it had left (in market time), and
its trip is audited once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from live.config import BreakerLimits
from live.risk import nb

NS = 1_000_000_000
STATE_NAMES = {
    nb.BREAKER_CLOSED: "closed",
    nb.BREAKER_OPEN: "open",
    nb.BREAKER_PROBE_READY: "half_open",
    nb.BREAKER_PROBE_IN_FLIGHT: "half_open",
}


@dataclass(frozen=True)
class Transition:
    """One state change: ``before`` -> ``after`` (names of :data:`STATE_NAMES`) at
    ``ts`` (ns since epoch UTC) because of ``reason``."""

    before: str
    after: str
    reason: str
    ts: int


class CircuitBreaker:
    """The breaker's state machine; :attr:`state` is the value the gate kernel reads
    (``nb.BREAKER_*``).

    Parameters
    ----------
    limits : BreakerLimits
    """

    def __init__(self, limits: BreakerLimits) -> None:
        self.limits = limits
        self.state = nb.BREAKER_CLOSED
        self.reason = ""
        self.since = 0  # market time of the last transition, ns since epoch UTC
        self.opened_at = 0
        self.cooldown_end = 0  # of the last trip: opened_at + cooldown_s
        self.probe_id = ""
        self.loss_tripped_day = -1
        self.peaks: deque[tuple[int, float]] = deque()  # (ts, pnl), pnl decreasing
        self.errors: deque[int] = deque()
        self.trips = 0

    @property
    def name(self) -> str:
        """``closed``, ``open`` or ``half_open``."""
        return STATE_NAMES[self.state]

    def _move(self, state: float, reason: str, ts: int) -> Transition:
        before = self.name
        self.state = state
        self.reason = reason
        self.since = ts
        if state == nb.BREAKER_OPEN:
            self.opened_at = ts
            self.cooldown_end = ts + int(self.limits.cooldown_s * NS)
            self.trips += 1
            self.probe_id = ""
        if state == nb.BREAKER_CLOSED:
            self.peaks.clear()
            self.errors.clear()
        return Transition(before, self.name, reason, ts)

    def _trip(self, reason: str, ts: int) -> Transition | None:
        if self.state == nb.BREAKER_OPEN:
            return None
        return self._move(nb.BREAKER_OPEN, reason, ts)

    def on_pnl(self, ts: int, day_pnl: float, day: int) -> Transition | None:
        """Feed the day's realized + unrealized P&L (USD) at market time ``ts``; ``day``
        numbers the session (the daily-loss trip latches once per day). Also ends the
        cool-down (open -> half-open) when it has passed."""
        lim = self.limits
        window = int(lim.drawdown_window_s * NS)
        peaks = self.peaks
        while peaks and peaks[-1][1] <= day_pnl:
            peaks.pop()
        peaks.append((ts, day_pnl))
        while peaks[0][0] < ts - window:
            peaks.popleft()
        if self.state == nb.BREAKER_OPEN:
            if ts >= self.cooldown_end:
                return self._move(nb.BREAKER_PROBE_READY, "cool-down over: one probe order", ts)
            return None
        if day_pnl <= -float(lim.daily_loss) and self.loss_tripped_day != day:
            self.loss_tripped_day = day
            return self._trip(f"daily loss: P&L {day_pnl:.2f} <= -{lim.daily_loss}", ts)
        fall = peaks[0][1] - day_pnl
        if fall >= float(lim.drawdown):
            peaks.clear()
            peaks.append((ts, day_pnl))
            return self._trip(
                f"rapid drawdown: P&L fell {fall:.2f} >= {lim.drawdown} within "
                f"{lim.drawdown_window_s:g} s",
                ts,
            )
        return None

    def on_error(self, ts: int, what: str) -> Transition | None:
        """Count one broker error or rejection at market time ``ts``."""
        lim = self.limits
        self.errors.append(ts)
        while self.errors[0] < ts - int(lim.error_window_s * NS):
            self.errors.popleft()
        if self.state == nb.BREAKER_PROBE_IN_FLIGHT and what == self.probe_id:
            return self._move(nb.BREAKER_OPEN, f"probe order {what} failed", ts)
        if len(self.errors) >= lim.max_errors:
            self.errors.clear()
            return self._trip(
                f"{lim.max_errors} broker errors/rejections within {lim.error_window_s:g} s "
                f"(last: {what})",
                ts,
            )
        return None

    def on_sent(self, ts: int, client_order_id: str) -> Transition | None:
        """An approved order left; in half-open it is the probe."""
        if self.state != nb.BREAKER_PROBE_READY:
            return None
        self.probe_id = client_order_id
        self.state = nb.BREAKER_PROBE_IN_FLIGHT
        return None

    def on_fill(self, ts: int, client_order_id: str) -> Transition | None:
        """A fill; the probe's closes the breaker."""
        if self.state == nb.BREAKER_PROBE_IN_FLIGHT and client_order_id == self.probe_id:
            return self._move(nb.BREAKER_CLOSED, f"probe order {client_order_id} filled", ts)
        return None

    def set_limits(self, limits: BreakerLimits) -> None:
        """New thresholds (the state and its history are kept; an open breaker's
        cool-down is counted from its trip with the new ``cooldown_s``)."""
        self.limits = limits
        if self.state == nb.BREAKER_OPEN:
            self.cooldown_end = self.opened_at + int(limits.cooldown_s * NS)

    def describe(self) -> dict[str, object]:
        """The ``circuit_breaker`` status document, also the record kept across restarts
        (:meth:`restore`); times are market time, ns since epoch UTC.

        Keys: ``state`` (``closed``/``open``/``half_open``), ``reason`` and ``since``
        (the last transition), ``opened_at`` and ``cooldown_end`` (the last trip and the
        end of its cool-down), ``probe_client_order_id`` (the probe in flight),
        ``trips``, ``loss_tripped_day`` (the day whose daily-loss trip has happened).
        """
        return {
            "state": self.name,
            "reason": self.reason,
            "since": self.since or None,
            "opened_at": self.opened_at or None,
            "cooldown_end": self.cooldown_end or None,
            "probe_client_order_id": self.probe_id or None,
            "trips": self.trips,
            "loss_tripped_day": self.loss_tripped_day,
        }

    def restore(self, doc: dict[str, object]) -> None:
        """Put back a state recorded by :meth:`describe` (no :class:`Transition`: it was
        audited when it happened). An open breaker keeps its cool-down end, a half-open
        one its probe in flight; the drawdown and error windows start empty.

        Raises
        ------
        ValueError
            ``doc`` is not a :meth:`describe` document (the key and value are named).
        """
        try:
            name = doc["state"]
            probe = str(doc.get("probe_client_order_id") or "")
            state = {
                "closed": nb.BREAKER_CLOSED,
                "open": nb.BREAKER_OPEN,
                "half_open": nb.BREAKER_PROBE_IN_FLIGHT if probe else nb.BREAKER_PROBE_READY,
            }[str(name)]
            since, opened_at, cooldown_end, trips, day = (
                int(str(default if doc.get(k) is None else doc[k]))
                for k, default in (
                    ("since", 0),
                    ("opened_at", 0),
                    ("cooldown_end", 0),
                    ("trips", 0),
                    ("loss_tripped_day", -1),
                )
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"circuit breaker record {doc!r} is malformed: {e!r}") from e
        self.state, self.reason, self.probe_id = state, str(doc.get("reason") or ""), probe
        self.since, self.opened_at, self.cooldown_end = since, opened_at, cooldown_end
        self.trips, self.loss_tripped_day = trips, day
