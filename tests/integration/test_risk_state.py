"""The engine's risk state reaches ``risk_state`` on the shared ``sim`` daemon: a
circuit-breaker trip is stored as the engine reports it, which is what a restart puts
back (:func:`live.recovery.restore`)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from live.recovery import restore
from tests.integration.daemon import TOKEN, Session

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def session(control_session: Session) -> Session:
    """The shared daemon, trading (an earlier module may have halted or killed it)."""
    control_session.post("/resume", {"by": "pytest"})
    return control_session


def _put_limits(s: Session, limits: dict[str, Any]) -> None:
    r = requests.put(
        s.url + "/limits", json={"limits": limits, "by": "pytest"}, headers=AUTH, timeout=10
    )
    assert r.status_code == 200, r.text


def test_breaker_trip_is_stored_in_risk_state_as_the_engine_reports_it(session: Session) -> None:
    s = session
    day_ns = 86_400 * 10**9
    _put_limits(
        s,
        {
            "breaker": {
                "daily_loss": 1_000_000,
                "drawdown": 0.01,  # any fall of the day's P&L trips it
                "drawdown_window_s": 600,
                "max_errors": 1000,
                "error_window_s": 60,
                "cooldown_s": 30 * 86_400,
            }
        },
    )
    try:
        doc = s.wait(
            lambda: (
                (b := s.get("/status")["components"]["engine"]["circuit_breaker"]) is not None
                and b["state"] == "open"
                and b
            ),
            60,
            "the breaker to trip",
        )
        assert doc["cooldown_end"] == doc["opened_at"] + 30 * day_ns
        # stored by the daemon as it received the engine's status, before serving it
        ((stored,),) = s.rows("SELECT value FROM risk_state WHERE key = 'circuit_breaker'")
        assert stored == doc
        assert restore(s.dsn).breaker == doc  # what a restart puts back
        trips = s.wait(
            lambda: s.rows(
                "SELECT status, (metadata->>'market_ts')::bigint FROM order_audit_trail"
                " WHERE event_type = 'circuit_breaker'"
            ),
            10,
            "the trip audited",
        )
        assert trips == [("open", doc["opened_at"])]
    finally:
        _put_limits(s, {"breaker": None})
