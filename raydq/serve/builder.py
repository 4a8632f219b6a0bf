"""Building the service's parts from ``ServeArgs``: one place that knows how a store, a pool, an authenticator, the
selection and training services are opened, whichever process hosts them (``inprocess`` or ``app``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from raydq.labels import LabelStore
from raydq.serve.config import ServeArgs
from raydq.serve.endpoints import Endpoints, TrainerPort
from raydq.serve.identity import Authenticator, check_anonymous_bind
from raydq.serve.selection import SelectionService
from raydq.serve.snapshots import TrainingSet
from raydq.serve.training import TrainingPolicy, TrainingService

log = logging.getLogger(__name__)


class EmbeddingStoreMissing(RuntimeError):
    """The configured embedding store does not exist (yet)."""


def missing_store_message(location: str) -> str | None:
    """One clear line when ``location`` is a local path without an embedding store, else None."""
    from pathlib import Path

    from raydq.pool import MANIFEST_NAME

    if "://" in location and not location.startswith("file://"):
        return None  # object storage: the shards find out, with the store's own error
    path = Path(location.removeprefix("file://"))
    if (path / MANIFEST_NAME).is_file():
        return None
    return f"raydq: no embedding store at {path}: run `python jobs/embed.py` first (or set `embeddings:` in the config)"


def open_store(args: ServeArgs) -> LabelStore:
    return LabelStore(args.resolved_database_url())


def startup_problem(args: ServeArgs, *, embeddings: bool = True) -> str | None:
    """One line saying why the service cannot start here (no embedding store, a label store whose schema is older
    than this code), or None. Checked before anything is deployed, so a user reads what to run instead of a
    traceback that Serve repeats while it restarts replicas."""
    from raydq.labels import SchemaError

    if embeddings and "${" not in args.embeddings and (message := missing_store_message(args.embeddings)):
        return message
    if "${" in args.database_url:
        return None  # resolved where the service runs
    try:
        open_store(args).close()
    except SchemaError as e:
        return f"raydq: the label store cannot be used as it is: {e}"
    return None


def open_pool(args: ServeArgs, *, use_actors: bool):
    from raydq.pool import ShardedPool

    location = args.resolved_embeddings()
    message = missing_store_message(location)
    if message is not None:
        raise EmbeddingStoreMissing(message)
    return ShardedPool.open(location, args.pool.model_copy(update={"use_actors": use_actors}))


def make_authenticator(args: ServeArgs, store: LabelStore) -> Authenticator:
    return Authenticator(shared_token=args.api_token(), directory=store)


def make_trainer(args: ServeArgs, store: LabelStore, fetch: Callable[[], Awaitable[TrainingSet]]) -> TrainingService:
    policy = TrainingPolicy(
        head_params=dict(args.head_params),
        seed=args.seed,
        delay_s=args.retrain_delay_s,
        min_train_accuracy=args.min_train_accuracy,
    )
    return TrainingService(store=store, fetch=fetch, policy=policy)


async def maintain(selection: SelectionService, args: ServeArgs) -> None:
    """Forever: purge expired leases and old idempotency records, and look for embeddings appended to the store,
    each on its own interval."""
    loop = asyncio.get_running_loop()
    next_purge = next_poll = loop.time()
    while True:
        now = loop.time()
        try:
            if now >= next_purge:
                purged = await asyncio.to_thread(selection.store.purge_expired_leases)
                if purged:
                    log.info("purged %d expired leases", purged)
                purged = await asyncio.to_thread(
                    selection.store.purge_idempotency, max_age_s=args.idempotency_retention_s
                )
                if purged:
                    log.info("purged %d idempotency records older than %g s", purged, args.idempotency_retention_s)
                next_purge = now + args.lease_purge_interval_s
            if args.pool.poll_interval_s and now >= next_poll:
                await selection.refresh_pool()
                next_poll = now + args.pool.poll_interval_s
        except Exception:  # a maintenance round that fails is retried next round; requests are unaffected
            log.exception("maintenance round failed")
        await asyncio.sleep(1.0)


@dataclass
class InProcessParts:
    """Everything of the service in one process."""

    args: ServeArgs
    store: LabelStore
    selection: SelectionService
    trainer: TrainingService
    authenticator: Authenticator

    def endpoints(self, trainer_port: TrainerPort) -> Endpoints:
        return Endpoints(
            self.args,
            store=self.store,
            selector=self.selection,
            trainer=trainer_port,
            authenticator=self.authenticator,
        )

    async def maintenance(self) -> None:
        await maintain(self.selection, self.args)


def open_parts(args: ServeArgs, *, use_actors: bool, host: str) -> InProcessParts:
    store = open_store(args)
    authenticator = make_authenticator(args, store)
    check_anonymous_bind(host=host, authenticator=authenticator, allow_anonymous=args.allow_anonymous)
    selection = SelectionService(args, store=store, pool=open_pool(args, use_actors=use_actors))
    trainer = make_trainer(args, store, selection.training_set)
    return InProcessParts(args, store, selection, trainer, authenticator)
