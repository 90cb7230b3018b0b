"""Structured JSON logs, one file per process under ``.var/log/``, rotated by size, errors
echoed to stderr.

Every line is a JSON object with ``ts`` (ISO-8601 UTC), ``level``, ``component``,
``event`` and the event's fields (``correlation_id`` where an order is concerned: the
engine's ``intent`` line and execution's ``accepted``/``fill`` lines of one order share
it). A file that reaches ``max_bytes`` is renamed ``<component>.log.1`` (older ones
shift up to ``.<backups>``, the oldest is deleted) by :class:`logging.handlers.
RotatingFileHandler`. Secrets are never passed to the logger.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import structlog

#: Size at which a log file is rotated, bytes, and how many rotated files are kept.
MAX_BYTES = 20 * 1024 * 1024
BACKUPS = 5


def _echo_errors(_: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if method in ("error", "critical", "exception"):
        print(
            f"[{event.get('component', '?')}] ERROR {event.get('event')}: "
            f"{ {k: v for k, v in event.items() if k not in ('event', 'component')} }",
            file=sys.stderr,
            flush=True,
        )
    return event


_handlers: list[logging.Handler] = []


def setup_logging(
    component: str, var_dir: Path, *, max_bytes: int = MAX_BYTES, backups: int = BACKUPS
) -> structlog.stdlib.BoundLogger:
    """Configure structlog for this process and return a logger bound to ``component``.

    Parameters
    ----------
    component : str
        Process name; the file is ``<var_dir>/log/<component>.log``.
    var_dir : Path
        The run-time folder (``.var``).
    max_bytes : int
        Rotate the file when it would exceed this size, bytes (> 0).
    backups : int
        Rotated files kept (>= 1).

    Raises
    ------
    ValueError
        If ``max_bytes`` or ``backups`` is out of range.
    """
    if max_bytes <= 0 or backups < 1:
        raise ValueError(
            f"log rotation needs max_bytes > 0 and backups >= 1, got {max_bytes}, {backups}"
        )
    log_dir = var_dir / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        log_dir / f"{component}.log", maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    std = logging.getLogger(f"trader.{component}")
    for old in std.handlers:
        old.close()
    std.handlers = [handler]
    _handlers.append(handler)
    std.setLevel(logging.DEBUG)
    std.propagate = False
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            _echo_errors,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
        logger_factory=lambda *_: std,
        cache_logger_on_first_use=True,
    )
    logger: structlog.stdlib.BoundLogger = structlog.get_logger().bind(component=component)
    return logger


def close_logging() -> None:
    """Close the files opened by :func:`setup_logging` and restore structlog's defaults
    (for a component run inside another process, e.g. :func:`live.replay.replay_engine`)."""
    structlog.reset_defaults()
    while _handlers:
        _handlers.pop().close()
