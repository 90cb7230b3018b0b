"""Postgres: an embedded server under ``.var/`` when ``DATABASE_URL`` is unset, and the
numbered migrations in ``sql/`` applied at start.

The embedded server uses the PostgreSQL binaries of the operating system
(``/usr/lib/postgresql/<ver>/bin``, Debian's ``postgresql`` package). Postgres refuses
to run as root, so as root it runs as the ``postgres`` system user through ``runuser``;
nothing outside the project folder is changed unless the project folder is not
reachable by that user, in which case the data directory goes to the system temp
folder and ``.var/pg`` links to it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import psycopg

from trader import REPO_ROOT
from trader.exceptions import ConfigurationError

SQL_DIR = REPO_ROOT / "sql"
_MIGRATION_RE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def _pg_bin() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    for c in reversed(candidates):
        if (c / "initdb").exists():
            return c
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise ConfigurationError(
        "no PostgreSQL server binaries found (looked in /usr/lib/postgresql/*/bin and PATH): "
        "install Debian's 'postgresql' package or set DATABASE_URL"
    )


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Return True if nothing listens on ``host:port`` (TCP)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex((host, port)) != 0


class EmbeddedPostgres:
    """A private PostgreSQL cluster under ``<var_dir>/pg``, listening on 127.0.0.1.

    Parameters
    ----------
    var_dir : Path
        The project's run-time folder (``.var``).
    port : int
        TCP port on 127.0.0.1; the next free port above it is used if it is taken.

    Raises
    ------
    ConfigurationError
        If no PostgreSQL binaries are installed or the server does not start (the
        message includes the tail of the server log).
    """

    def __init__(self, var_dir: Path, port: int = 25432) -> None:
        self.var_dir = var_dir.resolve()
        self.link = self.var_dir / "pg"
        self.bin = _pg_bin()
        self.port = port
        self._as_postgres = os.geteuid() == 0

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory (``.var/pg``, or its target when it is a link)."""
        return self.link.resolve()

    @property
    def dsn(self) -> str:
        """A libpq connection string for the ``postgres`` database."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, cwd="/", check=False)

    def _postgres_can_reach(self, path: Path) -> bool:
        if not self._as_postgres:
            return True
        r = subprocess.run(
            ["runuser", "-u", "postgres", "--", "test", "-w", str(path)], cwd="/", check=False
        )
        return r.returncode == 0

    def _prepare_dir(self) -> None:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        if self.link.exists():
            return
        if self._postgres_can_reach(self.var_dir) or not self._as_postgres:
            self.link.mkdir(mode=0o700)
        else:
            digest = hashlib.sha256(str(self.var_dir).encode()).hexdigest()[:12]
            target = Path("/tmp") / f"trader-pg-{digest}"
            target.mkdir(mode=0o700, exist_ok=True)
            self.link.symlink_to(target)
        if self._as_postgres:
            shutil.chown(self.data_dir, "postgres", "postgres")

    def is_running(self) -> bool:
        """Return True if the cluster's postmaster is up."""
        return self._run("pg_ctl", "-D", str(self.data_dir), "status").returncode == 0

    def start(self) -> None:
        """Create the cluster if needed and start it (no-op if already running)."""
        self._prepare_dir()
        if not (self.data_dir / "PG_VERSION").exists():
            r = self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-instructions",
            )
            if r.returncode != 0:
                raise ConfigurationError(f"initdb failed: {r.stderr.strip()[-2000:]}")
        if self.is_running():
            self.port = self._running_port()
            return
        while not port_is_free(self.port):
            self.port += 1
        opts = f"-k {self.data_dir} -c listen_addresses=127.0.0.1 -p {self.port}"
        log = self.data_dir / "server.log"
        r = self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(log), "-o", opts, "-w", "start")
        if r.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else r.stderr
            raise ConfigurationError(f"embedded Postgres did not start: {tail}")

    def _running_port(self) -> int:
        pid_file = (self.data_dir / "postmaster.pid").read_text().splitlines()
        return int(pid_file[3])  # line 4 of postmaster.pid is the port

    def stop(self) -> None:
        """Stop the cluster (fast shutdown); no-op if it is not running."""
        if self.is_running():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")


def migrations(sql_dir: Path = SQL_DIR) -> list[tuple[int, Path]]:
    """Return the numbered migrations ``NNN_name.sql`` in ``sql_dir``, in order.

    Raises
    ------
    ConfigurationError
        If a file name does not follow ``NNN_name.sql`` or two share a number.
    """
    out: dict[int, Path] = {}
    for p in sorted(sql_dir.glob("*.sql")):
        m = _MIGRATION_RE.match(p.name)
        if not m:
            raise ConfigurationError(f"{p}: migration names must look like 001_name.sql")
        n = int(m.group(1))
        if n in out:
            raise ConfigurationError(f"{p}: migration number {n} used twice")
        out[n] = p
    return sorted(out.items())


def migrate(dsn: str, sql_dir: Path = SQL_DIR) -> list[int]:
    """Apply the migrations not yet recorded in ``schema_migrations``, each in one
    transaction, under an advisory lock so concurrent starts do not race.

    Returns
    -------
    list of int
        The migration numbers applied by this call.
    """
    applied: list[int] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(727274)")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version int PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
        for n, path in migrations(sql_dir):
            if n in done:
                continue
            with conn.transaction():
                conn.execute(path.read_text())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (n, path.name),
                )
            applied.append(n)
        conn.execute("SELECT pg_advisory_unlock(727274)")
    return applied
