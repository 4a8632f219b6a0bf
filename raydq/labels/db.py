"""Engines for the label store: an SQLite file by default, PostgreSQL (psycopg 3) in a cluster.

SQLite is opened in WAL mode with ``synchronous=FULL`` so that a commit that returned has reached the disk and
survives SIGKILL (and power loss). Writers take the database lock at ``BEGIN IMMEDIATE`` so that two writers never
deadlock on a lock upgrade; readers use a plain deferred ``BEGIN`` on a second engine and never block writers.

This module only connects; the schema is ``raydq.labels.migrate``'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import sessionmaker

from raydq.labels.errors import DatabaseMissing


def normalise_url(url: str) -> str:
    """Pick psycopg 3 for PostgreSQL URLs (``postgres://`` and ``postgresql://`` mean the same server).

    ``ValueError`` for a URL that is not an SQLite or PostgreSQL URL.
    """
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(f"not a database URL: {url!r} (use sqlite:///path.db or postgresql://...)") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported database {parsed.get_backend_name()!r}: use sqlite:/// or postgresql://")
    return url


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL (None for PostgreSQL and in-memory databases)."""
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).expanduser()


def sqlite_engine(url: str, *, immediate: bool, foreign_keys: bool = True) -> Engine:
    """An SQLite engine in WAL mode; ``immediate`` writers lock at ``BEGIN``. Migrations turn ``foreign_keys`` off
    (SQLite alters a table by copying it, and dropping a referenced table would cascade)."""
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy's BEGIN below, not pysqlite's implicit one
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


@dataclass
class Database:
    """A write engine and a read engine (the same one outside SQLite) with their session factories."""

    url: str
    engine: Engine
    read_engine: Engine

    def __post_init__(self) -> None:
        self.write_session = sessionmaker(self.engine, expire_on_commit=False)
        self.read_session = sessionmaker(self.read_engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def dispose(self) -> None:
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()


def connect(url: str, *, create: bool = True) -> Database:
    """Engines for the label store at ``url`` (nothing is read or written yet).

    ``sqlite:///relative/path.db`` is a file: with ``create`` its directory is made, without it a missing file is
    ``DatabaseMissing``. ``postgresql://...`` uses psycopg 3; a missing server or database fails on first use.
    """
    url = normalise_url(url)
    path = sqlite_path(url)
    if make_url(url).get_backend_name() == "sqlite":
        if path is not None:
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
            elif not path.is_file():
                raise DatabaseMissing(f"no database at {path}")
        return Database(url, sqlite_engine(url, immediate=True), sqlite_engine(url, immediate=False))
    engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    return Database(url, engine, engine)
