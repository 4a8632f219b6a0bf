"""Fixtures of the label-store tests: an open store on SQLite and on PostgreSQL.

Creating and migrating a PostgreSQL database takes a second or two, so the ``store`` tests share one database per
session and empty it before each test; tests that need a database of their own use ``db_url`` (tests/postgres.py).
"""

from __future__ import annotations

import psycopg
import pytest

from raydq.labels import Identity, LabelStore
from raydq.labels.models import Base, Meta
from tests.postgres import fresh_pg_database

ALICE = Identity("alice", "annotator")
BOB = Identity("bob", "annotator")
ADMIN = Identity("root", "admin")


@pytest.fixture(scope="session")
def shared_pg_url(pg_server) -> str:
    url = fresh_pg_database(pg_server)
    LabelStore(url).close()  # migrated to the newest revision once
    return url


def empty_pg_store(url: str) -> None:
    """Back to the state of a freshly migrated database: no rows, counters at 0."""
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables if t.name != Meta.__tablename__)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        conn.execute("DELETE FROM raydq_meta")
        conn.execute(
            "INSERT INTO raydq_meta (key, value) VALUES (%s, 0), (%s, 0)", (Meta.LABELS_REVISION, Meta.HEAD_VERSION)
        )


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """A label store URL with an empty store at the newest schema, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'labels.db'}"
    url = request.getfixturevalue("shared_pg_url")
    empty_pg_store(url)
    return url


@pytest.fixture
def store(store_url):
    s = LabelStore(store_url)
    yield s
    s.close()
