"""The project's exceptions, organised by what the operator must do.

=====================  ==============================================
class                  operator action
=====================  ==============================================
``ConfigurationError`` stop; fix the configuration, data or artefact
``TemporaryError``     retry with backoff (network, broker 5xx, 429)
``OrderRejected``      the broker refused an order; inspect and decide
``StrategyError``      the strategy misbehaved; halt it and investigate
=====================  ==============================================

A risk denial is *not* an exception: it is an ``OrderDenied`` event with a
reason (see :mod:`live.risk`).
"""

from __future__ import annotations


class TraderError(Exception):
    """Base class of every error raised by ``trader`` and ``live``."""


class ConfigurationError(TraderError):
    """A configuration value, input file or artefact is wrong: stop and fix it."""


class DataError(ConfigurationError):
    """Market data failed validation (non-monotonic time, NaN, inconsistent OHLC...)."""


class ArtefactError(ConfigurationError):
    """A promoted artefact is missing, failed its gates or does not match its files."""


class TemporaryError(TraderError):
    """A transient failure (timeout, connection reset, 5xx, 429): retry with backoff."""


class UnresolvedBreaks(TraderError):
    """Local state and the broker disagree at start: resolve the breaks, or accept them
    (``python -m live run --accept-breaks``), before trading."""


class OrderRejected(TraderError):
    """The broker rejected an order (4xx other than 429)."""

    def __init__(self, message: str, *, status: int, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class StrategyError(TraderError):
    """A strategy produced an invalid output (NaN target, wrong shape...)."""
