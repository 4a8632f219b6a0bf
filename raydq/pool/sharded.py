"""``ShardedPool``: the driver of a pool held by shards, what the service keeps instead of the whole matrix.

The driver holds the store listing, the shard layout and O(labels + leases) of state: the sorted rows that are
labeled and the rows that are unavailable, as last sent. Everything of size N lives in the shards.

Layout. The shard size R is fixed when the pool is opened (``PoolConfig.shards`` or ``rows_per_shard``); shard k holds
rows ``[k R, (k + 1) R)``, the last one fewer. Rows appended to the store later first fill the last shard up to R
(that one shard is reloaded by a new actor, which takes over once it is ready) and then go to new shards, so the
layout is always a function of (N, R): shards never end up tiny however often small appends arrive, existing full
shards keep their rows and caches, and a restarted shard reloads exactly its rows.
"""

from __future__ import annotations

import functools
import logging
import operator
import threading
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import numpy as np
import ray

from raydq.numerics.moments import FeatureMoments
from raydq.pool.actor import ShardActor
from raydq.pool.config import PoolConfig
from raydq.pool.errors import PoolUnavailable
from raydq.pool.host import ShardHost, SliceSpec, slice_spec
from raydq.pool.listing import StoreListing, list_store
from raydq.pool.reader import store_dim
from raydq.pool.shardset import ActorShardSet, ActorSlot, HostShardSet
from raydq.pool.store import Manifest, read_manifest_if_any
from raydq.strategies.shards import LABELED, UNAVAILABLE, ShardSet

log = logging.getLogger(__name__)

#: A shard actor's process is the shard's own, so its allocators are set for one big array and little churn.
#: Measured on a 1M x 768 float16 shard (PSS): Arrow's default mimalloc kept ~50 MB of Parquet read buffers after
#: loading (1690 vs 1651 MiB with malloc); glibc's per-thread arenas (the actor's threads take turns running calls)
#: kept ~80 MB more after two selects (peak 1812 vs 1732 MiB with two arenas).
ACTOR_ENV = {"ARROW_DEFAULT_MEMORY_POOL": "system", "MALLOC_ARENA_MAX": "2"}


class StoreChange(StrEnum):
    """What ``refresh`` found: nothing new, files appended (rows keep their numbers), or a rewritten store (every
    row renumbered: the caller maps its ids to rows again and sends the status anew)."""

    UNCHANGED = "unchanged"
    APPENDED = "appended"
    RELOADED = "reloaded"

    def __bool__(self) -> bool:
        return self is not StoreChange.UNCHANGED


def _sorted_rows(rows: Any, n_rows: int, name: str) -> np.ndarray:
    out = np.unique(np.asarray(rows, dtype=np.int64).reshape(-1))
    if len(out) and (out[0] < 0 or out[-1] >= n_rows):
        raise ValueError(f"{name}: rows must be in [0, {n_rows}), got {int(out[0])}..{int(out[-1])}")
    return out


def _status_values(rows: np.ndarray, labeled: np.ndarray, unavailable: np.ndarray) -> np.ndarray:
    values = np.where(np.isin(rows, labeled, assume_unique=True), LABELED, np.uint8(0))
    return (values | np.where(np.isin(rows, unavailable, assume_unique=True), UNAVAILABLE, np.uint8(0))).astype(
        np.uint8
    )


class ShardedPool:
    """A pool of embeddings split into shards (Ray actors, or in-process hosts with ``use_actors=False``).

    Open with ``ShardedPool.open(location, config)``; use as a context manager or call ``close()``.
    """

    def __init__(self, location: str, config: PoolConfig, listing: StoreListing, dim: int,
                 manifest: Manifest | None) -> None:  # fmt: skip
        self.location = str(location)
        self.config = config
        self._listing = listing
        self._dim = dim
        self._manifest = manifest
        self._shard_rows = config.shard_rows(listing.n_rows)
        self._lock = threading.RLock()  # layout and status: the shard list, the synced status, status sends
        self._refresh_lock = threading.Lock()
        self._labeled = np.zeros(0, dtype=np.int64)
        self._unavailable = np.zeros(0, dtype=np.int64)
        self.generation = 0  # bumped when a rewritten store renumbers every row
        self._moments: tuple[tuple, FeatureMoments] | None = None  # (store key, moments)
        self._set: HostShardSet | ActorShardSet = self._build(self._specs(listing, 0, self._shard_rows, dim))
        with self._lock:
            self._resync_all(self._set)

    @classmethod
    def open(cls, location: str, config: PoolConfig | None = None) -> ShardedPool:
        """List the store, start one shard per slice and wait until every shard has loaded its rows."""
        config = config or PoolConfig()
        listing = list_store(location, storage_options=config.storage_options)
        if listing.n_rows == 0:
            raise ValueError(f"{location}: the embedding store holds no rows")
        manifest = read_manifest_if_any(location, storage_options=config.storage_options)
        dim = store_dim(listing, config.storage_options)
        if manifest is not None and manifest.dim != dim:
            raise ValueError(f"{location}: manifest says dim={manifest.dim}, embeddings have {dim}")
        return cls(location, config, listing, dim, manifest)

    def __enter__(self) -> ShardedPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what the pool is ------------------------------------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        return self._set.n_rows

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def manifest(self) -> Manifest | None:
        return self._manifest

    @property
    def store_version(self) -> str:
        return self._listing.version

    @property
    def shards(self) -> ShardSet:
        """The shard set strategies run on (a snapshot: a refresh replaces it, a running query keeps its own)."""
        return self._set

    @property
    def bounds(self) -> np.ndarray:
        """Global row where each shard starts, then ``n_rows``."""
        return self._bounds(self._set)

    @staticmethod
    def _bounds(shard_set: HostShardSet | ActorShardSet) -> np.ndarray:
        specs = [h.spec for h in shard_set.hosts] if isinstance(shard_set, HostShardSet) else [
            s.spec for s in shard_set.slots]  # fmt: skip
        return np.array([s.start for s in specs] + [specs[-1].stop], dtype=np.int64)

    def status(self) -> dict[str, Any]:
        """Pool size, store version and, per shard, its rows, node, process and whether it answers now."""
        shard_set = self._set
        shards: list[dict[str, Any]] = []
        if isinstance(shard_set, HostShardSet):
            shards = [{**h.info(), "state": "ready", "node_id": None} for h in shard_set.hosts]
        else:
            refs = [s.handle.info.remote() for s in shard_set.slots]
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=min(2.0, self.config.ready_timeout_s))
            for slot, ref in zip(shard_set.slots, refs, strict=True):
                state = "unavailable"
                if ref in ready:
                    try:
                        slot.info = ray.get(ref)
                        state = "ready"
                    except Exception:  # a dead or restarting actor: reported, not raised
                        pass
                shards.append({**slot.info, "rows": [slot.spec.start, slot.spec.stop], "state": state})
        return {
            "pool_size": self.n_rows,
            "dim": self.dim,
            "dtype": self.config.dtype,
            "store": self.location,
            "store_version": self.store_version,
            "store_files": len(self._listing.files),
            "generation": self.generation,
            "shard_rows": self._shard_rows,
            "labeled_rows": len(self._labeled),
            "unavailable_rows": len(self._unavailable),
            "shards": shards,
        }

    # -- ids, rows, embeddings ---------------------------------------------------------------------------------------
    def lookup(self, ids: Sequence[str]) -> np.ndarray:
        """Global row of each id, -1 where the pool does not hold it."""
        query = np.asarray([str(i) for i in ids], dtype=object)
        out = np.full(len(query), -1, dtype=np.int64)
        if not len(query):
            return out
        shard_set = self._set
        arg = self._broadcast(query)
        found = shard_set.call("lookup", dict.fromkeys(range(self._count(shard_set)), (arg,)))
        for i in sorted(found):
            rows = found[i]
            hit = rows >= 0
            if np.any(out[hit] >= 0):
                dup = query[np.flatnonzero(hit & (out >= 0))[0]]
                raise ValueError(f"the embedding store holds id {dup!r} more than once")
            out[hit] = rows[hit]
        return out

    def describe(self, rows: Sequence[int] | np.ndarray) -> list[tuple[str, str | None]]:
        """``(id, uri)`` of each global row, in order."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        out: list[tuple[str, str | None]] = [("", None)] * len(rows)
        for positions, value in self._per_shard("describe", rows, "rows"):
            for p, v in zip(positions, value, strict=True):
                out[p] = v
        return out

    def embeddings(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """float32 embeddings ``(len(rows), dim)`` of global rows, in order."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        for positions, value in self._per_shard("embeddings", rows, "rows"):
            out[positions] = value
        return out

    def feature_moments(self) -> FeatureMoments:
        """Per-feature moments of every row of the pool (what the head standardizes with), summed over the shards;
        kept until the store changes."""
        shard_set = self._set
        key = (self.store_version, shard_set.n_rows)  # a rewrite or an append changes the version
        cached = self._moments
        if cached is not None and cached[0] == key:
            return cached[1]
        found = shard_set.call("feature_moments", dict.fromkeys(range(self._count(shard_set)), ()))
        moments = functools.reduce(operator.add, (found[i] for i in sorted(found)))
        self._moments = (key, moments)
        return moments

    def _per_shard(self, method: str, rows: np.ndarray, name: str):
        shard_set = self._set
        bounds = self._bounds(shard_set)
        if len(rows) and (rows.min() < 0 or rows.max() >= bounds[-1]):
            raise ValueError(f"{name}: rows must be in [0, {bounds[-1]}), got {int(rows.min())}..{int(rows.max())}")
        which = np.searchsorted(bounds, rows, side="right") - 1
        groups = {int(i): np.flatnonzero(which == i) for i in np.unique(which)}
        found = shard_set.call(method, {i: (rows[p],) for i, p in groups.items()})
        return [(groups[i], found[i]) for i in groups]

    # -- status ------------------------------------------------------------------------------------------------------
    def status_of(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """The full status of rows ``[start, stop)`` as the driver last synced it: non-selectable rows and values."""
        with self._lock:
            L = self._labeled[np.searchsorted(self._labeled, start) : np.searchsorted(self._labeled, stop)]
            U = self._unavailable[np.searchsorted(self._unavailable, start) : np.searchsorted(self._unavailable, stop)]
            rows = np.union1d(L, U)
            return rows, _status_values(rows, L, U)

    def sync_status(self, labeled_rows: Any, unavailable_rows: Any) -> int:
        """Make the shards' status match: ``labeled_rows`` LABELED, ``unavailable_rows`` (leased, skipped)
        UNAVAILABLE, every other row selectable. Only the rows whose status changed since the last sync are sent,
        each to its shard; returns how many were sent."""
        with self._lock:
            shard_set = self._set
            n = shard_set.n_rows
            L = _sorted_rows(labeled_rows, n, "labeled_rows")
            U = _sorted_rows(unavailable_rows, n, "unavailable_rows")
            touched = np.union1d(np.union1d(self._labeled, self._unavailable), np.union1d(L, U))
            before = _status_values(touched, self._labeled, self._unavailable)
            after = _status_values(touched, L, U)
            changed = before != after
            rows, values = touched[changed], after[changed]
            self._labeled, self._unavailable = L, U
            if not len(rows):
                return 0
            bounds = self._bounds(shard_set)
            which = np.searchsorted(bounds, rows, side="right") - 1
            deltas = {int(i): (rows[which == i], values[which == i]) for i in np.unique(which)}
            try:
                shard_set.call("set_status", deltas, stateful=True)
            except BaseException:
                if isinstance(shard_set, ActorShardSet):  # whatever reached them, these shards get a full resync
                    for i in deltas:
                        shard_set.slots[i].synced = None
                raise
            return len(rows)

    # -- growth --------------------------------------------------------------------------------------------------------
    def refresh(self) -> StoreChange:
        """Pick up files appended to the store since the last look (new rows get new global rows after the existing
        ones); reload everything if the store was rewritten. New shards load while the old ones keep serving."""
        with self._refresh_lock:
            old = self._listing
            new = list_store(self.location, storage_options=self.config.storage_options, previous=old)
            if new.version == old.version:
                return StoreChange.UNCHANGED
            if new.n_rows == 0:
                raise ValueError(f"{self.location}: the embedding store holds no rows now")
            manifest = read_manifest_if_any(self.location, storage_options=self.config.storage_options)
            dim = store_dim(new, self.config.storage_options)
            if new.extends(old) and dim == self._dim:
                return self._append(new, manifest)
            return self._reload(new, manifest, dim)

    def _append(self, new: StoreListing, manifest: Manifest | None) -> StoreChange:
        old_n = self._listing.n_rows
        if new.n_rows == old_n:  # only empty files were added
            with self._lock:
                self._listing, self._manifest = new, manifest
            return StoreChange.UNCHANGED
        keep = self._set
        bounds = self._bounds(keep)
        first_new = int(bounds[-2] if bounds[-1] - bounds[-2] < self._shard_rows else bounds[-1])
        fresh = self._build(self._specs(new, first_new, self._shard_rows, self._dim))  # a partial last shard reloads
        with self._lock:
            self._resync_all(fresh)
            self._set = self._merge(keep, fresh, first_new)
            self._listing, self._manifest = new, manifest
        log.info("pool %s grew from %d to %d rows (%s)", self.location, old_n, new.n_rows, new.version)
        return StoreChange.APPENDED

    def _reload(self, new: StoreListing, manifest: Manifest | None, dim: int) -> StoreChange:
        shard_rows = self.config.shard_rows(new.n_rows)
        fresh = self._build(self._specs(new, 0, shard_rows, dim))
        with self._lock:
            old_set = self._set
            self._labeled = np.zeros(0, dtype=np.int64)  # rows were renumbered: the caller sends the status anew
            self._unavailable = np.zeros(0, dtype=np.int64)
            self._resync_all(fresh)
            self._set, self._listing, self._manifest, self._dim = fresh, new, manifest, dim
            self._shard_rows = shard_rows
            self.generation += 1
        self._stop(old_set)
        log.warning("pool %s was rewritten: reloaded %d rows (%s)", self.location, new.n_rows, new.version)
        return StoreChange.RELOADED

    def _resync_all(self, shard_set: HostShardSet | ActorShardSet) -> None:
        if isinstance(shard_set, ActorShardSet):
            for i in range(len(shard_set.slots)):
                shard_set.resync(i)
        else:
            for h in shard_set.hosts:
                h.reset_status(*self.status_of(h.start, h.stop))

    def _merge(self, keep, fresh, first_new: int):
        if isinstance(keep, HostShardSet):
            return HostShardSet([h for h in keep.hosts if h.start < first_new] + fresh.hosts)
        slots = [s for s in keep.slots if s.spec.start < first_new] + fresh.slots
        return ActorShardSet(slots, status_of=self.status_of, status_lock=self._lock,
                             ready_timeout_s=self.config.ready_timeout_s)  # fmt: skip

    # -- building shards ---------------------------------------------------------------------------------------------
    def _specs(self, listing: StoreListing, first: int, shard_rows: int, dim: int) -> list[SliceSpec]:
        """Slices of ``shard_rows`` rows from global row ``first`` to the end of ``listing`` (the last one shorter)."""
        n, cfg = listing.n_rows, self.config
        threads = cfg.threads_per_shard  # None: the kernels use cpu_budget(), an actor's CPU allotment
        return [
            slice_spec(listing, a, min(a + shard_rows, n), dim=dim, dtype=cfg.dtype,
                       storage_options=cfg.storage_options, n_threads=threads)
            for a in range(first, n, shard_rows)
        ]  # fmt: skip

    def _build(self, specs: list[SliceSpec]) -> HostShardSet | ActorShardSet:
        """Load ``specs`` (actors in parallel; waits up to ``load_timeout_s``). The caller sends the status."""
        if not self.config.use_actors:
            return HostShardSet([ShardHost(s) for s in specs])
        cfg = self.config
        options: dict[str, Any] = {"num_cpus": cfg.num_cpus, "runtime_env": {"env_vars": ACTOR_ENV}}
        if cfg.num_gpus:
            options["num_gpus"] = cfg.num_gpus
        if cfg.memory:
            options["memory"] = cfg.memory
        if cfg.resources:
            options["resources"] = dict(cfg.resources)
        if cfg.placement == "spread":
            options["scheduling_strategy"] = "SPREAD"
        wanted = cfg.num_cpus * len(specs)
        if wanted > ray.cluster_resources().get("CPU", 0.0):
            log.warning("%d shard actors x %g CPUs exceed the cluster's %g CPUs: they wait for the autoscaler (up to "
                        "load_timeout_s=%g s)", len(specs), cfg.num_cpus, ray.cluster_resources().get("CPU", 0.0),
                        cfg.load_timeout_s)  # fmt: skip
        slots = [ActorSlot(spec, ShardActor.options(**options).remote(spec)) for spec in specs]
        shard_set = ActorShardSet(slots, status_of=self.status_of, status_lock=self._lock,
                                  ready_timeout_s=cfg.ready_timeout_s)  # fmt: skip
        refs = [s.handle.info.remote() for s in slots]
        try:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=cfg.load_timeout_s)
            if len(ready) < len(refs):
                raise PoolUnavailable(f"{len(refs) - len(ready)} of {len(refs)} shards did not load within "
                                      f"{cfg.load_timeout_s:g} s", retry_after_s=cfg.load_timeout_s)  # fmt: skip
            for slot, info in zip(slots, ray.get(refs), strict=True):
                slot.info = info
        except BaseException:
            self._stop(shard_set)
            raise
        return shard_set

    def _count(self, shard_set) -> int:
        return len(shard_set.hosts) if isinstance(shard_set, HostShardSet) else len(shard_set.slots)

    def _broadcast(self, value: Any) -> Any:
        return ray.put(value) if self.config.use_actors else value

    @staticmethod
    def _stop(shard_set) -> None:
        if isinstance(shard_set, ActorShardSet):
            if ray.is_initialized():  # after ray.shutdown the actors are gone already
                for slot in shard_set.slots:
                    ray.kill(slot.handle, no_restart=True)
            shard_set.slots = []

    def close(self) -> None:
        """Stop the shard actors (in-process shards are simply dropped)."""
        with self._lock:
            self._stop(self._set)
            self._set = HostShardSet([])
