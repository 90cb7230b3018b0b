"""The operator's panel of a running daemon (a client of its control API, nothing else).

It shows the connection and mode badge, the strategy and its version, positions, open
orders, recent fills, a P&L chart, each risk limit with its utilisation, the circuit
breaker and the kill switch, and has halt, resume and kill switch buttons (the kill
asks for confirmation and then shows whether every order was cancelled). Every value
shown comes from the last answers of the API: the panel keeps no state of its own. The
updates run as an asyncio task on the kernel's event loop, so the kernel stays free.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
from collections.abc import Coroutine
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import ipywidgets as w
import pandas as pd
from matplotlib.figure import Figure

from live.client import ControlClient, ControlError
from trader.widgets.render import png, table, utilisation_bar

_BADGE_COLORS = {"sim": "#1565c0", "paper": "#6a1b9a", "live": "#c62828"}
_STATE_COLORS = {"TRADING": "#2e7d32", "HALTED": "#f9a825", "KILL SWITCH": "#c62828"}
_CSS = """<style>
.trader-panel .trader-table {border-collapse: collapse; font-size: 12px}
.trader-panel .trader-table td, .trader-panel .trader-table th {
  border-bottom: 1px solid #ddd; padding: 2px 8px; text-align: right}
.trader-panel .trader-badge {color: white; padding: 2px 8px; border-radius: 4px;
  font-weight: bold; margin-right: 6px}
</style>"""


def _usd(x: Any) -> str:
    return f"{Decimal(str(x)):+,.2f}"


def _badge(text: str, color: str) -> str:
    return f'<span class="trader-badge" style="background:{color}">{text}</span>'


def pnl_figure(history: list[dict[str, Any]]) -> Figure:
    """Realized and total (realized + unrealized) P&L, USD, against the replayed or
    live bar time (``bar_ts``, ns UTC, shown in New York time)."""
    fig = Figure(figsize=(6.5, 2.4))
    ax = fig.add_subplot()
    if history:
        t = pd.to_datetime([p["bar_ts"] for p in history], utc=True).tz_convert("America/New_York")
        realized = [float(p["realized_pnl"]) for p in history]
        total = [float(p["realized_pnl"]) + float(p["unrealized_pnl"]) for p in history]
        ax.plot(t.tz_localize(None), total, lw=1.2, label="total")
        ax.plot(t.tz_localize(None), realized, lw=1.0, ls="--", label="realized")
        ax.legend(loc="upper left", fontsize=8)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylabel("P&L (USD)")
    ax.tick_params(labelsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


class LivePanel:
    """Operator panel of a running daemon.

    Parameters
    ----------
    client : ControlClient
        The daemon's control API.
    refresh_s : float
        Seconds between two updates (> 0).

    Raises
    ------
    ValueError
        If ``refresh_s`` is not positive.
    """

    def __init__(self, client: ControlClient, refresh_s: float = 1.0) -> None:
        if refresh_s <= 0:
            raise ValueError(f"refresh_s must be > 0 seconds, got {refresh_s}")
        self.client = client
        self.refresh_s = refresh_s
        self._task: asyncio.Task[None] | None = None
        self._commands: set[asyncio.Task[None]] = set()
        self._last_history_ts: int | None = None

        def html(cls: str) -> w.HTML:
            h = w.HTML()
            h.add_class(cls)
            return h

        self.header = html("trader-header")
        self.pnl = html("trader-pnl")
        self.positions = html("trader-positions")
        self.orders = html("trader-orders")
        self.fills = html("trader-fills")
        self.limits = html("trader-limits")
        self.breaker = html("trader-breaker")
        self.message = html("trader-message")
        self.chart = w.Image(format="png", layout=w.Layout(width="520px"))
        self.chart.add_class("trader-pnl-chart")
        self.halt_button = w.Button(description="Halt", icon="pause", button_style="warning")
        self.resume_button = w.Button(description="Resume", icon="play", button_style="success")
        self.kill_button = w.Button(description="Kill switch", icon="stop", button_style="danger")
        self.confirm_button = w.Button(description="Confirm kill", button_style="danger")
        self.cancel_button = w.Button(description="Cancel")
        self.confirm_box = w.HBox(
            [
                w.HTML("<b>Cancel every open order and stop trading?</b>"),
                self.confirm_button,
                self.cancel_button,
            ],
            layout=w.Layout(display="none"),
        )
        self.halt_button.on_click(lambda _: self._spawn(self._command("/halt")))
        self.resume_button.on_click(lambda _: self._spawn(self._command("/resume")))
        self.kill_button.on_click(lambda _: self._ask_confirmation(True))
        self.cancel_button.on_click(lambda _: self._ask_confirmation(False))
        self.confirm_button.on_click(lambda _: self._spawn(self._kill()))

        def section(title: str, *children: w.Widget) -> w.VBox:
            return w.VBox(
                [w.HTML(f"<b>{title}</b>"), *children], layout=w.Layout(margin="0 24px 8px 0")
            )

        self.widget = w.VBox(
            [
                w.HTML(_CSS),
                self.header,
                w.HBox([self.halt_button, self.resume_button, self.kill_button]),
                self.confirm_box,
                self.message,
                w.HBox(
                    [
                        section("P&L", self.pnl, self.chart),
                        section("Risk limits", self.limits, self.breaker),
                    ]
                ),
                w.HBox(
                    [
                        section("Positions", self.positions),
                        section("Open orders", self.orders),
                        section("Recent fills", self.fills),
                    ]
                ),
            ]
        )
        self.widget.add_class("trader-panel")

    @classmethod
    def connect(cls, var_dir: str | Path | None = None, refresh_s: float = 1.0) -> LivePanel:
        """Open the panel of the daemon whose run-time folder is ``var_dir`` (default:
        the one ``config/live.toml`` names) and start its background updates.

        Raises
        ------
        ControlError
            If no daemon wrote its URL in ``var_dir``.
        """
        client = (
            ControlClient.from_config()
            if var_dir is None
            else ControlClient.from_var_dir(Path(var_dir))
        )
        panel = cls(client, refresh_s)
        panel.start()
        return panel

    # -- background updates ------------------------------------------------------------
    def start(self) -> None:
        """Start the background updates on the running event loop (the kernel's)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        """Stop the background updates."""
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except (aiohttp.ClientError, ControlError, TimeoutError) as e:
                self.header.value = _badge("DISCONNECTED", "#616161") + f" {e}"
            await asyncio.sleep(self.refresh_s)

    async def refresh(self) -> None:
        """Read the API once and redraw every part of the panel."""
        paths = ("/status", "/positions", "/orders", "/fills", "/pnl", "/risk", "/pnl/history")
        status, positions, orders, fills, pnl, risk, history = await asyncio.gather(
            *(self.client.get(p) for p in paths)
        )
        self._render_header(status)
        self.pnl.value = table(
            [
                (
                    _usd(pnl["realized_pnl"]),
                    _usd(pnl["unrealized_pnl"]),
                    _usd(pnl["day_pnl"]),
                )
            ],
            ("realized P&L", "unrealized P&L", "day P&L"),
        )
        self.positions.value = table(
            (
                (s, p["qty"], f"{Decimal(p['avg_price']):.2f}", _usd(p["unrealized_pnl"]))
                for s, p in positions.items()
                if Decimal(p["qty"]) != 0
            ),
            ("symbol", "shares", "avg price", "unrealized"),
            empty="flat",
        )
        self.orders.value = table(
            ((o["client_order_id"], o["side"], o["qty"], o["status"]) for o in orders),
            ("client_order_id", "side", "qty", "status"),
            empty="no open order",
        )
        self.fills.value = table(
            ((f["symbol"], f["qty"], f["price"], f["client_order_id"]) for f in fills[-8:][::-1]),
            ("symbol", "shares", "price", "client_order_id"),
            empty="no fill yet",
        )
        self.limits.value = table(
            (
                (
                    name,
                    v["limit"],
                    v["value"] if v["value"] is not None else "",
                    utilisation_bar(v["utilisation"]),
                )
                for name, v in risk["limits"].items()
            ),
            ("limit", "value", "now", "utilisation"),
        )
        breaker = status.get("components", {}).get("engine", {}).get("circuit_breaker")
        self.breaker.value = "circuit breaker: " + (
            f"<b>{html.escape(str(breaker['state']))}</b> (trips {breaker.get('trips', 0)})"
            + (f" {html.escape(str(breaker['reason']))}" if breaker.get("reason") else "")
            if isinstance(breaker, dict)
            else "<b>not configured</b>"
        )
        last = history[-1]["ts"] if history else None
        if last != self._last_history_ts:
            self._last_history_ts = last
            self.chart.value = png(pnl_figure(history))

    def _render_header(self, status: dict[str, Any]) -> None:
        state = (
            "KILL SWITCH"
            if status.get("kill_switch")
            else "HALTED"
            if status.get("halted")
            else "TRADING"
        )
        mode = str(status.get("mode", "?"))
        self.header.value = (
            _badge("CONNECTED", "#2e7d32")
            + _badge(mode.upper(), _BADGE_COLORS.get(mode, "#616161"))
            + _badge(state, _STATE_COLORS[state])
            + f" strategy <b>{status.get('strategy')}</b> version "
            f"<b>{status.get('strategy_version')}</b> · {status.get('symbol')} · session "
            f"{status.get('session_id')}"
        )

    # -- commands ----------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._commands.add(task)
        task.add_done_callback(self._commands.discard)

    def _ask_confirmation(self, show: bool) -> None:
        self.confirm_box.layout.display = "flex" if show else "none"

    async def _command(self, path: str) -> None:
        try:
            result = await self.client.post(path, {"reason": "LivePanel", "by": "LivePanel"})
            self.message.value = f"{path[1:]}: {result}"
            await self.refresh()
        except (aiohttp.ClientError, ControlError, TimeoutError) as e:
            self.message.value = f"{path[1:]} failed: {e}"

    async def _kill(self) -> None:
        self._ask_confirmation(False)
        self.message.value = "Kill switch: cancelling every open order…"
        try:
            r = await self.client.post(
                "/kill", {"reason": "LivePanel kill switch", "by": "LivePanel"}
            )
        except (aiohttp.ClientError, ControlError, TimeoutError) as e:
            self.message.value = f"<b>Kill switch request failed:</b> {e}"
            return
        if r.get("confirmed"):
            self.message.value = (
                "<b>Kill switch engaged: every order cancelled</b> (0 open at the broker)"
            )
        else:
            self.message.value = (
                "<b>Kill switch engaged, NOT confirmed:</b> "
                f"{r.get('broker_open_orders')} order(s) still open at the broker"
            )
        with contextlib.suppress(aiohttp.ClientError, ControlError, TimeoutError):
            await self.refresh()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
