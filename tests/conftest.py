"""Shared fixtures: real data paths and a real Postgres (embedded unless DATABASE_URL)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from trader import REPO_ROOT

VAR = REPO_ROOT / ".var"
for _k, _v in {
    "NUMBA_CACHE_DIR": VAR / "numba",
    "JUPYTER_PLATFORM_DIRS": "1",
    "IPYTHONDIR": VAR / "ipython",
    "MPLCONFIGDIR": VAR / "matplotlib",
    "XDG_CACHE_HOME": VAR / "cache",
    "XDG_CONFIG_HOME": VAR / "config",
    "JUPYTER_CONFIG_DIR": VAR / "jupyter/config",
    "JUPYTER_DATA_DIR": VAR / "jupyter/data",
    "JUPYTER_RUNTIME_DIR": VAR / "jupyter/runtime",
}.items():
    os.environ.setdefault(_k, str(_v))

SPY_MINUTE = REPO_ROOT / "data/intraday/SPY_2011-01_1min.csv"
DAILY = {s: REPO_ROOT / f"data/daily/{s}_daily_quandl_wiki.csv" for s in ("AAPL", "MSFT", "IBM")}
LOB_DIR = REPO_ROOT / "data/lob"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """DSN of a running Postgres server: ``DATABASE_URL`` or an embedded one under
    ``.var/test`` on port ``TRADER_TEST_PG_PORT`` (default 25433: below Linux's ephemeral
    range, where the simulator and daemons pick their free ports; set it to run two
    checkouts' tests side by side), started once per test session, stopped at the end."""
    dsn = os.environ.get("DATABASE_URL")
    if dsn:
        yield dsn
        return
    from live.db import EmbeddedPostgres

    pg = EmbeddedPostgres(VAR / "test", port=int(os.environ.get("TRADER_TEST_PG_PORT", "25433")))
    pg.start()
    yield pg.dsn
    pg.stop()


@contextlib.contextmanager
def fresh_database(server_dsn: str) -> Iterator[str]:
    """Create an empty database on the server ``server_dsn``; yield its DSN; drop it."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    info = psycopg.conninfo.conninfo_to_dict(server_dsn)
    info["dbname"] = name
    yield psycopg.conninfo.make_conninfo(**info)
    with psycopg.connect(server_dsn, autocommit=True) as c:
        c.execute(f'DROP DATABASE "{name}" WITH (FORCE)')  # type: ignore[arg-type]


@pytest.fixture
def database(pg_server: str) -> Iterator[str]:
    """DSN of a fresh, empty database on the test server (dropped afterwards)."""
    with fresh_database(pg_server) as dsn:
        yield dsn


@pytest.fixture
def spy_minute_path() -> Path:
    """The real SPY 1-minute bars of January 2011."""
    return SPY_MINUTE


def write_sim_config(
    root: Path,
    models: Path,
    strategy: str,
    version: str,
    *,
    start: str,
    end: str,
    speed: float,
    risk_toml: str | None = None,
    live_toml: str = "",
) -> Path:
    """Write ``root/config/{live,risk}.toml`` for a ``sim`` daemon trading ``strategy``
    ``version`` from ``models`` on the SPY bars of ``start``..``end`` (New York dates) at
    ``speed`` market seconds per wall second, run-time folder ``root/var``, control API on
    a free port; ``risk_toml`` defaults to the shipped ``config/risk.toml``; ``live_toml``
    is appended to ``live.toml`` (more sections, e.g. ``[recovery]``). Returns the config
    folder."""
    cfg = root / "config"
    cfg.mkdir()
    (cfg / "live.toml").write_text(f"""
mode = "sim"
strategy = "{strategy}"
strategy_version = "{version}"
symbol = "SPY"
models_dir = "{models}"
var_dir = "{root / "var"}"
engine_core = 1
[control]
port = 0
[sim]
start = {start}
end = {end}
speed = {speed}
{live_toml}""")
    (cfg / "risk.toml").write_text(risk_toml or (REPO_ROOT / "config/risk.toml").read_text())
    return cfg
