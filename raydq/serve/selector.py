"""``SelectorCore``: the pool in memory, the label mirror, and selection with leases. Plain Python (no Ray), so a
Serve deployment, a uvicorn process and a unit test all run the same code.

The database is the source of truth. Before each selection the core reads the live leases and (when the label
revision moved) the labels; the chosen items are leased in one transaction that re-checks, under the database's
write lock, that none of them was leased or labeled meanwhile. Selection inside one process is serialised by a lock.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from raydq.labels import ANONYMOUS, LabelStore, LeaseConflict
from raydq.labels.models import utcnow
from raydq.pool.store import Pool, load_pool
from raydq.serve.config import _SCHEME, ServeArgs
from raydq.serve.errors import ServiceError
from raydq.serve.heads import HeadSnapshot, TrainingSet
from raydq.serve.schemas import (
    Item,
    ReleaseBatchRequest,
    ReleaseBatchResponse,
    SelectBatchRequest,
    SelectBatchResponse,
    UpdateLabelsRequest,
)
from raydq.strategies import MISSING_LABEL, STRATEGIES, make_strategy
from raydq.strategies.base import param_names

log = logging.getLogger(__name__)
_LEASE_RETRIES = 5


def load_embeddings(location: str) -> Pool:
    """Load an embedding store from a directory or, for a URI (s3://, gs://, ...), from a local copy of it."""
    if not _SCHEME.match(location) or location.startswith("file://"):
        return load_pool(location.removeprefix("file://"))
    import pyarrow.fs as pafs

    local = Path(tempfile.mkdtemp(prefix="raydq-embeddings-"))
    try:
        pafs.copy_files(location, str(local), destination_filesystem=pafs.LocalFileSystem())
        return load_pool(local)
    finally:
        shutil.rmtree(local, ignore_errors=True)


def resolve_classes(args: ServeArgs, pool: Pool) -> list[str]:
    if args.classes is not None:
        return list(args.classes)
    if pool.manifest is not None and pool.manifest.class_names:
        return list(pool.manifest.class_names)
    raise ValueError("classes: not configured and the embedding manifest has no class_names")


class SelectorCore:
    """Selection and labeling against one pool and one label store."""

    def __init__(self, args: ServeArgs, *, store: LabelStore | None = None, pool: Pool | None = None) -> None:
        self.args = args
        self.store = store or LabelStore(args.resolved_database_url())
        self.pool = pool if pool is not None else load_embeddings(args.resolved_embeddings())
        self.classes = resolve_classes(args, self.pool)
        self._class_index = {c: i for i, c in enumerate(self.classes)}
        for name in (args.default_strategy, args.cold_start):
            if name not in STRATEGIES:
                raise ValueError(f"strategy {name!r} is not registered; choose one of {sorted(STRATEGIES)}")
        self._select_lock = threading.Lock()
        self._mirror_lock = threading.Lock()
        self._revision = 0  # nothing applied yet: every stored label has revision >= 1
        self._y = np.full(len(self.pool), MISSING_LABEL, dtype=np.int64)
        self._foreign = np.zeros(len(self.pool), dtype=bool)  # labeled, but with a class not configured now
        self._head_cache: tuple[int, Any] = (-1, None)
        self.refresh_labels()

    # -- the label mirror --------------------------------------------------------------------------------------------
    def refresh_labels(self) -> int:
        """Apply the labels changed since the mirror's revision (cheap when nothing changed); returns the revision
        the mirror holds."""
        with self._mirror_lock:
            if self.store.revision() == self._revision:
                return self._revision
            changed = self.store.labels_since(self._revision)
            known = [(i, lab) for i, lab, _ in changed if self.pool.contains(i)]
            if known:
                rows = self.pool.index_of([i for i, _ in known])
                codes = np.fromiter((self._class_index.get(lab, -2) for _, lab in known), np.int64, len(known))
                y, foreign = self._y.copy(), self._foreign.copy()  # readers keep a consistent pair meanwhile
                y[rows] = np.where(codes >= 0, codes, MISSING_LABEL)
                foreign[rows] = codes < 0
                self._y, self._foreign = y, foreign
            if changed:
                self._revision = max(r for _, _, r in changed)
            return self._revision

    def training_set(self) -> TrainingSet:
        self.refresh_labels()
        y = self._y
        rows = np.flatnonzero(y != MISSING_LABEL)
        return TrainingSet(revision=self._revision, classes=tuple(self.classes), X=self.pool.X[rows], y=y[rows])

    def counts(self) -> dict[str, Any]:
        revision = self.refresh_labels()
        leased = self._leased_mask()
        labeled = (self._y != MISSING_LABEL) | self._foreign
        return {
            "pool_size": len(self.pool),
            "dim": self.pool.dim,
            "labeled": int(labeled.sum()),
            "leased": int(leased.sum()),
            "unlabeled_available": int((~labeled & ~leased).sum()),
            "classes": list(self.classes),
            "revision": revision,
            "database": self.store.dialect,
            "embedding_model": self.pool.manifest.model if self.pool.manifest else None,
        }

    def _leased_mask(self) -> np.ndarray:
        mask = np.zeros(len(self.pool), dtype=bool)
        ids = [i for i in self.store.leased_ids() if self.pool.contains(i)]
        if ids:
            mask[self.pool.index_of(ids)] = True
        return mask

    # -- selection ---------------------------------------------------------------------------------------------------
    def _head(self, snapshot: HeadSnapshot | None) -> tuple[int, Any]:
        if snapshot is None or snapshot.payload is None or tuple(snapshot.classes) != tuple(self.classes):
            return 0, None
        if self._head_cache[0] != snapshot.version:
            from raydq.head import LinearHead

            head = LinearHead.from_dict(snapshot.payload)
            if getattr(head, "n_features_in_", self.pool.dim) != self.pool.dim:
                return 0, None
            self._head_cache = (snapshot.version, head)
        return self._head_cache

    def _strategy(self, req: SelectBatchRequest, head: Any, n_labeled: int, n_batches: int) -> tuple[str, Any]:
        requested = req.strategy
        name = requested or self.args.default_strategy
        if name not in STRATEGIES:
            raise ServiceError(
                422, ["body", "strategy"], f"unknown strategy {name!r}; choose one of {sorted(STRATEGIES)}"
            )
        if (requested is None and n_labeled == 0) or (STRATEGIES[name].needs_head and head is None):
            name = self.args.cold_start  # no labels or no head yet: the cold start
        cls = STRATEGIES[name]
        params = dict(self.args.strategy_params.get(name, {}))
        if req.options:
            allowed = set(param_names(cls)) - {"random_state"}
            for key, value in req.options.items():
                if key not in allowed:
                    raise ServiceError(
                        422, ["body", "options", key], f"{name} takes no option {key!r}; it takes {sorted(allowed)}"
                    )
                params[key] = value
        seed = None
        if self.args.seed is not None:
            seed = int(np.random.SeedSequence([self.args.seed, n_batches]).generate_state(1)[0])
        try:
            return name, make_strategy(name, random_state=seed, **params)
        except (TypeError, ValueError) as e:
            raise ServiceError(422, ["body", "options"], f"invalid options for {name}: {e}") from None

    def select_batch(self, req: SelectBatchRequest, head_snapshot: HeadSnapshot | None = None) -> SelectBatchResponse:
        if req.batch_size > self.args.max_batch_size:
            raise ServiceError(
                422,
                ["body", "batch_size"],
                f"batch_size {req.batch_size} exceeds max_batch_size {self.args.max_batch_size}",
            )
        lease_seconds = float(req.lease_seconds if req.lease_seconds is not None else self.args.lease_seconds)
        if lease_seconds > self.args.max_lease_seconds:
            raise ServiceError(
                422, ["body", "lease_seconds"], f"lease_seconds exceeds max_lease_seconds {self.args.max_lease_seconds}"
            )
        version, head = self._head(head_snapshot)
        with self._select_lock:
            conflicted = np.zeros(len(self.pool), dtype=bool)
            for _ in range(_LEASE_RETRIES):
                self.refresh_labels()
                y = self._y
                exclude = self._foreign | self._leased_mask() | conflicted
                n_labeled = int(((y != MISSING_LABEL) | self._foreign).sum())
                available = int(((y == MISSING_LABEL) & ~exclude).sum())
                if req.batch_size > available:
                    raise ServiceError(
                        422,
                        ["body", "batch_size"],
                        f"batch_size {req.batch_size} exceeds the {available} unlabeled items not leased now",
                    )
                name, strategy = self._strategy(req, head, n_labeled, self.store.count_batches())
                try:
                    rows = strategy.query(self.pool.X, y, batch_size=req.batch_size, head=head, exclude=exclude)
                except ValueError as e:
                    raise ServiceError(422, ["body", "options"], f"{name} refused the query: {e}") from None
                ids = [str(i) for i in self.pool.ids[rows]]
                now = utcnow()
                expires = now + timedelta(seconds=lease_seconds)
                batch_id = uuid.uuid4().hex
                try:
                    self.store.create_batch(
                        batch_id=batch_id,
                        item_ids=ids,
                        expires_at=expires,
                        strategy=name,
                        model_version=version,
                        caller=ANONYMOUS,
                        now=now,
                    )
                except LeaseConflict as e:  # another replica leased or labeled some of them meanwhile
                    log.info("lease conflict on %d items; selecting again", len(e.item_ids))
                    conflicted[self.pool.index_of([i for i in e.item_ids if self.pool.contains(i)])] = True
                    continue
                uris = self.pool.uris
                items = [Item(id=i, uri=None if uris is None else uris[r]) for i, r in zip(ids, rows, strict=True)]
                return SelectBatchResponse(
                    batch_id=batch_id, items=items, model_version=version, strategy=name, lease_expires_at=expires
                )
        raise ServiceError(409, ["body", "batch_size"], "items kept being leased concurrently; try again")

    # -- labels and batches ------------------------------------------------------------------------------------------
    def validate_labels(self, req: UpdateLabelsRequest) -> None:
        """Refuse the whole request on the first bad entry (422 naming it); nothing is written before this passes."""
        if len(req.labels) > self.args.max_labels_per_request:
            raise ServiceError(
                422,
                ["body", "labels"],
                f"{len(req.labels)} labels exceed max_labels_per_request {self.args.max_labels_per_request}",
            )
        seen: dict[str, int] = {}
        for n, x in enumerate(req.labels):
            if x.id in seen:
                raise ServiceError(
                    422, ["body", "labels", n, "id"], f"duplicate id {x.id!r} (also at labels[{seen[x.id]}])"
                )
            seen[x.id] = n
            if not self.pool.contains(x.id):
                raise ServiceError(422, ["body", "labels", n, "id"], f"unknown id {x.id!r}: not in the pool")
            if not x.skip and x.label not in self._class_index:
                raise ServiceError(
                    422, ["body", "labels", n, "label"], f"label {x.label!r} is not a class; classes: {self.classes}"
                )
        if req.batch_id is not None and not self.store.batch_exists(req.batch_id):
            raise ServiceError(422, ["body", "batch_id"], f"unknown batch_id {req.batch_id!r}")

    def update_labels(self, req: UpdateLabelsRequest):
        self.validate_labels(req)
        counts = self.store.apply_labels(req.labels, caller=ANONYMOUS, batch_id=req.batch_id)
        return counts

    def release_batch(self, req: ReleaseBatchRequest) -> ReleaseBatchResponse:
        try:
            released = self.store.release_batch(req.batch_id, caller=ANONYMOUS)
        except LookupError:
            raise ServiceError(404, ["body", "batch_id"], f"unknown batch_id {req.batch_id!r}") from None
        return ReleaseBatchResponse(batch_id=req.batch_id, released=released)
