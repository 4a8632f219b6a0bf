"""Schema migrations on SQLite and PostgreSQL: revision 0001 is exactly the schema raydq 0.1 created, the newest
revision is exactly the models, a raydq 0.1 database upgrades in place with every label, event, lease and head intact,
an empty database is created at first start, and any other schema is refused with the command to run."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from raydq.labels import (
    DatabaseMissing,
    LabelIn,
    LabelStore,
    SchemaError,
    SchemaOutdated,
    SchemaTooNew,
    connect,
    normalise_url,
)
from raydq.labels.migrate import UPGRADE_COMMAND, VERSION_TABLE, head_revision, schema_state, upgrade
from raydq.labels.models import Base
from tests.labels.conftest import ALICE, BOB
from tests.labels.legacy_schema import T0, LegacyBase, build_legacy_database

ROOT = Path(__file__).resolve().parents[2]


def schema_diff(url: str, metadata: MetaData) -> list:
    """Alembic's comparison of the database at ``url`` with ``metadata`` (tables, columns, types, nullability,
    indexes, unique and foreign keys); empty when they match."""
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE, "compare_type": True})
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


def described(url: str) -> dict:
    """Every table's columns (name, type, nullable), primary key, indexes and foreign keys, as the database says."""
    engine = create_engine(normalise_url(url))
    try:
        insp = inspect(engine)
        out = {}
        for t in sorted(n for n in insp.get_table_names() if n != VERSION_TABLE):
            out[t] = {
                "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(t)],
                "pk": insp.get_pk_constraint(t)["constrained_columns"],
                "indexes": sorted(
                    (i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(t)
                ),
                "fks": [
                    (f["constrained_columns"], f["referred_table"], f["options"]) for f in insp.get_foreign_keys(t)
                ],
            }
        return out
    finally:
        engine.dispose()


def fresh_url(request, tmp_path, name: str = "labels.db") -> str:
    if request.node.callspec.params["db_url"] == "sqlite":
        return f"sqlite:///{tmp_path / name}"
    from tests.postgres import fresh_pg_database

    return fresh_pg_database(request.getfixturevalue("pg_server"))


def test_revision_0001_is_the_schema_create_all_made(db_url, request, tmp_path):
    legacy_url = fresh_url(request, tmp_path, "legacy.db")
    build_legacy_database(legacy_url, n_labels=3)
    db = connect(db_url)
    before, after = upgrade(db, target="0001")
    db.dispose()
    assert before.empty and after.current == "0001"
    assert described(db_url) == described(legacy_url)
    assert schema_diff(db_url, LegacyBase.metadata) == []


def test_newest_revision_is_the_models(store_url):
    LabelStore(store_url).close()
    assert schema_diff(store_url, Base.metadata) == []
    engine = create_engine(normalise_url(store_url))
    try:  # the check constraints alembic does not compare: a skip carries no label, a label has one
        for values in ("('a', 'skip', 'cat', 1)", "('b', 'label', NULL, 1)", "('c', 'unsure', NULL, 1)"):
            with pytest.raises(IntegrityError), engine.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO raydq_labels (item_id, kind, label, revision, created_at, updated_at) "
                        f"VALUES {values[:-1]}, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                    )
                )
    finally:
        engine.dispose()


def test_legacy_database_upgrades_in_place_with_everything_intact(db_url):
    written = build_legacy_database(db_url)
    with pytest.raises(SchemaOutdated) as err:
        LabelStore(db_url)
    assert UPGRADE_COMMAND in str(err.value) and "0001 (raydq 0.1, no version table)" in str(err.value)
    db = connect(db_url, create=False)
    before, after = upgrade(db)
    db.dispose()
    assert before.legacy and before.current is None and after.current == head_revision() == after.head

    store = LabelStore(db_url, create=False)
    try:
        assert store.revision() == written["revision"]
        snapshot = store.training_snapshot()
        assert snapshot.revision == written["revision"]
        assert snapshot.labels == {item: x["label"] for item, x in written["labels"].items()}
        for item, x in written["labels"].items():
            row = store.get_label(item)
            assert (row.kind, row.label, row.annotator, row.revision, row.reason) == (
                "label",
                x["label"],
                x["annotator"],
                x["revision"],
                None,
            )
        events = {}
        for item in written["labels"]:
            events[item] = [(e.label, e.previous_label, e.revision, e.kind) for e in store.history(item)]
        expected: dict[str, list] = {}
        for item, label, previous, revision in written["events"]:
            expected.setdefault(item, []).append((label, previous, revision, "label"))
        assert events == expected
        # leases: the live batch still holds its items, the expired one none; both know their items
        at = T0 + timedelta(minutes=1)
        live = sorted(i for i, (b, _) in written["leases"].items() if b == "batch-live")
        assert sorted(store.leased_ids(now=at)) == sorted(written["leases"])
        assert sorted(store.leased_ids(now=T0 + timedelta(days=1))) == live
        batch = store.get_batch("batch-live", now=at)
        assert batch.owner is None and batch.leased_ids == live and batch.size == 10
        assert store.get_batch("batch-old").released_at is not None
        # heads: both kept, counted sane, versions continue after the newest
        assert [(h.version, h.sane, h.payload["version"]) for h in store.list_heads()] == [(4, True, 4), (3, True, 3)]
        assert store.latest_good_head().version == 4 and store.max_head_version() == 4
        assert store.allocate_head_version() == 5
        # the store works on: a pre-owner batch may be renewed by anyone, labels continue the revision
        counts = store.apply_labels([LabelIn(id="free-0", label="cat")], caller=ALICE, batch_id="batch-live", now=at)
        assert counts.revision == written["revision"] + 1 and counts.lease.count == 0
        assert store.renew_batch("batch-expired", caller=BOB, seconds=60, now=at).leased_ids == [
            "free-6",
            "free-7",
            "free-8",
        ]
    finally:
        store.close()
    db = connect(db_url, create=False)
    before, after = upgrade(db)  # a second upgrade is a no-op
    db.dispose()
    assert before.up_to_date and after.up_to_date


def test_failed_upgrade_changes_nothing(db_url, monkeypatch):
    build_legacy_database(db_url, n_labels=5)
    before = described(db_url)
    from alembic import command

    real = command.upgrade

    def upgrade_then_fail(cfg, target):
        real(cfg, target)
        raise RuntimeError("power cut")

    monkeypatch.setattr(command, "upgrade", upgrade_then_fail)
    db = connect(db_url, create=False)
    with pytest.raises(RuntimeError, match="power cut"):
        upgrade(db)
    monkeypatch.undo()
    state = schema_state(db)
    db.dispose()
    assert state.legacy and state.current is None
    assert described(db_url) == before


def test_first_start_creates_the_schema_and_admin_opens_refuse(db_url, tmp_path):
    if db_url.startswith("sqlite"):
        with pytest.raises(DatabaseMissing, match="no database at"):
            LabelStore(db_url, create=False)
    else:  # an empty database exists, but has no schema: admin commands refuse it
        with pytest.raises(SchemaOutdated, match="none \\(empty database\\)"):
            LabelStore(db_url, create=False)
    errors: list[BaseException] = []

    def start() -> None:  # several replicas start together on an empty database
        try:
            LabelStore(db_url).close()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    store = LabelStore(db_url, create=False)
    assert store.schema.up_to_date and store.revision() == 0 and store.max_head_version() == 0
    store.close()


def test_unknown_or_partial_schemas_are_refused(db_url):
    engine = create_engine(normalise_url(db_url))
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE raydq_labels (item_id VARCHAR PRIMARY KEY)"))
        with pytest.raises(SchemaError, match="refusing to guess"):
            LabelStore(db_url)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE raydq_labels"))
        LabelStore(db_url).close()
        with engine.begin() as conn:
            conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
        with pytest.raises(SchemaTooNew, match="9999"):
            LabelStore(db_url)
        db = connect(db_url)
        with pytest.raises(SchemaTooNew):
            upgrade(db)
        db.dispose()
    finally:
        engine.dispose()


def test_a_wheel_ships_the_migrations(tmp_path):
    """``pip install .`` must carry every revision, the environment and the template."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(ROOT / "raydq", src / "raydq", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("raydq-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    versions = sorted(p.name for p in (ROOT / "raydq/labels/migrations/versions").glob("0*.py"))
    assert len(versions) >= 6
    for name in ["env.py", "script.py.mako", *(f"versions/{v}" for v in versions)]:
        assert f"raydq/labels/migrations/{name}" in names, name
