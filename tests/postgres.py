"""A throwaway PostgreSQL server for the tests of the Postgres state store.

:func:`postgres_server` runs ``initdb`` into a temporary folder, starts the server on a free port of 127.0.0.1
(its unix socket in that folder, so nothing is shared with a system server), and stops it at the end. The
database user ``extractor`` logs in with a password over TCP (what the URL the tests get carries, so its
redaction is tested for real); the socket trusts local connections. Postgres refuses to run as root: as root,
the server's commands run as the ``postgres`` user (Debian's package makes it) or ``nobody``, who own the folder.

Without the binaries the tests skip, saying why; with ``CI=true`` they fail instead (CI installs them).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

USER = "extractor"
PASSWORD = "s3cret-Pg-password-9f2c"


def find_bindir() -> Path | None:
    """The folder of initdb, pg_ctl and postgres: ``pg_config --bindir``, else Debian's versioned folders."""
    candidates: list[str] = []
    if (pg_config := shutil.which("pg_config")) is not None:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            candidates.append(subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                             check=True).stdout.strip())  # fmt: skip
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    if (initdb := shutil.which("initdb")) is not None:
        candidates.append(str(Path(initdb).parent))
    for folder in candidates:
        if folder and all((Path(folder) / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    return None


def need_bindir() -> Path:
    """The binaries' folder; without them the test skips (fails under CI=true, where they are installed)."""
    bindir = find_bindir()
    if bindir is None:
        reason = "PostgreSQL's server binaries (initdb, pg_ctl, postgres) are not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must install Debian's postgresql package (see .ci/run)")
        pytest.skip(f"{reason} (apt-get install postgresql)")
    return bindir


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _server_user() -> str | None:
    """Who runs the server: None for this user, or a user that is not root when this process is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    pytest.fail("running as root, and there is neither a postgres nor a nobody user to run PostgreSQL as")


def _run(command: list[str], user: str | None) -> None:
    prefix = ["runuser", "-u", user, "--"] if user else []
    done = subprocess.run([*prefix, *command], capture_output=True, text=True, cwd="/")
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stdout}{done.stderr}")


class PostgresServer:
    """A running server; :meth:`new_database` gives each test a database of its own."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port

    def url(self, database: str = "postgres", password: str = PASSWORD, port: int | None = None) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{port or self.port}/{database}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(sql)

    def new_database(self) -> str:
        """A fresh empty database; returns its URL."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        self.admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with contextlib.suppress(Exception):
            self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a throwaway server; stop it and remove its folder at the end."""
    bindir = need_bindir()
    user = _server_user()
    folder = Path(tempfile.mkdtemp(prefix="extractor-pg-"))
    data = folder / "data"
    password_file = folder / "password"
    password_file.write_text(PASSWORD + "\n")
    if user is not None:
        entry = pwd.getpwnam(user)
        for path in (folder, password_file):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    port = free_port()
    pg_ctl = str(bindir / "pg_ctl")
    started = False
    try:
        _run([str(bindir / "initdb"), "-D", str(data), "-U", USER, "--auth-local=trust",
              "--auth-host=scram-sha-256", f"--pwfile={password_file}", "-E", "UTF8", "--no-sync"], user)  # fmt: skip
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        _run([pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "-w", "start"], user)
        started = True
        yield PostgresServer(folder, port)
    finally:
        if started:
            with contextlib.suppress(RuntimeError):
                _run([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], user)
        shutil.rmtree(folder, ignore_errors=True)
