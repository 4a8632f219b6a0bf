"""``LabelStore``: the label store behind one object.

Every write method runs in its own transaction, so each call is all-or-nothing and a method that returned has
committed (the service acknowledges only after that). Several writes that must commit together (an action, its
idempotency record) use ``store.transaction()``, which hands out a ``LabelTransaction`` with the same write methods::

    with store.transaction() as tx:
        stored = tx.recall(caller=who, key=key, endpoint="update_labels", request=body)
        if stored is None:
            counts = tx.apply_labels(answers, caller=who, request_id=rid)
            tx.remember(caller=who, key=key, endpoint="update_labels", request=body, response=build(counts))

Every action of a caller (select, label, skip, release, renew, token and head administration) writes its audit
row in the action's own transaction. Text is checked before it reaches the database (``InvalidField`` names the
field).
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from raydq.labels.crud import answers, audit, heads, idempotency, leases, tokens
from raydq.labels.crud.meta import labels_revision, lock_revision
from raydq.labels.db import Database, connect
from raydq.labels.errors import Forbidden, InvalidField
from raydq.labels.export import decode_cursor, encode_cursor
from raydq.labels.identity import TOKEN_PREFIX, Identity, check_role, check_token_name
from raydq.labels.migrate import SchemaState, check_schema
from raydq.labels.models import LABEL, SKIP, utcnow
from raydq.labels.schemas import (
    MAX_ID,
    MAX_LABEL,
    MAX_NAME,
    MAX_REASON,
    AuditPublic,
    BatchPublic,
    ExportRow,
    HeadPublic,
    LabelChange,
    LabelCounts,
    LabelEventPublic,
    LabelIn,
    LabelPublic,
    LabelSnapshot,
    NewToken,
    TokenPublic,
)
from raydq.labels.text import check_optional_text, check_text

MAX_PAGE = 10_000  # rows per export or audit page
MAX_LEASE_S = 366 * 86400.0  # the store's own bound on a lease (the service's max_lease_seconds is tighter)
AUDIT_IDS = 20  # item ids an audit row lists (the label history has them all)
_ACTION = re.compile(r"[a-z][a-z_]{0,31}")


def _check_caller(caller: Identity) -> Identity:
    if not isinstance(caller, Identity):
        raise InvalidField(("caller",), "must be an Identity")
    check_text(caller.name, ("caller", "name"), max_length=MAX_NAME)
    check_role(caller.role)
    return caller


def _require_admin(caller: Identity) -> None:
    if not _check_caller(caller).is_admin:
        raise Forbidden(f"{caller.name!r} is not an admin")


def _check_seconds(seconds: float, field: str) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
        raise InvalidField((field,), "must be a finite number")
    if not 0 < seconds <= MAX_LEASE_S:
        raise InvalidField((field,), f"must be > 0 and <= {MAX_LEASE_S:.0f}")
    return float(seconds)


def _check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidField(("limit",), f"must be an integer from 1 to {MAX_PAGE}")
    return limit


def _check_answers(labels: Sequence[LabelIn]) -> list[str]:
    """The ids, after checking every text field again (a ``model_construct``-ed LabelIn skips pydantic)."""
    if not labels:
        raise InvalidField(("labels",), "must not be empty")
    seen: dict[str, int] = {}
    for n, x in enumerate(labels):
        if not isinstance(x, LabelIn):
            raise InvalidField(("labels", n), "must be a LabelIn")
        check_text(x.id, ("labels", n, "id"), max_length=MAX_ID)
        if x.id in seen:
            raise InvalidField(("labels", n, "id"), f"duplicate id (also at labels[{seen[x.id]}])")
        seen[x.id] = n
        check_optional_text(x.label, ("labels", n, "label"), max_length=MAX_LABEL)
        check_optional_text(x.reason, ("labels", n, "reason"), max_length=MAX_REASON)
        check_optional_text(x.annotator, ("labels", n, "annotator"), max_length=MAX_NAME)
        if (x.label is None) != x.skip:
            raise InvalidField(("labels", n, "label"), "a label, or skip without a label")
    return list(seen)


class LabelTransaction:
    """The write methods of the store inside one open transaction (from ``LabelStore.transaction()``).

    ``now`` is the transaction's clock: every row it writes carries it.
    """

    def __init__(self, session: Session, now: datetime) -> None:
        self.session = session
        self.now = now

    # -- answers -----------------------------------------------------------------------------------------------------
    def apply_labels(
        self,
        labels: Sequence[LabelIn],
        *,
        caller: Identity,
        batch_id: str | None = None,
        request_id: str | None = None,
    ) -> LabelCounts:
        """Store labels and skips, all or nothing (see ``answers.apply_answers``); the annotator recorded is each
        answer's ``annotator`` if the service set one, else ``caller.name``. Answered items lose their leases. The
        counts report the items whose lease did not cover them (stored all the same)."""
        _check_caller(caller)
        ids = _check_answers(labels)
        check_optional_text(batch_id, ("batch_id",), max_length=64)
        check_optional_text(request_id, ("request_id",), max_length=128)
        s = self.session
        lock_revision(session=s)
        if batch_id is not None and not leases.batch_exists(session=s, batch_id=batch_id):
            raise InvalidField(("batch_id",), "unknown batch")
        report = leases.lease_report(session=s, item_ids=ids, caller=caller, batch_id=batch_id, now=self.now)
        tally = answers.apply_answers(session=s, answers=labels, caller=caller.name, batch_id=batch_id, now=self.now)
        leases.end_leases(session=s, item_ids=ids)
        for kind in (LABEL, SKIP):
            of_kind = [x.id for x in labels if x.kind == kind]
            if of_kind:
                detail = {
                    "items": len(of_kind),
                    "created": tally.created[kind],
                    "updated": tally.updated[kind],
                    "unchanged": tally.unchanged[kind],
                    "revision": tally.revision,
                    "item_ids": of_kind[:AUDIT_IDS],
                }
                if report.count:
                    detail["lease_not_covering"] = report.count
                self.audit(caller=caller, action=kind, request_id=request_id, batch_id=batch_id, detail=detail)
        return LabelCounts(
            received=len(labels),
            created=sum(tally.created.values()),
            updated=sum(tally.updated.values()),
            unchanged=sum(tally.unchanged.values()),
            skipped=sum(1 for x in labels if x.skip),
            revision=tally.revision,
            labeled=answers.count_answers(session=s, kind=LABEL),
            lease=report,
        )

    # -- batches and leases ------------------------------------------------------------------------------------------
    def create_batch(
        self,
        *,
        batch_id: str,
        item_ids: Sequence[str],
        expires_at: datetime,
        strategy: str,
        model_version: int,
        caller: Identity,
        request_id: str | None = None,
    ) -> None:
        """Lease ``item_ids`` to ``caller`` under a new batch; ``LeaseConflict`` (nothing written) if any of them is
        leased, labeled or skipped meanwhile."""
        _check_caller(caller)
        check_text(batch_id, ("batch_id",), max_length=64)
        check_text(strategy, ("strategy",), max_length=64)
        check_optional_text(request_id, ("request_id",), max_length=128)
        if not item_ids:
            raise InvalidField(("item_ids",), "must not be empty")
        for n, item in enumerate(item_ids):
            check_text(item, ("item_ids", n), max_length=MAX_ID)
        if len(set(item_ids)) != len(item_ids):
            raise InvalidField(("item_ids",), "duplicate ids")
        if expires_at <= self.now:
            raise InvalidField(("expires_at",), "must be in the future")
        leases.create_batch(
            session=self.session,
            batch_id=batch_id,
            item_ids=list(item_ids),
            owner=caller.name,
            now=self.now,
            expires_at=expires_at,
            strategy=strategy,
            model_version=model_version,
        )
        detail = {"items": len(item_ids), "strategy": strategy, "model_version": model_version}
        detail["expires_at"] = expires_at.isoformat()
        self.audit(caller=caller, action="select", request_id=request_id, batch_id=batch_id, detail=detail)

    def renew_batch(
        self, batch_id: str, *, caller: Identity, seconds: float, request_id: str | None = None
    ) -> BatchPublic:
        """Hold the batch's unanswered items ``seconds`` from now (owner or admin; see ``leases.renew_batch``)."""
        _check_caller(caller)
        check_text(batch_id, ("batch_id",), max_length=64)
        check_optional_text(request_id, ("request_id",), max_length=128)
        expires_at = self.now + timedelta(seconds=_check_seconds(seconds, "seconds"))
        batch = leases.renew_batch(
            session=self.session, batch_id=batch_id, caller=caller, now=self.now, expires_at=expires_at
        )
        detail = {"seconds": seconds, "leased": len(batch.leased_ids), "expires_at": expires_at.isoformat()}
        self.audit(caller=caller, action="renew", request_id=request_id, batch_id=batch_id, detail=detail)
        return batch

    def release_batch(self, batch_id: str, *, caller: Identity, request_id: str | None = None) -> int:
        """End the batch's leases now (its owner, or an admin for any batch); how many ended. ``NotFound`` for an
        unknown batch, ``Forbidden`` for someone else's."""
        _check_caller(caller)
        check_text(batch_id, ("batch_id",), max_length=64)
        check_optional_text(request_id, ("request_id",), max_length=128)
        released, owner = leases.release_batch(session=self.session, batch_id=batch_id, caller=caller, now=self.now)
        detail = {"released": released, "owner": owner}
        self.audit(caller=caller, action="release", request_id=request_id, batch_id=batch_id, detail=detail)
        return released

    # -- idempotency -------------------------------------------------------------------------------------------------
    def recall(self, *, caller: Identity, key: str, endpoint: str, request: Any) -> Any | None:
        """The response stored for (caller, key, endpoint), None for a new key; ``IdempotencyConflict`` when the key
        came with another request. Takes the write lock, so a concurrent retry waits for the first to commit."""
        _check_caller(caller)
        _check_key(key, endpoint)
        lock_revision(session=self.session)
        digest = idempotency.request_hash(request)
        return idempotency.recall(session=self.session, caller=caller.name, key=key, endpoint=endpoint, digest=digest)

    def remember(self, *, caller: Identity, key: str, endpoint: str, request: Any, response: Any) -> None:
        """Store ``response`` (JSON-able) for a retry of this request; commit it with the action it answers."""
        _check_caller(caller)
        _check_key(key, endpoint)
        idempotency.remember(
            session=self.session,
            caller=caller.name,
            key=key,
            endpoint=endpoint,
            digest=idempotency.request_hash(request),
            response=response,
            now=self.now,
        )

    # -- audit -------------------------------------------------------------------------------------------------------
    def audit(
        self,
        *,
        caller: Identity,
        action: str,
        request_id: str | None = None,
        batch_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Record an action (the service records its own admin actions with this, inside their transaction)."""
        _check_caller(caller)
        check_text(action, ("action",), max_length=32)
        if not _ACTION.fullmatch(action):
            raise InvalidField(("action",), "lowercase letters and underscores")
        check_optional_text(request_id, ("request_id",), max_length=128)
        check_optional_text(batch_id, ("batch_id",), max_length=64)
        audit.record(
            session=self.session,
            caller=caller,
            action=action,
            request_id=request_id,
            batch_id=batch_id,
            detail=dict(detail or {}),
            now=self.now,
        )

    # -- tokens (admin) ----------------------------------------------------------------------------------------------
    def add_token(
        self, name: str, *, role: str = "annotator", expires_at: datetime | None = None, caller: Identity
    ) -> NewToken:
        """A new API token for ``name``; the secret is in the result and nowhere else."""
        _require_admin(caller)
        check_token_name(name)
        check_role(role)
        if expires_at is not None and expires_at <= self.now:
            raise InvalidField(("expires_at",), "must be in the future")
        new = tokens.add_token(session=self.session, name=name, role=role, expires_at=expires_at, now=self.now)
        detail = {"name": name, "role": role, "expires_at": expires_at.isoformat() if expires_at else None}
        self.audit(caller=caller, action="token_add", detail=detail)
        return new

    def revoke_token(self, name: str, *, caller: Identity) -> TokenPublic:
        _require_admin(caller)
        check_text(name, ("name",), max_length=64)
        revoked = tokens.revoke_token(session=self.session, name=name, now=self.now)
        self.audit(caller=caller, action="token_revoke", detail={"name": name, "role": revoked.role})
        return revoked

    # -- heads -------------------------------------------------------------------------------------------------------
    def allocate_head_version(self) -> int:
        return heads.allocate_version(session=self.session)

    def save_head(
        self,
        *,
        revision: int,
        n_labels: int,
        classes: Sequence[str],
        payload: dict[str, Any],
        version: int | None = None,
        sane: bool = True,
        reason: str | None = None,
        keep: int = 5,
    ) -> int:
        """Store a trained head (``version`` None: allocate one); returns its version. A head that failed the
        trainer's sanity check is stored with ``sane=False`` and its ``reason`` and is never served."""
        check_optional_text(reason, ("reason",))
        return heads.save_head(
            session=self.session,
            version=version,
            revision=revision,
            n_labels=n_labels,
            classes=classes,
            payload=payload,
            sane=sane,
            reason=reason,
            now=self.now,
            keep=keep,
        )

    def pin_head(self, version: int, *, caller: Identity, request_id: str | None = None) -> None:
        """Serve head ``version`` from now on, whatever is trained later (admin rollback)."""
        _require_admin(caller)
        heads.pin_head(session=self.session, version=version)
        self.audit(caller=caller, action="head_pin", request_id=request_id, detail={"version": version})

    def unpin_head(self, *, caller: Identity, request_id: str | None = None) -> int | None:
        """Back to the newest sane head; returns the version that was pinned (None if none was)."""
        _require_admin(caller)
        previous = heads.unpin_head(session=self.session)
        self.audit(caller=caller, action="head_unpin", request_id=request_id, detail={"previous": previous})
        return previous


def _check_key(key: str, endpoint: str) -> None:
    check_text(key, ("idempotency_key",), max_length=256)
    check_text(endpoint, ("endpoint",), max_length=64)


class LabelStore:
    """Answers (labels and skips) with their history, batches and leases, trained heads, API tokens, the audit log
    and idempotency records, in one SQL database.

    Parameters
    ----------
    url : str
        SQLAlchemy URL: ``sqlite:///path/labels.db`` (default set-up) or ``postgresql://user:pw@host/db``.
    create : bool, default=True
        Create a missing SQLite file, and the schema in an empty database. The service creates; admin commands
        don't (they refuse a missing database). Any schema other than the newest is refused either way
        (``SchemaOutdated``: run ``python -m raydq.admin db upgrade``).
    """

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self.db: Database = connect(url, create=create)
        try:
            self.schema: SchemaState = check_schema(self.db, create=create)
        except BaseException:
            self.db.dispose()
            raise

    @property
    def dialect(self) -> str:
        return self.db.dialect

    def close(self) -> None:
        self.db.dispose()

    @contextlib.contextmanager
    def transaction(self, *, now: datetime | None = None) -> Iterator[LabelTransaction]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        with self.db.write_session() as s, s.begin():
            yield LabelTransaction(s, now or utcnow())

    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        with self.db.read_session() as s, s.begin():
            yield s

    # -- writes, one transaction each (see LabelTransaction for what they do) ----------------------------------------
    def apply_labels(
        self,
        labels: Sequence[LabelIn],
        *,
        caller: Identity,
        batch_id: str | None = None,
        request_id: str | None = None,
        now: datetime | None = None,
    ) -> LabelCounts:
        with self.transaction(now=now) as tx:
            return tx.apply_labels(labels, caller=caller, batch_id=batch_id, request_id=request_id)

    def create_batch(
        self,
        *,
        batch_id: str,
        item_ids: Sequence[str],
        expires_at: datetime,
        strategy: str,
        model_version: int,
        caller: Identity,
        request_id: str | None = None,
        now: datetime | None = None,
    ) -> None:
        with self.transaction(now=now) as tx:
            tx.create_batch(
                batch_id=batch_id,
                item_ids=item_ids,
                expires_at=expires_at,
                strategy=strategy,
                model_version=model_version,
                caller=caller,
                request_id=request_id,
            )

    def renew_batch(
        self,
        batch_id: str,
        *,
        caller: Identity,
        seconds: float,
        request_id: str | None = None,
        now: datetime | None = None,
    ) -> BatchPublic:
        with self.transaction(now=now) as tx:
            return tx.renew_batch(batch_id, caller=caller, seconds=seconds, request_id=request_id)

    def release_batch(
        self, batch_id: str, *, caller: Identity, request_id: str | None = None, now: datetime | None = None
    ) -> int:
        with self.transaction(now=now) as tx:
            return tx.release_batch(batch_id, caller=caller, request_id=request_id)

    def add_token(
        self,
        name: str,
        *,
        role: str = "annotator",
        expires_at: datetime | None = None,
        caller: Identity,
        now: datetime | None = None,
    ) -> NewToken:
        with self.transaction(now=now) as tx:
            return tx.add_token(name, role=role, expires_at=expires_at, caller=caller)

    def revoke_token(self, name: str, *, caller: Identity, now: datetime | None = None) -> TokenPublic:
        with self.transaction(now=now) as tx:
            return tx.revoke_token(name, caller=caller)

    def audit(
        self,
        *,
        caller: Identity,
        action: str,
        request_id: str | None = None,
        batch_id: str | None = None,
        detail: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> None:
        with self.transaction(now=now) as tx:
            tx.audit(caller=caller, action=action, request_id=request_id, batch_id=batch_id, detail=detail)

    def allocate_head_version(self) -> int:
        """A new model version, unique across every trainer on this database (seed a training with it)."""
        with self.transaction() as tx:
            return tx.allocate_head_version()

    def save_head(
        self,
        *,
        revision: int,
        n_labels: int,
        classes: Sequence[str],
        payload: dict[str, Any],
        version: int | None = None,
        sane: bool = True,
        reason: str | None = None,
        keep: int = 5,
        now: datetime | None = None,
    ) -> int:
        with self.transaction(now=now) as tx:
            return tx.save_head(
                revision=revision,
                n_labels=n_labels,
                classes=classes,
                payload=payload,
                version=version,
                sane=sane,
                reason=reason,
                keep=keep,
            )

    def pin_head(self, version: int, *, caller: Identity, request_id: str | None = None) -> None:
        with self.transaction() as tx:
            tx.pin_head(version, caller=caller, request_id=request_id)

    def unpin_head(self, *, caller: Identity, request_id: str | None = None) -> int | None:
        with self.transaction() as tx:
            return tx.unpin_head(caller=caller, request_id=request_id)

    def purge_expired_leases(self, *, now: datetime | None = None) -> int:
        """Delete leases that ended (the service calls this periodically); how many went."""
        with self.transaction(now=now) as tx:
            return leases.purge_expired_leases(session=tx.session, now=tx.now)

    def purge_idempotency(self, *, max_age_s: float, now: datetime | None = None) -> int:
        """Forget idempotency records older than ``max_age_s``; how many went."""
        with self.transaction(now=now) as tx:
            before = tx.now - timedelta(seconds=_check_seconds(max_age_s, "max_age_s"))
            return idempotency.purge(session=tx.session, before=before)

    # -- answers -----------------------------------------------------------------------------------------------------
    def revision(self) -> int:
        with self._read() as s:
            return labels_revision(session=s)

    def labels_since(self, revision: int) -> list[LabelChange]:
        """Every item whose answer changed after ``revision``, in revision order; ``label`` None: skipped."""
        with self._read() as s:
            return answers.changes_since(session=s, revision=revision)

    def training_snapshot(self) -> LabelSnapshot:
        """All labels (skips excluded) and the revision they are the state of, read atomically."""
        with self._read() as s:
            return answers.snapshot(session=s)

    def skipped_ids(self) -> list[str]:
        with self._read() as s:
            return answers.skipped_ids(session=s)

    def get_label(self, item_id: str) -> LabelPublic | None:
        """The item's current answer (a label or a skip), None if it has none."""
        with self._read() as s:
            return answers.get_answer(session=s, item_id=item_id)

    def history(self, item_id: str) -> list[LabelEventPublic]:
        """Every answer the item was given, oldest first (for ``GET /items/{id}``)."""
        with self._read() as s:
            return answers.history(session=s, item_id=item_id)

    def count_labels(self) -> int:
        with self._read() as s:
            return answers.count_answers(session=s, kind=LABEL)

    def count_skipped(self) -> int:
        with self._read() as s:
            return answers.count_answers(session=s, kind=SKIP)

    def export_labels(
        self,
        since_revision: int = 0,
        cursor: str | None = None,
        limit: int = 1000,
        *,
        include_skips: bool = True,
    ) -> tuple[list[ExportRow], str]:
        """One page of current answers changed after ``since_revision``, ordered by (revision, item_id), and the
        cursor to continue from. The cursor is always returned (an empty page gives back the position it was asked
        from), so an incremental consumer keeps it and asks again later; a page shorter than ``limit`` means it has
        everything committed so far. Skips are included, flagged ``kind='skip'`` with no label (so a consumer learns
        that a label it had was withdrawn), unless ``include_skips`` is False. An answer changed while a client
        pages appears again at its new revision; no row repeats or goes missing otherwise."""
        if isinstance(since_revision, bool) or not isinstance(since_revision, int) or since_revision < 0:
            raise InvalidField(("since_revision",), "must be an integer >= 0")
        after = decode_cursor(cursor) if cursor is not None else None
        with self._read() as s:
            rows = answers.export_page(
                session=s,
                since_revision=since_revision,
                after=after,
                limit=_check_limit(limit),
                include_skips=include_skips,
            )
        if rows:
            return rows, encode_cursor(rows[-1].revision, rows[-1].item_id)
        return rows, cursor if cursor is not None else encode_cursor(since_revision, None)

    def iter_export(
        self, since_revision: int = 0, *, include_skips: bool = True, page_size: int = 1000
    ) -> Iterator[ExportRow]:
        """Every answer changed after ``since_revision``, page by page (each page its own short read), up to the
        first short page."""
        cursor = None
        while True:
            rows, cursor = self.export_labels(since_revision, cursor, page_size, include_skips=include_skips)
            yield from rows
            if len(rows) < page_size:
                return

    # -- batches and leases ------------------------------------------------------------------------------------------
    def leased_ids(self, *, now: datetime | None = None) -> list[str]:
        with self._read() as s:
            return leases.live_leased_ids(session=s, now=now or utcnow())

    def count_leased(self, *, now: datetime | None = None) -> int:
        with self._read() as s:
            return leases.count_live_leases(session=s, now=now or utcnow())

    def get_batch(self, batch_id: str, *, now: datetime | None = None) -> BatchPublic | None:
        with self._read() as s:
            return leases.get_batch(session=s, batch_id=batch_id, now=now or utcnow())

    def batch_exists(self, batch_id: str) -> bool:
        with self._read() as s:
            return leases.batch_exists(session=s, batch_id=batch_id)

    def count_batches(self) -> int:
        with self._read() as s:
            return leases.count_batches(session=s)

    def open_batches(
        self, owner: str | None = None, *, now: datetime | None = None, limit: int = 1000
    ) -> list[BatchPublic]:
        """Unreleased batches of ``owner`` (None: everyone's, for admins) that still hold live leases."""
        with self._read() as s:
            return leases.open_batches(session=s, owner=owner, now=now or utcnow(), limit=_check_limit(limit))

    # -- identities, audit, idempotency ------------------------------------------------------------------------------
    def authenticate(self, token: str, *, now: datetime | None = None) -> Identity | None:
        """The identity of a live per-annotator token, else None (one indexed read; no cache). The shared token
        of the environment is the service's to check (``identity.match_shared_token``)."""
        if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            return None
        with self._read() as s:
            return tokens.authenticate(session=s, token=token, now=now or utcnow())

    def list_tokens(self, *, include_revoked: bool = False) -> list[TokenPublic]:
        with self._read() as s:
            return tokens.list_tokens(session=s, include_revoked=include_revoked)

    def audit_log(
        self,
        *,
        caller: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: str | None = None,
        limit: int = 100,
        newest_first: bool = False,
    ) -> tuple[list[AuditPublic], str | None]:
        """A page of audit entries matching every filter given, and the cursor of the next page (None at the end)."""
        after_id = None
        if cursor is not None:
            if not cursor.isdigit() or len(cursor) > 18:
                raise InvalidField(("cursor",), "not a cursor returned by a previous page")
            after_id = int(cursor)
        with self._read() as s:
            rows = audit.query(
                session=s,
                caller=caller,
                action=action,
                since=since,
                until=until,
                after_id=after_id,
                limit=_check_limit(limit),
                newest_first=newest_first,
            )
        return rows, (str(rows[-1].id) if len(rows) == limit else None)

    def recall(self, *, caller: Identity, key: str, endpoint: str, request: Any) -> Any | None:
        """A quick read-only look-up before doing expensive work; repeat it inside the action's transaction."""
        _check_caller(caller)
        _check_key(key, endpoint)
        digest = idempotency.request_hash(request)
        with self._read() as s:
            return idempotency.recall(session=s, caller=caller.name, key=key, endpoint=endpoint, digest=digest)

    # -- heads -------------------------------------------------------------------------------------------------------
    def latest_head(self) -> HeadPublic | None:
        """The newest stored head, sane or not."""
        with self._read() as s:
            return heads.latest_head(session=s)

    def latest_good_head(self) -> HeadPublic | None:
        """The head to serve: the pinned one, else the newest sane one."""
        with self._read() as s:
            return heads.latest_good_head(session=s)

    def get_head(self, version: int) -> HeadPublic | None:
        with self._read() as s:
            return heads.get_head(session=s, version=version)

    def list_heads(self) -> list[HeadPublic]:
        with self._read() as s:
            return heads.list_heads(session=s)

    def pinned_head_version(self) -> int | None:
        with self._read() as s:
            return heads.pinned_version(session=s)

    def max_head_version(self) -> int:
        """The last model version allocated (0 before the first)."""
        with self._read() as s:
            return heads.max_version(session=s)
