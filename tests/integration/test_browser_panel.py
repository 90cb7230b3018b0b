"""The operator panel in a real browser: a ``sim`` daemon trades real SPY bars, Voilà
serves ``notebooks/live_panel.ipynb``, headless Chromium (Debian's ``chromium``) driven
by Playwright checks that positions and P&L appear, clicks the kill switch, confirms,
and the control API and the broker then show trading halted and no order open."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from papermill.iorw import load_notebook_node, write_ipynb
from papermill.parameterize import parameterize_notebook

from tests.integration.daemon import TOKEN, Session, broker, resting_order
from trader import REPO_ROOT

pytestmark = pytest.mark.integration
CHROMIUM = Path("/usr/bin/chromium")
#: Where the test leaves its screenshot of the panel (copied to docs/ for the README).
SCREENSHOT = REPO_ROOT / ".var" / "screenshots" / "live_panel.png"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def session(control_session: Session) -> Session:
    """The shared daemon, trading (an earlier module may have halted or killed it)."""
    control_session.post("/resume", {"by": "pytest"})
    return control_session


@pytest.fixture(scope="module")
def voila(session: Session, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of ``live_panel.ipynb``, parameterised for the session, served by Voilà."""
    root = tmp_path_factory.mktemp("voila")
    nb = parameterize_notebook(
        load_notebook_node(str(REPO_ROOT / "notebooks/live_panel.ipynb")),
        {"var_dir": str(session.var), "refresh_s": 0.5},
    )
    write_ipynb(nb, str(root / "live_panel.ipynb"))
    port = _free_port()
    voila_bin = Path(sys.executable).parent / "voila"
    with open(root / "voila.log", "w") as log:
        proc = subprocess.Popen(
            [
                str(voila_bin),
                str(root / "live_panel.ipynb"),
                "--no-browser",
                f"--port={port}",
                "--Voila.ip=127.0.0.1",
                "--show_tracebacks=True",
            ],
            cwd=root,
            env={**os.environ, "TRADER_CONTROL_TOKEN": TOKEN},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}/"
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, (root / "voila.log").read_text()
                try:
                    if requests.get(url + "api/status", timeout=2).status_code < 500:
                        break
                except requests.ConnectionError:
                    pass
                assert time.monotonic() < deadline, "Voilà did not listen within 60 s"
                time.sleep(0.2)
            yield url
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium not installed")
def test_panel_shows_positions_and_pnl_and_its_kill_switch_cancels_everything(
    session: Session, voila: str
) -> None:
    from playwright.sync_api import expect, sync_playwright

    s = session
    s.wait(
        lambda: any(float(p["qty"]) != 0 for p in s.get("/positions").values()), 90, "a position"
    )
    resting_order(s, "resting-panel")  # an order the kill switch must cancel
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(voila, wait_until="domcontentloaded", timeout=60_000)
        positions = page.locator(".trader-positions")
        expect(positions.get_by_text("SPY")).to_be_visible(timeout=60_000)
        expect(page.locator(".trader-pnl")).to_contain_text("realized P&L")
        expect(page.locator(".trader-header")).to_contain_text("SIM")
        expect(page.locator(".trader-header")).to_contain_text("TRADING")
        expect(page.locator(".trader-limits")).to_contain_text("max_position_qty")
        chart = page.locator(".trader-pnl-chart")
        expect(chart).to_be_visible()
        page.wait_for_function(
            "() => document.querySelector('.trader-pnl-chart').naturalWidth > 0", timeout=30_000
        )
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)

        page.get_by_role("button", name="Kill switch").click()
        confirm = page.get_by_role("button", name="Confirm kill")
        expect(confirm).to_be_visible()
        confirm.click()
        message = page.locator(".trader-message")
        expect(message).to_contain_text("every order cancelled", timeout=30_000)
        expect(page.locator(".trader-header")).to_contain_text("KILL SWITCH", timeout=10_000)
        browser.close()

    status = s.get("/status")
    assert status["kill_switch"] is True
    assert status["halted"] is True
    assert s.get("/orders") == []
    assert broker(s, "GET", "/v2/orders") == []  # nothing open at the broker
    resting = broker(
        s, "GET", "/v2/orders:by_client_order_id", params={"client_order_id": "resting-panel"}
    )
    assert resting["status"] == "canceled"
    kills = s.rows("SELECT reason, metadata FROM order_audit_trail WHERE event_type = 'kill'")
    assert kills == [("LivePanel kill switch", {"by": "LivePanel", "flatten": False})]
    assert SCREENSHOT.stat().st_size > 10_000
