"""Schema versions of the label store (Alembic, revisions in ``raydq/labels/migrations/versions``).

- An empty database is created at the newest revision (the service's first start just works).
- A database made by raydq 0.1 (its tables, no version table) is recognised as revision 0001, stamped, and upgraded
  in place.
- The store refuses to open any other schema than the newest: ``SchemaOutdated`` names the command to run, and
  ``SchemaTooNew`` says the database was migrated by a newer raydq.

An upgrade runs every pending revision in one transaction, under a lock (``BEGIN IMMEDIATE`` on SQLite, an advisory
lock on PostgreSQL), so it is all or nothing and replicas that start together on an empty database do not race.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import make_url

from raydq.labels.db import Database, sqlite_engine
from raydq.labels.errors import SchemaError, SchemaOutdated, SchemaTooNew

VERSION_TABLE = "raydq_alembic_version"
BASELINE = "0001"
UPGRADE_COMMAND = "python -m raydq.admin db upgrade"
LEGACY_TABLES = frozenset(
    {"raydq_meta", "raydq_labels", "raydq_label_events", "raydq_batches", "raydq_leases", "raydq_heads"}
)
_PG_LOCK = 0x7264715F6D6967  # pg_advisory_xact_lock key of raydq migrations ("rdq_mig")


@dataclass(frozen=True)
class SchemaState:
    """Where a database's schema stands against this code."""

    current: str | None  # the stamped revision; None without a version table
    head: str  # the newest revision this code knows
    tables: frozenset[str]  # raydq's tables present

    @property
    def empty(self) -> bool:
        return not self.tables

    @property
    def legacy(self) -> bool:
        """Made by raydq 0.1's ``create_all``: exactly its tables, no version table."""
        return self.current is None and self.tables == LEGACY_TABLES

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    def describe(self) -> str:
        if self.empty:
            return "none (empty database)"
        if self.legacy:
            return f"{BASELINE} (raydq 0.1, no version table)"
        return str(self.current)


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "raydq.labels:migrations")
    cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def _scripts() -> ScriptDirectory:
    """The revisions shipped with this code (read once per process)."""
    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    return _scripts().get_current_head()


def _state(connection: Connection) -> SchemaState:
    names = set(inspect(connection).get_table_names())
    current = None
    if VERSION_TABLE in names:
        current = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()
    tables = frozenset(n for n in names if n.startswith("raydq_") and n != VERSION_TABLE)
    return SchemaState(current=current, head=head_revision(), tables=tables)


def schema_state(db: Database) -> SchemaState:
    with db.read_engine.connect() as conn, conn.begin():
        return _state(conn)


def safe_url(url: str) -> str:
    """The URL with its password hidden (for messages)."""
    return make_url(url).render_as_string(hide_password=True)


def _check_known(state: SchemaState, url: str) -> None:
    if state.current is not None:
        try:
            known = _scripts().get_revision(state.current) is not None
        except CommandError:
            known = False
        if not known:
            raise SchemaTooNew(
                f"label store {safe_url(url)} is at schema revision {state.current}, which this raydq does not know "
                f"(its newest is {state.head}): run a newer raydq"
            )
    elif not state.empty and not state.legacy:
        raise SchemaError(
            f"label store {safe_url(url)} has raydq tables {sorted(state.tables)} but no version table and not the "
            f"tables of raydq 0.1 ({sorted(LEGACY_TABLES)}); refusing to guess its schema"
        )


def check_schema(db: Database, *, create: bool) -> SchemaState:
    """Open-time check: an empty database is created at the newest revision when ``create``; any schema other than
    the newest raises (``SchemaOutdated`` naming the upgrade command, or ``SchemaTooNew``)."""
    state = schema_state(db)
    if state.up_to_date:
        return state
    _check_known(state, db.url)
    if state.empty and create:
        return upgrade(db)[1]
    raise SchemaOutdated(
        f"label store {safe_url(db.url)} has schema revision {state.describe()}, this raydq needs {state.head}; "
        f"run: {UPGRADE_COMMAND} --url '{safe_url(db.url)}'"
    )


def upgrade(db: Database, *, target: str = "head") -> tuple[SchemaState, SchemaState]:
    """Bring the schema to ``target`` (the newest revision by default), stamping a raydq 0.1 database as 0001 first;
    ``(before, after)``."""
    sqlite = db.dialect == "sqlite"
    engine = sqlite_engine(db.url, immediate=True, foreign_keys=False) if sqlite else db.engine
    try:
        with engine.begin() as conn:
            if not sqlite:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})
            before = _state(conn)
            _check_known(before, db.url)
            cfg = _config(conn)
            if before.legacy:
                command.stamp(cfg, BASELINE)
            command.upgrade(cfg, target)
            if sqlite:
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:  # raising here rolls the whole upgrade back
                    raise SchemaError(f"the upgrade would leave {len(broken)} rows with dangling foreign keys")
            after = _state(conn)
    finally:
        if engine is not db.engine:
            engine.dispose()
    return before, after
