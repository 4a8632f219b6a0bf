"""Engines for the label store: an SQLite file by default, PostgreSQL (psycopg 3) in a cluster.

SQLite is opened in WAL mode with ``synchronous=FULL`` so that a commit that returned has reached the disk and
survives SIGKILL (and power loss). Writers take the database lock at ``BEGIN IMMEDIATE`` so that two writers never
deadlock on a lock upgrade; readers use a plain deferred ``BEGIN`` on a second engine and never block writers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from raydq.labels.models import Base, Meta


def normalise_url(url: str) -> str:
    """Pick psycopg 3 for PostgreSQL URLs (``postgres://`` and ``postgresql://`` mean the same server)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    make_url(url)  # raises on a malformed URL
    return url


def _sqlite_engine(url: str, *, immediate: bool) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy's BEGIN below, not pysqlite's implicit one
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA foreign_keys=ON")
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
    """Open (and by default create the tables of) the label store at ``url``.

    ``sqlite:///relative/path.db`` creates the parent directory; ``postgresql://...`` uses psycopg 3.
    """
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        db = Database(url, _sqlite_engine(url, immediate=True), _sqlite_engine(url, immediate=False))
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
        db = Database(url, engine, engine)
    if create:
        init_db(db)
    return db


def init_db(db: Database) -> None:
    """Create missing tables and the revision counter row (idempotent; safe when several replicas start at once:
    the loser of a race on creating a table or the counter row finds it there on the second try)."""
    for attempt in range(3):
        try:
            Base.metadata.create_all(db.engine, checkfirst=True)
            with db.write_session() as session, session.begin():
                if session.get(Meta, Meta.LABELS_REVISION) is None:
                    session.add(Meta(key=Meta.LABELS_REVISION, value=0))
            return
        except (IntegrityError, OperationalError, ProgrammingError):
            if attempt == 2:
                raise


def session_scope(db: Database, *, write: bool) -> Session:
    """A new session on the write or read engine (the caller uses ``with ... , session.begin():``)."""
    return (db.write_session if write else db.read_session)()
