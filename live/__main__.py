"""Command line: ``python -m live {run,status,kill,halt,resume,limits,audit replay}``.

``run`` starts a daemon session in the foreground; ``status``, ``kill``, ``halt``,
``resume`` and ``limits`` are clients of the running daemon's control API
(:class:`live.client.ControlClient`; URL from ``.var/control.url``, else the config);
``audit replay`` rebuilds positions and realized P&L from the audit trail alone and
compares them with the broker's (exit code 1 on a difference).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp

from live.client import ControlClient, ControlError
from live.config import load_config
from trader import REPO_ROOT
from trader.exceptions import ConfigurationError, TemporaryError, UnresolvedBreaks


def _audit_replay(cfg_dir: Path, broker_url: str | None) -> int:
    from live.alpaca import AlpacaREST
    from live.db import EmbeddedPostgres, migrate
    from live.recovery import compare_with_broker, ledger_from_audit

    cfg = load_config(cfg_dir / "live.toml", cfg_dir / "risk.toml")
    dsn = os.environ.get("DATABASE_URL")
    if not dsn:
        pg = EmbeddedPostgres(cfg.var_dir, cfg.database.embedded_port)
        pg.start()
        dsn = pg.dsn
    migrate(dsn)
    ledger = ledger_from_audit(dsn)
    broker: list[dict[str, Any]] = []
    if broker_url:
        url: str = broker_url

        async def positions() -> list[dict[str, Any]]:
            key = os.environ.get("APCA_API_KEY_ID") or "sim-key"
            secret = os.environ.get("APCA_API_SECRET_KEY") or "sim-secret"
            async with AlpacaREST(url, key, secret) as rest:
                return await rest.positions()

        try:
            broker = asyncio.run(positions())
        except TemporaryError as e:
            print(f"broker unreachable ({e}): showing the audit trail's book only")
            broker_url = None
    rows = compare_with_broker(ledger, broker)
    print(f"{'symbol':<8}{'audit qty':>12}{'broker qty':>12}{'realized P&L':>16}  match")
    for r in rows:
        shown = r["broker_qty"] if broker_url else "n/a"
        print(
            f"{r['symbol']:<8}{r['audit_qty']:>12}{shown:>12}"
            f"{r['realized_pnl']:>16}  {r['match'] if broker_url else 'n/a'}"
        )
    print(f"total realized P&L from the audit trail: {ledger.realized_pnl} USD")
    return 0 if not broker_url or all(r["match"] for r in rows) else 1


def _changes(pairs: list[str]) -> dict[str, Any]:
    """``["max_position_qty=800", ...]`` -> ``{"max_position_qty": "800", ...}``; a value
    in JSON object, array or null syntax is decoded (risk.toml sections), any other
    stays a string so that decimals keep their exact digits.

    Raises
    ------
    ConfigurationError
        If an item is not ``NAME=VALUE`` or its JSON does not parse.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ConfigurationError(f"--set {pair!r}: expected NAME=VALUE")
        if value[:1] in ("{", "[") or value == "null":
            try:
                out[name] = json.loads(value)
            except json.JSONDecodeError as e:
                raise ConfigurationError(f"--set {name}: bad JSON: {e}") from None
        else:
            out[name] = value
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the command; returns the exit code."""
    p = argparse.ArgumentParser(prog="python -m live", description=__doc__)
    p.add_argument("--config-dir", type=Path, default=REPO_ROOT / "config")
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run a live session in the foreground")
    run.add_argument("--duration", type=float, help="stop after this many seconds")
    run.add_argument("--speed", type=float, help="sim replay speed (market s per wall s)")
    run.add_argument("--mode", choices=["auto", "sim", "paper", "live"])
    run.add_argument("--live", action="store_true", help="allow real-money mode")
    run.add_argument("--strategy", help="promoted strategy to trade (overrides live.toml)")
    run.add_argument("--version", help="its artefact version (overrides live.toml)")
    run.add_argument(
        "--accept-breaks",
        action="store_true",
        help="trade even if the start-up reconciliation finds breaks (audited)",
    )
    audit = sub.add_parser("audit", help="audit trail tools")
    audit_sub = audit.add_subparsers(dest="audit_cmd", required=True)
    replay = audit_sub.add_parser(
        "replay", help="rebuild positions and realized P&L from the audit trail alone"
    )
    replay.add_argument(
        "--broker-url",
        default=os.environ.get("TRADER_SIM_URL") or os.environ.get("APCA_API_BASE_URL"),
        help="broker to compare with (default $TRADER_SIM_URL, else $APCA_API_BASE_URL)",
    )
    sub.add_parser("status", help="print the running daemon's status")
    kill = sub.add_parser("kill", help="halt trading and cancel every open order")
    kill.add_argument("--reason", default="operator kill")
    kill.add_argument("--by", default="cli")
    kill.add_argument(
        "--flatten", action="store_true", help="also close every position (market orders)"
    )
    halt = sub.add_parser("halt", help="stop new orders, leave the open ones working")
    halt.add_argument("--reason", default="operator halt")
    halt.add_argument("--by", default="cli")
    resume = sub.add_parser("resume", help="release the kill switch and the halt")
    resume.add_argument("--by", default="cli")
    limits = sub.add_parser(
        "limits",
        help="print each risk limit with its utilisation, or change some (--set)",
    )
    limits.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change a limit for this session (PUT /limits); repeatable",
    )
    limits.add_argument("--by", default="cli")
    a = p.parse_args(argv)
    try:
        if a.cmd == "run":
            from live.daemon import Daemon, format_summary

            cfg = load_config(
                a.config_dir / "live.toml",
                a.config_dir / "risk.toml",
                duration_s=a.duration,
                sim_speed=a.speed,
                mode=a.mode,
                strategy=a.strategy,
                strategy_version=a.version,
            )
            summary = asyncio.run(
                Daemon(cfg, allow_live=a.live, accept_breaks=a.accept_breaks).run()
            )
            print(format_summary(summary))
            return 0 if not summary["stop_reason"].startswith("component") else 1
        if a.cmd == "audit":
            return _audit_replay(a.config_dir, a.broker_url)
        path, method, body = {
            "status": ("/status", "GET", None),
            "kill": (
                "/kill",
                "POST",
                {
                    "reason": a.__dict__.get("reason"),
                    "by": a.__dict__.get("by"),
                    "flatten": bool(a.__dict__.get("flatten", False)),
                },
            ),
            "halt": (
                "/halt",
                "POST",
                {"reason": a.__dict__.get("reason"), "by": a.__dict__.get("by")},
            ),
            "resume": ("/resume", "POST", {"by": a.__dict__.get("by")}),
            "limits": ("/limits", "PUT", {"limits": _changes(a.set), "by": a.by})
            if a.__dict__.get("set")
            else ("/risk", "GET", None),
        }[a.cmd]
        client = ControlClient.from_config(a.config_dir)
        print(json.dumps(asyncio.run(client.request(method, path, body)), indent=2))
        return 0
    except ConfigurationError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    except UnresolvedBreaks as e:
        print(f"not trading: {e}", file=sys.stderr)
        return 4
    except aiohttp.ClientConnectionError as e:
        print(f"no daemon answering: {e}", file=sys.stderr)
        return 3
    except ControlError as e:
        print(str(e), file=sys.stderr)
        return 5


if __name__ == "__main__":
    sys.exit(main())
