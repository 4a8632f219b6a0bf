"""``python -m raydq.admin``: administer the label store (schema, tokens, export, backups, audit log, heads).

The database is ``--url URL``, or the ``database_url`` of a serve config (``--config serve_configs/local.yaml``,
relative SQLite paths taken from the current directory, as ``serve run`` does), or ``RAYDQ_DATABASE_URL``.

    python -m raydq.admin db upgrade --config serve_configs/local.yaml
    python -m raydq.admin tokens add alice [--role annotator|admin] [--expires-in-days 30]
    python -m raydq.admin tokens list [--all]
    python -m raydq.admin tokens revoke alice
    python -m raydq.admin export --format jsonl|csv --since-revision 0 --output labels.jsonl
    python -m raydq.admin backup --output labels-backup.db
    python -m raydq.admin audit [--caller alice] [--action label] [--since 2026-12-01T00:00:00Z] [--limit 50]
    python -m raydq.admin heads list | heads pin VERSION | heads unpin

Every failure is one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError

from raydq.labels import (
    AlreadyExists,
    DatabaseMissing,
    Forbidden,
    InvalidField,
    LabelStore,
    NotFound,
    SchemaError,
    connect,
    normalise_url,
)
from raydq.labels.backup import pg_dump_command, sqlite_backup
from raydq.labels.db import sqlite_path
from raydq.labels.export import FORMATS, write_rows
from raydq.labels.identity import CLI, ROLES
from raydq.labels.migrate import head_revision, safe_url, schema_state, upgrade
from raydq.serve.local import load_args

URL_ENV = "RAYDQ_DATABASE_URL"


class UsageError(Exception):
    """A bad command line that argparse cannot see (no database given, a bad date)."""


# -- typed configuration -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Command:
    """What every subcommand needs: the database and the function that runs it."""

    url: str
    run: Callable[[Command], int]


@dataclass(frozen=True)
class DbCommand(Command):
    pass


@dataclass(frozen=True)
class TokenAdd(Command):
    name: str
    role: str
    expires_in_days: float | None


@dataclass(frozen=True)
class TokenList(Command):
    include_revoked: bool


@dataclass(frozen=True)
class TokenRevoke(Command):
    name: str


@dataclass(frozen=True)
class Export(Command):
    format: str
    since_revision: int
    output: str  # a file, or "-" for stdout
    include_skips: bool


@dataclass(frozen=True)
class Backup(Command):
    output: Path
    overwrite: bool


@dataclass(frozen=True)
class AuditQuery(Command):
    caller: str | None
    action: str | None
    since: datetime | None
    until: datetime | None
    limit: int


@dataclass(frozen=True)
class HeadPin(Command):
    version: int


# -- commands ----------------------------------------------------------------------------------------------------------
def _open(url: str) -> LabelStore:
    return LabelStore(url, create=False)


def db_upgrade(cmd: Command) -> int:
    db = connect(cmd.url)  # an SQLite file is created here if missing: this is the command that makes a database
    try:
        before, after = upgrade(db)
    finally:
        db.dispose()
    if before.up_to_date:
        print(f"{safe_url(cmd.url)}: schema already at revision {after.current} (newest)")
    else:
        print(f"{safe_url(cmd.url)}: schema upgraded from {before.describe()} to {after.current}")
    return 0


def db_current(cmd: Command) -> int:
    db = connect(cmd.url, create=False)
    try:
        state = schema_state(db)
    finally:
        db.dispose()
    verdict = "up to date" if state.up_to_date else "outdated: run python -m raydq.admin db upgrade"
    print(f"{safe_url(cmd.url)}: schema revision {state.describe()}, newest {head_revision()} ({verdict})")
    return 0 if state.up_to_date else 1


def tokens_add(cmd: TokenAdd) -> int:
    store = _open(cmd.url)
    try:
        expires = None
        if cmd.expires_in_days is not None:
            expires = datetime.now(UTC) + timedelta(days=cmd.expires_in_days)
        new = store.add_token(cmd.name, role=cmd.role, expires_at=expires, caller=CLI)
    finally:
        store.close()
    print(new.token)
    until = new.expires_at.isoformat(timespec="seconds") if new.expires_at else "never"
    print(f"token for {new.name} ({new.role}, expires {until}); it is shown only now", file=sys.stderr)
    return 0


def tokens_list(cmd: TokenList) -> int:
    store = _open(cmd.url)
    try:
        rows = store.list_tokens(include_revoked=cmd.include_revoked)
    finally:
        store.close()
    now = datetime.now(UTC)
    print(f"{'NAME':<24} {'ROLE':<10} {'CREATED':<20} {'EXPIRES':<20} STATUS")
    for t in rows:
        status = "revoked" if t.revoked_at else ("expired" if t.expires_at and t.expires_at <= now else "live")
        expires = t.expires_at.strftime("%Y-%m-%d %H:%M") if t.expires_at else "never"
        print(f"{t.name:<24} {t.role:<10} {t.created_at.strftime('%Y-%m-%d %H:%M'):<20} {expires:<20} {status}")
    return 0


def tokens_revoke(cmd: TokenRevoke) -> int:
    store = _open(cmd.url)
    try:
        store.revoke_token(cmd.name, caller=CLI)
    finally:
        store.close()
    print(f"revoked the token of {cmd.name}")
    return 0


def export(cmd: Export) -> int:
    store = _open(cmd.url)
    last = cmd.since_revision

    def rows():
        nonlocal last
        for row in store.iter_export(cmd.since_revision, include_skips=cmd.include_skips):
            last = max(last, row.revision)
            yield row

    try:
        if cmd.output == "-":
            n = write_rows(rows(), sys.stdout, cmd.format)  # type: ignore[arg-type]
        else:
            n = _write_atomically(Path(cmd.output), lambda out: write_rows(rows(), out, cmd.format))  # type: ignore[arg-type]
    finally:
        store.close()
    where = "stdout" if cmd.output == "-" else cmd.output
    print(f"wrote {n} rows to {where}; next incremental export: --since-revision {last}", file=sys.stderr)
    return 0


def _write_atomically(path: Path, write: Callable[[IO[str]], int]) -> int:
    partial = path.with_name(path.name + ".partial")
    try:
        with open(partial, "w", encoding="utf-8", newline="") as out:
            n = write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return n


def backup(cmd: Backup) -> int:
    if normalise_url(cmd.url).startswith("postgresql"):
        print(pg_dump_command(cmd.url, cmd.output))
        print("PostgreSQL: run the pg_dump command above (password in PGPASSWORD or ~/.pgpass)", file=sys.stderr)
        return 0
    _open(cmd.url).close()  # refuse a file that is not a label store at the newest schema
    result = sqlite_backup(cmd.url, cmd.output, overwrite=cmd.overwrite)
    print(
        f"backed up {safe_url(cmd.url)} to {result.output} ({result.bytes} bytes, revision {result.revision}, "
        f"{result.labels} answers)"
    )
    return 0


def audit(cmd: AuditQuery) -> int:
    store = _open(cmd.url)
    try:
        rows, _ = store.audit_log(
            caller=cmd.caller, action=cmd.action, since=cmd.since, until=cmd.until, limit=cmd.limit, newest_first=True
        )
    finally:
        store.close()
    for r in rows:
        print(json.dumps(r.model_dump(mode="json"), ensure_ascii=False))
    return 0


def heads_list(cmd: Command) -> int:
    store = _open(cmd.url)
    try:
        heads, pinned, good = store.list_heads(), store.pinned_head_version(), store.latest_good_head()
    finally:
        store.close()
    print(f"{'VERSION':<8} {'REVISION':<9} {'LABELS':<7} {'CREATED':<17} STATE")
    for h in heads:
        state = "sane" if h.sane else f"failed: {h.reason}"
        if h.version == pinned:
            state += ", pinned"
        if good is not None and h.version == good.version:
            state += ", served"
        print(f"{h.version:<8} {h.revision:<9} {h.n_labels:<7} {h.created_at.strftime('%Y-%m-%d %H:%M'):<17} {state}")
    return 0


def heads_pin(cmd: HeadPin) -> int:
    store = _open(cmd.url)
    try:
        store.pin_head(cmd.version, caller=CLI)
    finally:
        store.close()
    print(f"pinned head {cmd.version}: the service serves it until `heads unpin`")
    return 0


def heads_unpin(cmd: Command) -> int:
    store = _open(cmd.url)
    try:
        previous = store.unpin_head(caller=CLI)
    finally:
        store.close()
    print("no head was pinned" if previous is None else f"unpinned head {previous}: the newest sane head is served")
    return 0


# -- argparse -> typed configuration --------------------------------------------------------------------------------
def _utc(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date-time: {text!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _positive(kind: type) -> Callable[[str], float | int]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0 or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be a finite number > 0: {text!r}")
        return value

    return parse


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    database = argparse.ArgumentParser(add_help=False)
    where = database.add_mutually_exclusive_group()
    where.add_argument("--url", help=f"database URL (sqlite:///file.db or postgresql://...); default ${URL_ENV}")
    where.add_argument("--config", help="a serve config (serve_configs/*.yaml): use its database_url")

    parser = argparse.ArgumentParser(
        prog="python -m raydq.admin", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = sub.add_parser("db", help="schema migrations").add_subparsers(dest="action", required=True, metavar="ACTION")
    db.add_parser(
        "upgrade", parents=[database], help="apply pending migrations (creates a missing SQLite file)"
    ).set_defaults(make=lambda ns, url: DbCommand(url, db_upgrade))
    db.add_parser("current", parents=[database], help="show the schema revision (exit 1 if outdated)").set_defaults(
        make=lambda ns, url: DbCommand(url, db_current)
    )

    tokens = sub.add_parser("tokens", help="per-annotator API tokens").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    add = tokens.add_parser("add", parents=[database], help="create a token and print it (shown only once)")
    add.add_argument("name", help="the annotator's name (recorded with their labels)")
    add.add_argument("--role", choices=ROLES, default="annotator")
    add.add_argument("--expires-in-days", type=_positive(float), default=None, help="default: never")
    add.set_defaults(make=lambda ns, url: TokenAdd(url, tokens_add, ns.name, ns.role, ns.expires_in_days))
    listing = tokens.add_parser("list", parents=[database], help="list tokens (never their secrets)")
    listing.add_argument("--all", action="store_true", help="include revoked tokens")
    listing.set_defaults(make=lambda ns, url: TokenList(url, tokens_list, ns.all))
    revoke = tokens.add_parser("revoke", parents=[database], help="revoke NAME's live token")
    revoke.add_argument("name")
    revoke.set_defaults(make=lambda ns, url: TokenRevoke(url, tokens_revoke, ns.name))

    exp = sub.add_parser("export", parents=[database], help="write the current labels as JSONL or CSV")
    exp.add_argument("--format", choices=FORMATS, default="jsonl")
    exp.add_argument("--since-revision", type=_non_negative_int, default=0, help="only labels changed after it")
    exp.add_argument("--output", required=True, help="a file (written atomically), or - for stdout")
    exp.add_argument("--exclude-skips", action="store_true", help="leave skipped items out (default: flagged rows)")
    exp.set_defaults(
        make=lambda ns, url: Export(url, export, ns.format, ns.since_revision, ns.output, not ns.exclude_skips)
    )

    bak = sub.add_parser(
        "backup", parents=[database], help="online SQLite backup; for PostgreSQL print the pg_dump command"
    )
    bak.add_argument("--output", required=True, type=Path)
    bak.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    bak.set_defaults(make=lambda ns, url: Backup(url, backup, ns.output, ns.overwrite))

    aud = sub.add_parser("audit", parents=[database], help="the newest audit entries as JSON lines")
    aud.add_argument("--caller")
    aud.add_argument("--action", help="select, label, skip, renew, release, token_add, head_pin, ...")
    aud.add_argument("--since", type=_utc, help="ISO date-time (UTC unless it says otherwise)")
    aud.add_argument("--until", type=_utc)
    aud.add_argument("--limit", type=_positive(int), default=50)
    aud.set_defaults(
        make=lambda ns, url: AuditQuery(url, audit, ns.caller, ns.action, ns.since, ns.until, min(ns.limit, 10_000))
    )

    heads = sub.add_parser("heads", help="trained heads: list, pin (roll back), unpin").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    heads.add_parser("list", parents=[database], help="stored heads").set_defaults(
        make=lambda ns, url: Command(url, heads_list)
    )
    pin = heads.add_parser("pin", parents=[database], help="serve VERSION until unpinned")
    pin.add_argument("version", type=_positive(int))
    pin.set_defaults(make=lambda ns, url: HeadPin(url, heads_pin, ns.version))
    heads.add_parser("unpin", parents=[database], help="serve the newest sane head again").set_defaults(
        make=lambda ns, url: Command(url, heads_unpin)
    )
    return parser


def resolve_url(url: str | None, config: str | None) -> str:
    """``--url``, else the serve config's ``database_url``, else ``$RAYDQ_DATABASE_URL``; a relative SQLite path is
    made absolute against the current directory (so messages say which file)."""
    if url:
        return _absolute(url)
    if config:
        if not Path(config).is_file():
            raise UsageError(f"no serve config at {config}")
        return _absolute(load_args(config=config, args_json=None).resolved_database_url())
    if os.environ.get(URL_ENV):
        return _absolute(os.environ[URL_ENV])
    raise UsageError(f"no database given: use --url URL, --config serve_configs/local.yaml, or set {URL_ENV}")


def _absolute(url: str) -> str:
    url = normalise_url(url)
    path = sqlite_path(url)
    return f"sqlite:///{path.resolve()}" if path is not None and not path.is_absolute() else url


def parse(argv: list[str] | None = None) -> Command:
    ns = build_parser().parse_args(argv)
    return ns.make(ns, resolve_url(ns.url, ns.config))


def _one_line(error: BaseException) -> str:
    if isinstance(error, ValidationError):  # a serve config that ServeArgs refuses: its first complaint
        first = error.errors()[0]
        return f"{error.title}: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    if isinstance(error, DBAPIError):  # the driver's own first line ("connection refused", "database ... not exist")
        error = error.orig or error
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def main(argv: list[str] | None = None) -> int:
    try:
        command = parse(argv)
        return command.run(command)
    except (
        UsageError,
        ValueError,  # a bad URL, InvalidField, pydantic's ValidationError of a serve config
        DatabaseMissing,
        SchemaError,
        NotFound,
        AlreadyExists,
        Forbidden,
        FileExistsError,
        DBAPIError,
        OSError,
    ) as e:
        kind = (
            "" if isinstance(e, UsageError | DatabaseMissing | SchemaError | InvalidField) else f"{type(e).__name__}: "
        )
        print(f"raydq.admin: error: {kind}{_one_line(e)}", file=sys.stderr)
        return 1
