"""Structured JSON logs, one file per process under ``.var/log/``, errors echoed to stderr.

Every line is a JSON object with ``ts`` (ISO-8601 UTC), ``level``, ``component``,
``event`` and the event's fields (``correlation_id`` where an order is concerned).
Secrets are never passed to the logger.
"""

from __future__ import annotations

import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import structlog


def _echo_errors(_: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if method in ("error", "critical", "exception"):
        print(
            f"[{event.get('component', '?')}] ERROR {event.get('event')}: "
            f"{ {k: v for k, v in event.items() if k not in ('event', 'component')} }",
            file=sys.stderr,
            flush=True,
        )
    return event


_open_files: list[Any] = []


def setup_logging(component: str, var_dir: Path) -> structlog.stdlib.BoundLogger:
    """Configure structlog for this process and return a logger bound to ``component``."""
    log_dir = var_dir / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    f = open(log_dir / f"{component}.log", "a", buffering=1)  # noqa: SIM115 (process lifetime)
    _open_files.append(f)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            _echo_errors,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.WriteLoggerFactory(file=f),
        cache_logger_on_first_use=True,
    )
    logger: structlog.stdlib.BoundLogger = structlog.get_logger().bind(component=component)
    return logger


def close_logging() -> None:
    """Close the files opened by :func:`setup_logging` and restore structlog's defaults
    (for a component run inside another process, e.g. :func:`live.replay.replay_engine`)."""
    structlog.reset_defaults()
    while _open_files:
        _open_files.pop().close()
