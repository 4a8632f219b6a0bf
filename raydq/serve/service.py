"""The in-process backend (no Ray): a ``SelectorCore`` and a ``HeadTrainerCore`` in one process, for uvicorn and
TestClient. The Serve app composes the same cores through deployment handles (``raydq.serve.app``); the helpers
here that turn core results into responses are shared by both.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from raydq.labels import LabelCounts
from raydq.serve.config import ServeArgs
from raydq.serve.heads import HeadSnapshot
from raydq.serve.schemas import (
    ModelResponse,
    ReleaseBatchRequest,
    ReleaseBatchResponse,
    SelectBatchRequest,
    SelectBatchResponse,
    StatusResponse,
    TrainingStatus,
    UpdateLabelsRequest,
    UpdateLabelsResponse,
)
from raydq.serve.selector import SelectorCore
from raydq.serve.trainer import HeadTrainerCore


def kmeans_backend() -> str:
    try:
        from raydq.cluster import kmeans_backend_name

        return kmeans_backend_name()
    except Exception as e:  # status must answer even when no backend imports
        return f"unavailable ({type(e).__name__})"


def strategy_names() -> list[str]:
    from raydq.strategies import STRATEGIES

    return sorted(STRATEGIES)


def make_status(args: ServeArgs, counts: dict[str, Any], training: TrainingStatus) -> StatusResponse:
    return StatusResponse(
        **counts,
        model_version=training.model_version,
        training=training,
        kmeans_backend=kmeans_backend(),
        strategies=strategy_names(),
        default_strategy=args.default_strategy,
        cold_start=args.cold_start,
    )


def make_model(snapshot: HeadSnapshot, classes: list[str]) -> ModelResponse:
    W = b = None
    if snapshot.payload is not None:
        from raydq.head import LinearHead

        W_, b_ = LinearHead.from_dict(snapshot.payload).affine()
        W, b = W_.tolist(), b_.tolist()
    return ModelResponse(
        model_version=snapshot.version,
        classes=list(snapshot.classes) or classes,
        revision=snapshot.revision,
        n_labels=snapshot.n_labels,
        trained_at=snapshot.trained_at,
        W=W,
        b=b,
        head=snapshot.payload,
    )


def make_update_response(counts: LabelCounts, model_version: int) -> UpdateLabelsResponse:
    return UpdateLabelsResponse(
        received=counts.received,
        created=counts.created,
        updated=counts.updated,
        unchanged=counts.unchanged,
        labeled=counts.labeled,
        revision=counts.revision,
        model_version=model_version,
    )


class LocalBackend:
    """Selector and trainer in this process; blocking work runs in threads so the event loop stays free."""

    def __init__(self, args: ServeArgs) -> None:
        self.args = args
        self.selector = SelectorCore(args)
        self.trainer = HeadTrainerCore(
            store=self.selector.store,
            fetch=lambda: asyncio.to_thread(self.selector.training_set),
            head_params=args.head_params,
            seed=args.seed,
            delay_s=args.retrain_delay_s,
        )
        self._select_lock = asyncio.Lock()  # waiting selections must not hold threads that label writes need

    @contextlib.asynccontextmanager
    async def lifespan(self, _app):
        self.trainer.start()
        yield
        self.selector.store.close()

    async def select_batch(self, req: SelectBatchRequest) -> SelectBatchResponse:
        async with self._select_lock:
            return await asyncio.to_thread(self.selector.select_batch, req, self.trainer.snapshot())

    async def update_labels(self, req: UpdateLabelsRequest) -> UpdateLabelsResponse:
        counts = await asyncio.to_thread(self.selector.update_labels, req)
        self.trainer.notify(counts.revision)
        return make_update_response(counts, self.trainer.snapshot().version)

    async def release_batch(self, req: ReleaseBatchRequest) -> ReleaseBatchResponse:
        return await asyncio.to_thread(self.selector.release_batch, req)

    async def status(self) -> StatusResponse:
        counts = await asyncio.to_thread(self.selector.counts)
        return make_status(self.args, counts, self.trainer.status())

    async def model(self) -> ModelResponse:
        return make_model(self.trainer.snapshot(), self.selector.classes)


def create_local_app(args: ServeArgs):
    """The whole service in one process (no Ray): ``uvicorn`` or ``TestClient`` can host the result."""
    from raydq.serve.api import create_app

    backend = LocalBackend(args)
    app = create_app(backend, token=args.api_token(), max_body_bytes=args.max_body_bytes, lifespan=backend.lifespan)
    app.state.backend = backend
    return app
