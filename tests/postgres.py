"""PostgreSQL for the tests: a private PostgreSQL 15 server per test session and a fresh database per test.
``tests/conftest.py`` re-exports the fixtures, so every test folder can ask for ``pg_server`` or ``db_url``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as_postgres(*cmd: str, **kw) -> subprocess.CompletedProcess:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *cmd], check=True, capture_output=True, text=True, **kw)


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server URL (no database part): PG_TEST_URL if set, else a private PostgreSQL 15 cluster on a free
    127.0.0.1 port, started with initdb + pg_ctl as the ``postgres`` user and removed at the end."""
    if os.environ.get("PG_TEST_URL"):  # an existing server; its user needs CREATEDB (each test gets a database)
        from sqlalchemy.engine import make_url

        url = make_url(os.environ["PG_TEST_URL"])._replace(drivername="postgresql", database=None)
        yield url.render_as_string(hide_password=False)
        return
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL server binaries not found in {PG_BIN} (Debian package postgresql)")
    root = Path(tempfile.mkdtemp(prefix="raydq-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        os.chmod(root, 0o700)
    port = _free_port()
    _run_as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=on -c max_connections=200"
    _run_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        _run_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def fresh_pg_database(server: str) -> str:
    """A new empty database on ``server``; its URL."""
    import psycopg

    name = "raydq_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh label store URL, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'labels.db'}"
    return fresh_pg_database(request.getfixturevalue("pg_server"))
