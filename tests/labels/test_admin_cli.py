"""``python -m raydq.admin`` on SQLite and PostgreSQL: the documented commands do what they say, the database comes
from --url, a serve config or the environment, and every failure is one line on stderr with a non-zero status."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from raydq.admin.cli import main
from raydq.labels import Identity, LabelIn, LabelStore
from tests.labels.conftest import ALICE
from tests.labels.legacy_schema import build_legacy_database

ROOT = Path(__file__).resolve().parents[2]


def admin(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, out: str, err: str, needle: str) -> None:
    assert rc == 1 and out == ""
    assert err.startswith("raydq.admin: error: ") and err.count("\n") == 1, err
    assert needle in err, err


def test_a_day_of_administration(db_url, capsys, tmp_path):
    url = ["--url", db_url]
    rc, out, _ = admin(capsys, "db", "upgrade", *url)
    assert rc == 0 and "schema upgraded from none (empty database) to 0006" in out
    rc, out, _ = admin(capsys, "db", "current", *url)
    assert rc == 0 and "schema revision 0006, newest 0006 (up to date)" in out

    rc, out, err = admin(capsys, "tokens", "add", "alice", *url)
    token = out.strip()
    assert rc == 0 and token.startswith("rdq_") and "shown only now" in err
    rc, out, _ = admin(capsys, "tokens", "add", "boss", "--role", "admin", "--expires-in-days", "30", *url)
    boss = out.strip()
    store = LabelStore(db_url, create=False)
    assert store.authenticate(token) == Identity("alice") and store.authenticate(boss) == Identity("boss", "admin")
    rc, out, _ = admin(capsys, "tokens", "list", *url)
    lines = out.splitlines()
    assert rc == 0 and lines[0].split() == ["NAME", "ROLE", "CREATED", "EXPIRES", "STATUS"]
    assert [line.split()[:2] for line in lines[1:]] == [["alice", "annotator"], ["boss", "admin"]]
    assert token not in out and boss not in out
    assert admin(capsys, "tokens", "revoke", "alice", *url)[0] == 0
    assert store.authenticate(token) is None
    assert "alice" not in admin(capsys, "tokens", "list", *url)[1]
    assert admin(capsys, "tokens", "list", "--all", *url)[1].splitlines()[1].split()[-1] == "revoked"

    store.apply_labels([LabelIn(id=f"i{k}", label="cat") for k in range(5)], caller=ALICE)
    store.apply_labels([LabelIn(id="i1", label="dog"), LabelIn(id="i9", skip=True, reason="a, b")], caller=ALICE)
    rows = [r.model_dump(mode="json") for r in store.iter_export()]
    rc, _, err = admin(capsys, "export", "--format", "jsonl", "--output", str(tmp_path / "all.jsonl"), *url)
    assert rc == 0 and "wrote 6 rows" in err and "--since-revision 2" in err
    assert [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()] == rows
    rc, _, err = admin(
        capsys, "export", "--format", "csv", "--since-revision", "1", "--exclude-skips", "--output", "-", *url
    )
    assert rc == 0 and "wrote 1 rows" in err
    rc, out, _ = admin(capsys, "export", "--format", "csv", "--since-revision", "1", "--output", "-", *url)
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert [(r["item_id"], r["kind"], r["label"], r["reason"]) for r in parsed] == [
        ("i1", "label", "dog", ""),
        ("i9", "skip", "", "a, b"),
    ]

    version = store.save_head(revision=2, n_labels=6, classes=["cat", "dog"], payload={})
    store.save_head(revision=2, n_labels=6, classes=["cat", "dog"], payload={})
    assert admin(capsys, "heads", "pin", str(version), *url)[0] == 0
    assert store.latest_good_head().version == version
    rc, out, _ = admin(capsys, "heads", "list", *url)
    assert rc == 0 and f"{version} " in out and "pinned, served" in out
    assert "unpinned head" in admin(capsys, "heads", "unpin", *url)[1]
    rc, out, _ = admin(capsys, "audit", "--caller", "admin-cli", "--limit", "3", *url)
    entries = [json.loads(line) for line in out.splitlines()]
    assert [e["action"] for e in entries] == ["head_unpin", "head_pin", "token_revoke"]

    rc, out, err = admin(capsys, "backup", "--output", str(tmp_path / "copy.db"), *url)
    if db_url.startswith("sqlite"):
        assert rc == 0 and "revision 2, 6 answers" in out
        copy = LabelStore(f"sqlite:///{tmp_path / 'copy.db'}", create=False)
        assert copy.count_labels() == 5 and copy.count_skipped() == 1
        copy.close()
    else:
        assert rc == 0 and out.startswith("pg_dump --format=custom") and "pg_dump" in err
    store.close()


def test_a_legacy_database_is_refused_until_upgraded(db_url, capsys):
    written = build_legacy_database(db_url, n_labels=40)
    rc, out, err = admin(capsys, "tokens", "list", "--url", db_url)
    assert_one_line_error(rc, out, err, "run: python -m raydq.admin db upgrade --url")
    rc, out, err = admin(capsys, "db", "current", "--url", db_url)
    assert rc == 1 and "0001 (raydq 0.1, no version table)" in out and "outdated" in out
    rc, out, _ = admin(capsys, "db", "upgrade", "--url", db_url)
    assert rc == 0 and "upgraded from 0001 (raydq 0.1, no version table) to 0006" in out
    store = LabelStore(db_url, create=False)
    assert store.training_snapshot().labels == {i: x["label"] for i, x in written["labels"].items()}
    store.close()


def test_where_the_database_comes_from(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAYDQ_DATABASE_URL", raising=False)
    assert_one_line_error(*admin(capsys, "tokens", "list"), "no database given: use --url")
    (tmp_path / "serve.yaml").write_text(
        "applications:\n  - name: raydq\n    import_path: raydq.serve.app:build_app\n    args:\n"
        "      embeddings: data/embeddings/x\n      database_url: sqlite:///${LABELS_DIR:-data}/labels.db\n"
    )
    rc, out, _ = admin(capsys, "db", "upgrade", "--config", "serve.yaml")
    assert rc == 0 and (tmp_path / "data" / "labels.db").is_file()  # relative to where the command runs
    assert str(tmp_path / "data" / "labels.db") in out
    monkeypatch.setenv("LABELS_DIR", "other")
    missing = f"no database at {tmp_path / 'other' / 'labels.db'}"
    assert_one_line_error(*admin(capsys, "tokens", "list", "--config", "serve.yaml"), missing)
    monkeypatch.setenv("RAYDQ_DATABASE_URL", f"sqlite:///{tmp_path / 'data' / 'labels.db'}")
    assert admin(capsys, "tokens", "add", "carol")[0] == 0
    monkeypatch.delenv("LABELS_DIR")
    assert "carol" in admin(capsys, "tokens", "list", "--config", "serve.yaml")[1]  # the same file
    # the repository's own configs: local.yaml names data/labels.db, cluster.yaml the environment's URL
    rc, out, _ = admin(capsys, "db", "current", "--config", str(ROOT / "serve_configs" / "local.yaml"))
    assert rc == 0 and f"sqlite:///{tmp_path / 'data' / 'labels.db'}: schema revision 0006" in out
    assert "carol" in admin(capsys, "tokens", "list", "--config", str(ROOT / "serve_configs" / "cluster.yaml"))[1]
    monkeypatch.delenv("RAYDQ_DATABASE_URL")
    rc, out, err = admin(capsys, "tokens", "list", "--config", str(ROOT / "serve_configs" / "cluster.yaml"))
    assert_one_line_error(rc, out, err, "database_url: environment variable RAYDQ_DATABASE_URL is not set")
    assert_one_line_error(*admin(capsys, "tokens", "list", "--config", "missing.yaml"), "no serve config at")
    (tmp_path / "broken.yaml").write_text("applications:\n  - args:\n      database_url: sqlite:///x.db\n")
    assert_one_line_error(*admin(capsys, "tokens", "list", "--config", "broken.yaml"), "ServeArgs: embeddings: Field")
    with pytest.raises(SystemExit) as exit_:
        main(["tokens", "list", "--url", "sqlite:///a.db", "--config", "serve.yaml"])
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_failures_are_one_line(tmp_path, capsys, pg_server):
    LabelStore(f"sqlite:///{tmp_path / 'l.db'}").close()
    ok = ["--url", f"sqlite:///{tmp_path / 'l.db'}"]
    cases = [
        (["db", "current", "--url", "labels.db"], "not a database URL"),
        (["tokens", "list", "--url", "mysql://u@h/db"], "unsupported database 'mysql'"),
        (["tokens", "list", "--url", f"sqlite:///{tmp_path / 'nope.db'}"], "no database at"),
        (["tokens", "list", "--url", "postgresql://postgres@127.0.0.1:1/x"], "Connection refused"),
        (["tokens", "list", "--url", pg_server + "/no_such_database"], 'database "no_such_database" does not exist'),
        (["tokens", "revoke", "nobody", *ok], "no live token named 'nobody'"),
        (["tokens", "add", "api-token", *ok], "name: 'api-token' is reserved"),
        (["heads", "pin", "7", *ok], "no stored head with version 7"),
        (["backup", "--output", str(tmp_path / "l.db"), "--overwrite", *ok], "must not overwrite the database"),
    ]
    for argv, needle in cases:
        assert_one_line_error(*admin(capsys, *argv), needle)
    admin(capsys, "tokens", "add", "dora", *ok)
    assert_one_line_error(*admin(capsys, "tokens", "add", "dora", *ok), "already has a live token")
    for argv in (["tokens", "add", "x", "--role", "owner", *ok], ["export", "--format", "xml", "--output", "-", *ok]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["tokens", "add", "x", "--expires-in-days", "nan", *ok])
    assert exit_.value.code == 2 and "finite number > 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["db", "upgrade"],
        ["db", "current"],
        ["tokens", "add"],
        ["tokens", "list"],
        ["tokens", "revoke"],
        ["export"],
        ["backup"],
        ["audit"],
        ["heads", "list"],
        ["heads", "pin"],
        ["heads", "unpin"],
    ],
)
def test_every_subcommand_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and out.startswith("usage: python -m raydq.admin")
    if argv:
        assert "--url" in out and "--config" in out


def test_python_dash_m_runs_it(tmp_path):
    """The module entry point as a user runs it: a fresh interpreter, exit status and streams."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAYDQ_DATABASE_URL": f"sqlite:///{tmp_path / 'l.db'}"}
    run = [sys.executable, "-m", "raydq.admin"]
    made = subprocess.run([*run, "db", "upgrade"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert made.returncode == 0 and "to 0006" in made.stdout
    added = subprocess.run([*run, "tokens", "add", "erin"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert added.returncode == 0 and added.stdout.startswith("rdq_") and added.stdout.count("\n") == 1
    refused = subprocess.run([*run, "tokens", "revoke", "nobody"], env=env, capture_output=True, text=True)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and refused.stdout == ""
