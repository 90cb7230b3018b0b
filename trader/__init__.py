"""Research library: data, indicators, strategies, backtests, metrics, promotion."""

from pathlib import Path

#: The repository root (notebooks resolve ``data/`` and ``models/`` against it).
REPO_ROOT = Path(__file__).resolve().parent.parent

__all__ = ["REPO_ROOT"]
