"""Backups: an online SQLite backup taken while a writer commits holds a consistent prefix of the committed
transactions and opens as a label store; the pg_dump command printed for PostgreSQL really backs the store up."""

from __future__ import annotations

import sqlite3
import subprocess
import threading

import pytest

from raydq.labels import DatabaseMissing, LabelIn, LabelStore
from raydq.labels.backup import pg_dump_command, sqlite_backup
from tests.labels.conftest import ALICE
from tests.postgres import PG_BIN, fresh_pg_database


def test_online_sqlite_backup_holds_a_consistent_prefix(tmp_path):
    url = f"sqlite:///{tmp_path / 'live.db'}"
    store = LabelStore(url)
    started, stop = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:  # transaction k adds item k and a history row, at revision k
        k = 0
        try:
            while not stop.is_set() and k < 3000:
                k += 1
                store.apply_labels([LabelIn(id=f"i{k:05d}", label="cat")], caller=ALICE)
                if k == 20:
                    started.set()
        except BaseException as e:
            errors.append(e)
            started.set()

    thread = threading.Thread(target=writer)
    thread.start()
    started.wait(60)
    results = [sqlite_backup(url, tmp_path / f"copy{n}.db") for n in range(3)]
    stop.set()
    thread.join()
    assert not errors
    final = store.revision()
    store.close()
    revisions = [r.revision for r in results]
    assert 20 <= revisions[0] <= revisions[1] <= revisions[2] < final  # taken while the writer wrote
    for result in results:
        with sqlite3.connect(result.output) as conn:  # before the store opens it (the store switches it to WAL)
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        copy = LabelStore(f"sqlite:///{result.output}", create=False)
        try:
            snapshot = copy.training_snapshot()
            assert snapshot.revision == copy.revision() == result.revision == result.labels
            assert sorted(snapshot.labels) == [f"i{k:05d}" for k in range(1, result.revision + 1)]
            assert copy.audit_log(limit=10_000)[0][-1].detail["revision"] == result.revision
        finally:
            copy.close()
    assert not list(tmp_path.glob("*.partial"))


def test_sqlite_backup_refusals(tmp_path):
    url = f"sqlite:///{tmp_path / 'l.db'}"
    with pytest.raises(DatabaseMissing):
        sqlite_backup(url, tmp_path / "copy.db")
    LabelStore(url).close()
    (tmp_path / "taken.db").write_text("keep me")
    with pytest.raises(FileExistsError):
        sqlite_backup(url, tmp_path / "taken.db")
    assert (tmp_path / "taken.db").read_text() == "keep me"
    assert sqlite_backup(url, tmp_path / "taken.db", overwrite=True).revision == 0
    with pytest.raises(ValueError, match="database itself"):
        sqlite_backup(url, tmp_path / "l.db", overwrite=True)


def test_the_printed_pg_dump_command_backs_up_postgresql(pg_server, tmp_path):
    if not (PG_BIN / "pg_dump").exists():
        pytest.skip(f"no pg_dump in {PG_BIN} (set PG_BIN to the server's binaries)")
    url = fresh_pg_database(pg_server)
    store = LabelStore(url)
    store.apply_labels(
        [LabelIn(id=f"i{k}", label="cat") for k in range(50)] + [LabelIn(id="s", skip=True)], caller=ALICE
    )
    expected = list(store.iter_export())
    store.close()
    dump = tmp_path / "labels.dump"
    command = pg_dump_command(url.replace("postgres@", "postgres:hunter2@"), dump)
    assert "hunter2" not in command  # the password never goes on a command line
    command = command.replace("pg_dump ", f"{PG_BIN / 'pg_dump'} ", 1)  # the server's own version
    subprocess.run(command, shell=True, check=True, capture_output=True)
    restored_url = fresh_pg_database(pg_server)
    subprocess.run(
        [str(PG_BIN / "pg_restore"), "--no-owner", f"--dbname={restored_url}", str(dump)],
        check=True,
        capture_output=True,
    )
    restored = LabelStore(restored_url, create=False)
    try:
        assert list(restored.iter_export()) == expected and restored.revision() == 1
    finally:
        restored.close()
