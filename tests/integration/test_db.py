"""Migrations and the append-only audit trail on a real Postgres."""

from __future__ import annotations

import psycopg
import pytest

from live.db import migrate, migrations


def test_migrate_when_run_twice_then_applied_once(database: str) -> None:
    assert migrate(database) == [n for n, _ in migrations()]
    assert migrate(database) == []
    with psycopg.connect(database) as c:
        versions = [r[0] for r in c.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == [n for n, _ in migrations()]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE order_audit_trail SET reason = 'edited'",
        "DELETE FROM order_audit_trail",
        "TRUNCATE order_audit_trail",
    ],
)
def test_audit_trail_when_modified_then_refused(database: str, statement: str) -> None:
    migrate(database)
    with psycopg.connect(database, autocommit=True) as c:
        c.execute(
            "INSERT INTO order_audit_trail (ts, session_id, source, source_seq, event_type,"
            " qty, price) VALUES (now(), 's', 'engine', 1, 'intent', 100, 127.01)"
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            c.execute(statement)  # type: ignore[arg-type]
        row = c.execute("SELECT qty, price, reason FROM order_audit_trail").fetchone()
    assert row is not None
    assert (str(row[0]), str(row[1]), row[2]) == ("100", "127.01", None)


def test_audit_trail_when_same_source_seq_then_unique_violation(database: str) -> None:
    migrate(database)
    insert = (
        "INSERT INTO order_audit_trail (ts, session_id, source, source_seq, event_type)"
        " VALUES (now(), 's', 'engine', 1, 'intent')"
    )
    with psycopg.connect(database, autocommit=True) as c:
        c.execute(insert)  # type: ignore[arg-type]
        with pytest.raises(psycopg.errors.UniqueViolation):
            c.execute(insert)  # type: ignore[arg-type]


def test_audit_trail_when_unknown_event_type_then_statement_refused(database: str) -> None:
    migrate(database)
    with psycopg.connect(database, autocommit=True) as c:
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="no_such_event"):
            c.execute(  # one unknown type refuses the whole statement, the known one too
                "INSERT INTO order_audit_trail (ts, session_id, source, source_seq, event_type)"
                " VALUES (now(), 's', 'engine', 1, 'intent'),"
                " (now(), 's', 'engine', 2, 'no_such_event')"
            )
        row = c.execute("SELECT count(*) FROM order_audit_trail").fetchone()
    assert row == (0,)


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM audit_event_types WHERE event_type = 'intent'",
        "UPDATE audit_event_types SET event_type = 'order_intent' WHERE event_type = 'intent'",
        "TRUNCATE audit_event_types",
    ],
)
def test_audit_event_type_when_in_use_then_removal_refused(database: str, statement: str) -> None:
    migrate(database)
    with psycopg.connect(database, autocommit=True) as c:
        c.execute(
            "INSERT INTO order_audit_trail (ts, session_id, source, source_seq, event_type)"
            " VALUES (now(), 's', 'engine', 1, 'intent')"
        )
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="order_audit_trail"):
            c.execute(statement)  # type: ignore[arg-type]
        # a type no event uses may still go, and its description may change
        c.execute("UPDATE audit_event_types SET description = 'x' WHERE event_type = 'intent'")
        c.execute("DELETE FROM audit_event_types WHERE event_type = 'resume'")
        types = {r[0] for r in c.execute("SELECT event_type FROM audit_event_types")}
    assert "intent" in types
    assert "resume" not in types
