"""HTML and PNG rendering shared by the panels (pure functions of their inputs)."""

from __future__ import annotations

import html
import io
from collections.abc import Iterable, Sequence
from typing import Any

from matplotlib.figure import Figure


class Raw(str):
    """A table cell that is already HTML (not escaped)."""

    __slots__ = ()


def _cell(c: Any) -> str:
    return str(c) if isinstance(c, Raw) else html.escape(str(c))


def table(rows: Iterable[Sequence[Any]], header: Sequence[str], empty: str = "none") -> str:
    """Render ``rows`` as an HTML table (cells escaped unless :class:`Raw`); ``empty``
    when there is no row."""
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        return f"<i>{html.escape(empty)}</i>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return f'<table class="trader-table"><tr>{head}</tr>{body}</table>'


def utilisation_bar(fraction: float | None) -> Raw:
    """An HTML bar for a limit's utilisation (green < 70%, amber < 90%, red above)."""
    if fraction is None:
        return Raw("per order")
    pct = max(0.0, min(1.0, fraction)) * 100
    color = "#2e7d32" if fraction < 0.7 else "#f9a825" if fraction < 0.9 else "#c62828"
    return Raw(
        f'<div style="width:120px;background:#eee;display:inline-block">'
        f'<div style="width:{pct:.0f}%;background:{color};height:10px"></div></div>'
        f" {fraction * 100:.0f}%"
    )


def png(fig: Figure, dpi: int = 80) -> bytes:
    """Render ``fig`` to PNG bytes (Agg; no display side effect)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
