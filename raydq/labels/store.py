"""``LabelStore``: the label store behind one object, one short transaction per call.

Every method opens its own session and transaction, so each call is all-or-nothing and a method that returned has
committed (the service acknowledges only after that).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from raydq.labels import crud
from raydq.labels.db import Database, connect
from raydq.labels.models import utcnow
from raydq.labels.schemas import BatchPublic, HeadPublic, LabelCounts, LabelEventPublic, LabelIn, LabelPublic


class LabelStore:
    """Labels, label history, leases/batches and trained heads in one SQL database.

    Parameters
    ----------
    url : str
        SQLAlchemy URL: ``sqlite:///path/labels.db`` (default set-up) or ``postgresql://user:pw@host/db``.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.db: Database = connect(url)

    @property
    def dialect(self) -> str:
        return self.db.dialect

    def close(self) -> None:
        self.db.dispose()

    # -- labels ------------------------------------------------------------------------------------------------------
    def apply_labels(
        self, labels: Sequence[LabelIn], *, batch_id: str | None = None, now: datetime | None = None
    ) -> LabelCounts:
        ids = [x.id for x in labels]
        if len(set(ids)) != len(ids):
            raise ValueError("labels: duplicate ids in one update")
        with self.db.write_session() as s, s.begin():
            return crud.apply_labels(session=s, labels=labels, batch_id=batch_id, now=now or utcnow())

    def current_labels(self) -> tuple[int, dict[str, str]]:
        with self.db.read_session() as s, s.begin():
            return crud.current_labels(session=s)

    def labels_since(self, revision: int) -> list[tuple[str, str, int]]:
        with self.db.read_session() as s, s.begin():
            return crud.labels_since(session=s, revision=revision)

    def revision(self) -> int:
        with self.db.read_session() as s, s.begin():
            return crud.labels_revision(session=s)

    def get_label(self, item_id: str) -> LabelPublic | None:
        with self.db.read_session() as s, s.begin():
            return crud.get_label(session=s, item_id=item_id)

    def history(self, item_id: str) -> list[LabelEventPublic]:
        with self.db.read_session() as s, s.begin():
            return crud.label_history(session=s, item_id=item_id)

    def count_labels(self) -> int:
        with self.db.read_session() as s, s.begin():
            return crud.count_labels(session=s)

    # -- leases ------------------------------------------------------------------------------------------------------
    def leased_ids(self, *, now: datetime | None = None) -> list[str]:
        with self.db.read_session() as s, s.begin():
            return crud.live_leased_ids(session=s, now=now or utcnow())

    def count_leased(self, *, now: datetime | None = None) -> int:
        with self.db.read_session() as s, s.begin():
            return crud.count_live_leases(session=s, now=now or utcnow())

    def create_batch(
        self,
        *,
        batch_id: str,
        item_ids: Sequence[str],
        expires_at: datetime,
        strategy: str,
        model_version: int,
        now: datetime | None = None,
    ) -> None:
        with self.db.write_session() as s, s.begin():
            crud.create_batch(
                session=s,
                batch_id=batch_id,
                item_ids=item_ids,
                now=now or utcnow(),
                expires_at=expires_at,
                strategy=strategy,
                model_version=model_version,
            )

    def get_batch(self, batch_id: str, *, now: datetime | None = None) -> BatchPublic | None:
        with self.db.read_session() as s, s.begin():
            return crud.get_batch(session=s, batch_id=batch_id, now=now or utcnow())

    def batch_exists(self, batch_id: str) -> bool:
        with self.db.read_session() as s, s.begin():
            return crud.batch_exists(session=s, batch_id=batch_id)

    def count_batches(self) -> int:
        with self.db.read_session() as s, s.begin():
            return crud.count_batches(session=s)

    def release_batch(self, batch_id: str, *, now: datetime | None = None) -> int:
        with self.db.write_session() as s, s.begin():
            return crud.release_batch(session=s, batch_id=batch_id, now=now or utcnow())

    def purge_expired_leases(self, *, now: datetime | None = None) -> int:
        with self.db.write_session() as s, s.begin():
            return crud.purge_expired_leases(session=s, now=now or utcnow())

    # -- heads -------------------------------------------------------------------------------------------------------
    def save_head(
        self,
        *,
        version: int,
        revision: int,
        n_labels: int,
        classes: Sequence[str],
        payload: dict[str, Any],
        now: datetime | None = None,
    ) -> None:
        with self.db.write_session() as s, s.begin():
            crud.save_head(
                session=s,
                version=version,
                revision=revision,
                n_labels=n_labels,
                classes=classes,
                payload=payload,
                now=now or utcnow(),
            )

    def latest_head(self) -> HeadPublic | None:
        with self.db.read_session() as s, s.begin():
            return crud.latest_head(session=s)

    def max_head_version(self) -> int:
        with self.db.read_session() as s, s.begin():
            return crud.max_head_version(session=s)
