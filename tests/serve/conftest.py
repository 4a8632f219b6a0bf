"""Fixtures of the labeling-service tests: a small synthetic embedding store, label-store URLs for SQLite and a
private PostgreSQL 15 server, and a running Serve instance on a free 127.0.0.1 port."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.serve.helpers import free_port, service_args, write_store

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


@pytest.fixture(scope="session")
def embedding_store(tmp_path_factory) -> Path:
    return write_store(tmp_path_factory.mktemp("embeddings") / "store")


@pytest.fixture(scope="session")
def strategies() -> tuple[str, str]:
    """(default, cold start): the reference pair where registered, else random (while they are being written)."""
    from raydq.strategies import STRATEGIES

    default = "dropquery" if "dropquery" in STRATEGIES else "random"
    cold = "centroid" if "centroid" in STRATEGIES else "random"
    return default, cold


@pytest.fixture
def make_args(embedding_store, strategies):
    def make(database_url: str, **overrides):
        return service_args(embedding_store, database_url, strategies, **overrides)

    return make


# -- PostgreSQL ------------------------------------------------------------------------------------------------
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
    port = free_port()
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


# -- Serve ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def serve_http(ray_cluster) -> str:
    """Ray Serve on a free 127.0.0.1 port; its base URL."""
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        from ray.serve.context import _get_global_client

        port = _get_global_client().http_config.port  # when another test module started Serve first
    except Exception:
        pass
    return f"http://127.0.0.1:{port}"
