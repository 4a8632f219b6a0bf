"""Per-annotator API tokens on SQLite and PostgreSQL: only a SHA-256 is stored, the secret is shown once, roles,
expiry, revocation, one live token per name (even under concurrent adds), admin-only management; and the shared
token of the environment."""

from __future__ import annotations

import hashlib
import threading
from datetime import timedelta

import pytest
from sqlalchemy import text

from raydq.labels import AlreadyExists, Forbidden, Identity, InvalidField, NotFound, match_shared_token
from raydq.labels.models import utcnow
from tests.labels.conftest import ADMIN, ALICE


def test_tokens_authenticate_and_only_their_hash_is_stored(store):
    alice = store.add_token("alice", caller=ADMIN)
    boss = store.add_token("boss", role="admin", caller=ADMIN)
    assert alice.token.startswith("rdq_") and len(alice.token) >= 4 + 43 and alice.token != boss.token
    assert "token=" not in repr(alice)  # the secret stays out of logs
    assert store.authenticate(alice.token) == Identity("alice", "annotator")
    assert store.authenticate(boss.token) == Identity("boss", "admin")
    assert [(t.name, t.role, t.revoked_at) for t in store.list_tokens()] == [
        ("alice", "annotator", None),
        ("boss", "admin", None),
    ]
    with store.db.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM raydq_tokens")).all()
    stored = " ".join(str(v) for row in rows for v in row)
    assert alice.token not in stored and boss.token not in stored
    assert hashlib.sha256(alice.token.encode()).hexdigest() in stored


@pytest.mark.parametrize(
    "token",
    ["", "rdq_", "rdq_" + "x" * 43, "Bearer rdq_abc", "rdq_" + "y" * 500, "a\x00b", "rdq_\ud800", None, 7],
)
def test_anything_else_authenticates_as_nobody(store, token):
    store.add_token("alice", caller=ADMIN)
    assert store.authenticate(token) is None


def test_revocation_expiry_and_one_live_token_per_name(store):
    now = utcnow()
    first = store.add_token("alice", caller=ADMIN, now=now)
    with pytest.raises(AlreadyExists, match="revoke it first"):
        store.add_token("alice", caller=ADMIN, now=now)
    revoked = store.revoke_token("alice", caller=ADMIN, now=now)
    assert revoked.revoked_at == now and store.authenticate(first.token) is None
    with pytest.raises(NotFound):
        store.revoke_token("alice", caller=ADMIN)
    second = store.add_token("alice", caller=ADMIN, expires_at=now + timedelta(days=1), now=now)
    assert store.authenticate(second.token, now=now + timedelta(hours=23)) == Identity("alice")
    assert store.authenticate(second.token, now=now + timedelta(days=1)) is None  # expired
    third = store.add_token("alice", role="admin", caller=ADMIN, now=now + timedelta(days=2))  # replaces the expired
    assert store.authenticate(third.token) == Identity("alice", "admin")
    assert store.authenticate(second.token) is None and store.authenticate(first.token) is None
    everything = store.list_tokens(include_revoked=True)
    assert [(t.name, t.role, t.revoked_at is None) for t in everything] == [
        ("alice", "annotator", False),
        ("alice", "annotator", False),
        ("alice", "admin", True),
    ]
    assert [t.role for t in store.list_tokens()] == ["admin"]
    with pytest.raises(InvalidField, match="expires_at: must be in the future"):
        store.add_token("carol", caller=ADMIN, expires_at=now - timedelta(seconds=1))


def test_only_admins_manage_tokens_and_names_are_checked(store):
    with pytest.raises(Forbidden):
        store.add_token("mallory", role="admin", caller=ALICE)
    admin_token = store.add_token("eve", caller=ADMIN)
    with pytest.raises(Forbidden):
        store.revoke_token("eve", caller=ALICE)
    assert store.authenticate(admin_token.token) == Identity("eve")
    for name, message in [
        ("api-token", "reserved"),
        ("anonymous", "reserved"),
        ("has space", "letters, digits"),
        ("-dash-first", "letters, digits"),
        ("x" * 65, "longer than 64"),
        ("", "must not be empty"),
    ]:
        with pytest.raises(InvalidField, match=message) as err:
            store.add_token(name, caller=ADMIN)
        assert err.value.field == ("name",)
    with pytest.raises(InvalidField) as err:
        store.add_token("frank", role="owner", caller=ADMIN)
    assert err.value.field == ("role",)
    assert [t.name for t in store.list_tokens()] == ["eve"]
    entries, _ = store.audit_log()
    assert [(e.caller, e.action, e.detail["name"]) for e in entries] == [("root", "token_add", "eve")]


def test_concurrent_adds_of_one_name_leave_one_live_token(store):
    won, lost, errors = [], [], []

    def add() -> None:
        try:
            won.append(store.add_token("zoe", caller=ADMIN))
        except AlreadyExists:
            lost.append(1)
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=add) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(won) == 1 and len(lost) == 5
    assert len(store.list_tokens(include_revoked=True)) == 1
    assert store.authenticate(won[0].token) == Identity("zoe")


def test_shared_token_is_an_admin_named_api_token():
    assert match_shared_token("s3cret", "s3cret") == Identity("api-token", "admin")
    assert match_shared_token("s3cret", "other") is None
    assert match_shared_token("s3cre", "s3cret") is None
    assert match_shared_token("s3cret", None) is None and match_shared_token("", "") is None
    assert match_shared_token("\ud800", "s3cret") is None  # invalid Unicode compares, and fails, without raising
