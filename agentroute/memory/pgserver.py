"""A throwaway PostgreSQL server on loopback, for tests and benchmarks.

Debian keeps the server binaries (``initdb``, ``pg_ctl``) off ``PATH`` in its versioned lib folder;
:func:`find_bindir` looks there. ``initdb`` refuses to run as root, so when the process is root the
server runs as the ``postgres`` OS user (``runuser -u postgres --``).

>>> with PostgresServer() as pg:  # doctest: +SKIP
...     memory = SQLMemory(pg.url)
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["PostgresServer", "PostgresServerError", "create_database", "find_bindir"]


class PostgresServerError(RuntimeError):
    """The throwaway server could not be found, initialised or started (the log is in the message)."""


def find_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or ``None`` when PostgreSQL is not installed."""
    candidates: list[Path] = []
    if env := os.environ.get("AGENTROUTE_PG_BINDIR"):
        candidates.append(Path(env))
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            candidates.append(Path(out.stdout.strip()))
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    candidates += [Path(p) for p in versions]
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """``initdb`` + ``pg_ctl start`` in a temporary folder; ``stop()`` removes everything.

    Args:
        durable: keep PostgreSQL's default ``fsync``/``synchronous_commit``; ``False`` (tests)
            turns them off, which is faster and fine for a server that is thrown away.
        password: the ``postgres`` user's password, required on TCP connections (SCRAM); ``None``
            (default): no authentication, any password is accepted.
    """

    def __init__(self, *, durable: bool = True, password: str | None = None) -> None:
        self.durable = durable
        self.password = password
        self.port = 0
        self._tmp: Path | None = None
        bindir = find_bindir()
        if bindir is None:
            raise PostgresServerError(
                "PostgreSQL server binaries not found (looked at `pg_config --bindir`, "
                "/usr/lib/postgresql/*/bin and PATH); install Debian's `postgresql` package"
            )
        self.bindir = bindir

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` database (with the password, when there is one)."""
        import sqlalchemy as sa

        url = sa.URL.create(
            "postgresql+psycopg", "postgres", self.password, "127.0.0.1", self.port, "postgres"
        )
        return url.render_as_string(hide_password=False)

    def _cmd(self, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)

    def _run(self, *args: str) -> None:
        proc = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            log = self._tmp / "server.log" if self._tmp else None
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise PostgresServerError(f"{' '.join(args[:2])} failed: {proc.stdout}{proc.stderr}{tail}")

    def start(self) -> PostgresServer:
        self._tmp = Path(tempfile.mkdtemp(prefix="agentroute-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self._tmp, "postgres", "postgres")
        data = self._tmp / "data"
        auth = ["-A", "trust"]
        if self.password is not None:  # pg_ctl checks the server over the socket: trusted there
            pwfile = self._tmp / "pwfile"
            pwfile.write_text(self.password + "\n")
            if os.geteuid() == 0:
                shutil.chown(pwfile, "postgres", "postgres")
            auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        try:
            self._run(str(self.bindir / "initdb"), "-D", str(data), *auth, "-U", "postgres", "--no-sync")
            for attempt in range(3):
                self.port = free_port()
                try:
                    self._pg_ctl_start()
                    break
                except PostgresServerError:
                    if attempt == 2:
                        raise
        except BaseException:
            self.stop()
            raise
        return self

    def _pg_ctl_start(self) -> None:
        assert self._tmp is not None
        settings = f"-c listen_addresses=127.0.0.1 -k {self._tmp}"
        if not self.durable:
            settings += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D", str(self._tmp / "data"),
            "-l", str(self._tmp / "server.log"),
            "-o", f"-p {self.port} {settings}",
            "-w", "start",
        )  # fmt: skip

    def restart(self, *, down_s: float = 0.0) -> None:
        """Stop the server (fast shutdown: open connections are cut), stay down ``down_s`` seconds,
        start it again on the same port with the same data: a restart as clients see it."""
        if self._tmp is None:
            raise PostgresServerError("the server is not started")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self._tmp / "data"), "-m", "fast", "-w", "stop")
        time.sleep(down_s)
        self._pg_ctl_start()

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its folder; safe to call twice."""
        if self._tmp is None:
            return
        data = self._tmp / "data"
        if (data / "postmaster.pid").exists():
            with contextlib.suppress(PostgresServerError, subprocess.SubprocessError):
                self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def create_database(url: str, name: str) -> str:
    """Create database ``name`` on the server of ``url`` (dropping an old one); returns its URL."""
    import sqlalchemy as sa

    base = sa.make_url(url)
    engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False)
