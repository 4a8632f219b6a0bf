"""Backups of the label store while the service runs.

SQLite: the sqlite3 online backup API copies the database in one step from a single read transaction, so the copy is
a consistent snapshot (a prefix of the committed transactions) and, in WAL mode, writers carry on meanwhile. The
copy is written next to the output, checked, switched to a single-file journal and renamed into place.

PostgreSQL: ``pg_dump`` is the tool; ``pg_dump_command`` builds the command line (the password is never put on it:
give it in ``PGPASSWORD`` or ``~/.pgpass``).
"""

from __future__ import annotations

import os
import shlex
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from raydq.labels.db import normalise_url, sqlite_path
from raydq.labels.errors import DatabaseMissing


@dataclass(frozen=True)
class BackupResult:
    output: Path
    bytes: int
    revision: int  # the label revision the copy holds
    labels: int  # answers (labels and skips) in the copy


def sqlite_backup(url: str, output: str | Path, *, overwrite: bool = False) -> BackupResult:
    """Copy the SQLite label store at ``url`` to ``output`` while it is in use."""
    source = sqlite_path(url)
    if source is None:
        raise ValueError("sqlite_backup needs an SQLite file URL")
    if not source.is_file():
        raise DatabaseMissing(f"no database at {source}")
    output = Path(output)
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; choose another file or overwrite it explicitly")
    if output.resolve() == source.resolve():
        raise ValueError("the backup must not overwrite the database itself")
    partial = output.with_name(output.name + ".partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(source, timeout=60)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)  # pages=-1: one step, one read transaction, a consistent snapshot
            dst.execute("PRAGMA journal_mode=DELETE")  # the copy is one self-contained file
            check = dst.execute("PRAGMA integrity_check").fetchone()[0]
            if check != "ok":
                raise RuntimeError(f"the copy failed its integrity check: {check}")
            revision = dst.execute("SELECT value FROM raydq_meta WHERE key = 'labels_revision'").fetchone()[0]
            labels = dst.execute("SELECT count(*) FROM raydq_labels").fetchone()[0]
        finally:
            dst.close()
    finally:
        src.close()
    with open(partial, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(partial, output)
    return BackupResult(output=output, bytes=output.stat().st_size, revision=revision, labels=labels)


def pg_dump_command(url: str, output: str | Path) -> str:
    """The ``pg_dump`` command line that backs up the PostgreSQL label store at ``url`` to ``output`` (custom
    format, restore with ``pg_restore --no-owner --dbname=URL FILE``)."""
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() != "postgresql":
        raise ValueError("pg_dump_command needs a PostgreSQL URL")
    target = URL.create(  # no password: pg_dump reads PGPASSWORD or ~/.pgpass
        "postgresql", parsed.username, None, parsed.host, parsed.port, parsed.database, parsed.query
    ).render_as_string(hide_password=False)
    args = ["pg_dump", "--format=custom", "--no-owner", "--no-privileges", f"--file={output}", f"--dbname={target}"]
    return shlex.join(args)
