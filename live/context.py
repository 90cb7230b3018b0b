"""What the daemon hands to each of its processes (picklable, immutable)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from live.bus import Bus
from live.config import BrokerEndpoints, LiveConfig


@dataclass(frozen=True)
class ComponentContext:
    """Per-session context of a component process.

    Attributes
    ----------
    session_id : str
        This daemon session's id (also in every audit row).
    cfg : LiveConfig
    bus : Bus
        ZeroMQ endpoint addresses.
    broker : BrokerEndpoints
        Broker URLs and keys (execution and feed only use them).
    dsn : str
        Postgres connection string (audit writer).
    approval_key : bytes
        The risk gate's signing key; only the engine and execution see it.
    halted_by : str
        What stops new orders, restored from Postgres at start: ``"kill_switch"``,
        ``"halt"``, or ``""`` (trading).
    restored : dict
        The engine's starting book (:meth:`live.recovery.RestoredState.engine_state`):
        FIFO lots, realized P&L and marks per symbol, and the day's P&L baseline.
    """

    session_id: str
    cfg: LiveConfig
    bus: Bus
    broker: BrokerEndpoints
    dsn: str
    approval_key: bytes = field(repr=False)
    halted_by: str = ""
    restored: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def offline(cls, session_id: str, cfg: LiveConfig, bus: Bus, dsn: str = "") -> ComponentContext:
        """A context for a process that never calls a broker (the audit writer of a test or
        a benchmark, the engine of :func:`live.replay.replay`): ``sim`` mode, broker URLs
        on the unroutable port 1 (a stray call fails at once), a random approval key."""
        broker = BrokerEndpoints(
            mode="sim",
            trading_url="http://127.0.0.1:1",
            trade_stream_url="ws://127.0.0.1:1/stream",
            data_stream_url="ws://127.0.0.1:1/v2/iex",
            key_id="offline",
            secret_key="offline",
        )
        return cls(session_id, cfg, bus, broker, dsn, os.urandom(32))

    @property
    def halted(self) -> bool:
        """True if new orders are stopped (kill switch or halt) at start."""
        return bool(self.halted_by)

    @property
    def var_dir(self) -> Path:
        """The run-time folder (``.var``)."""
        return self.cfg.var_dir
