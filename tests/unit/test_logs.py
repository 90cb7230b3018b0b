"""Structured logs: JSON lines per process under ``.var/log/``, rotated by size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from live.logs import close_logging, setup_logging


def test_logs_are_json_lines_rotated_at_max_bytes(tmp_path: Path) -> None:
    log = setup_logging("rot", tmp_path, max_bytes=2_000, backups=2)
    for i in range(200):
        log.info("fill", correlation_id=f"s:{i}", client_order_id=f"c-{i:06d}", qty="10")
    files = sorted((tmp_path / "log").iterdir())
    assert [f.name for f in files] == ["rot.log", "rot.log.1", "rot.log.2"]
    for f in files:
        assert f.stat().st_size <= 2_000
        for line in f.read_text().splitlines():
            event = json.loads(line)
            assert {"ts", "level", "component", "event", "correlation_id"} <= set(event)
            assert event["component"] == "rot"
    last = json.loads((tmp_path / "log" / "rot.log").read_text().splitlines()[-1])
    assert last["correlation_id"] == "s:199"  # the newest line is in the live file
    close_logging()


def test_rotation_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_bytes > 0"):
        setup_logging("bad", tmp_path, max_bytes=0)
