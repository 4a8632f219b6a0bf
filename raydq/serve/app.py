"""The Ray Serve app: ``build_app(ServeArgs)`` binds three deployments that compose through handles.

- ``Api`` (FastAPI ingress): routes, validation, limits, auth, metrics; calls the two below.
- ``Selector`` (one replica): the pool in memory; selection with the newest head, leases, label writes.
- ``HeadTrainer`` (one replica): the head-retraining actor; coalesces bursts, bumps ``model_version``, keeps the last
  good head on failure, fetches labeled embeddings from the Selector.

``serve run serve_configs/local.yaml`` or ``serve run raydq.serve.app:build_app embeddings=... database_url=...``.
Importing this module defines the deployments and does nothing else.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from raydq.serve.config import ServeArgs
from raydq.serve.errors import ServiceError
from raydq.serve.heads import HeadSnapshot, TrainingSet
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


def _raise_if_error(result: Any) -> Any:
    """Deployments return a ``ServiceError`` as a value (not raised), so it crosses the handle unchanged."""
    if isinstance(result, ServiceError):
        raise result
    return result


@serve.deployment(name="Selector", num_replicas=1, max_ongoing_requests=64, health_check_period_s=10)
class Selector:
    """Holds the pool; serialises selection in this replica (the database refuses double leases across replicas)."""

    def __init__(self, args: dict[str, Any]) -> None:
        from raydq.serve.selector import SelectorCore

        self.core = SelectorCore(ServeArgs.model_validate(args))
        self._select_lock = asyncio.Lock()  # waiting selections must not hold threads that label writes need

    async def _call(self, fn, *a):
        try:
            return await asyncio.to_thread(fn, *a)
        except ServiceError as e:
            return e

    async def select_batch(self, req: SelectBatchRequest, head: HeadSnapshot) -> SelectBatchResponse | ServiceError:
        async with self._select_lock:
            return await self._call(self.core.select_batch, req, head)

    async def update_labels(self, req: UpdateLabelsRequest):
        return await self._call(self.core.update_labels, req)

    async def release_batch(self, req: ReleaseBatchRequest) -> ReleaseBatchResponse | ServiceError:
        return await self._call(self.core.release_batch, req)

    async def training_set(self) -> TrainingSet:
        return await asyncio.to_thread(self.core.training_set)

    async def counts(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.core.counts)

    def classes(self) -> list[str]:
        return list(self.core.classes)


@serve.deployment(name="HeadTrainer", num_replicas=1, max_ongoing_requests=64, health_check_period_s=10)
class HeadTrainer:
    """The head-retraining actor (one replica: one sequence of model versions)."""

    def __init__(self, args: dict[str, Any], selector: DeploymentHandle) -> None:
        from raydq.labels import LabelStore
        from raydq.serve.trainer import HeadTrainerCore

        parsed = ServeArgs.model_validate(args)
        self.selector = selector

        async def fetch() -> TrainingSet:
            return await self.selector.training_set.remote()

        self.core = HeadTrainerCore(
            store=LabelStore(parsed.resolved_database_url()),
            fetch=fetch,
            head_params=parsed.head_params,
            seed=parsed.seed,
            delay_s=parsed.retrain_delay_s,
        )

    async def notify(self, revision: int) -> int:
        """Labels reached ``revision``; returns the model version served now."""
        self.core.notify(revision)
        return self.core.snapshot().version

    async def head(self) -> HeadSnapshot:
        return self.core.snapshot()

    async def status(self) -> TrainingStatus:
        return self.core.status()

    async def model(self, classes: list[str]) -> ModelResponse:
        from raydq.serve.service import make_model

        return await asyncio.to_thread(make_model, self.core.snapshot(), classes)

    async def wait_idle(self, timeout: float = 60.0) -> int:
        await self.core.wait_idle(timeout)
        return self.core.snapshot().version


@serve.deployment(name="Api", max_ongoing_requests=128)
@serve.ingress()
class Api:
    """The HTTP ingress; its FastAPI app is built per replica from the args (token and limits included)."""

    def __init__(self, args: dict[str, Any], selector: DeploymentHandle, trainer: DeploymentHandle) -> None:
        from raydq.serve.metrics import ServiceMetrics

        self.args = ServeArgs.model_validate(args)
        self.selector = selector
        self.trainer = trainer
        self.metrics = ServiceMetrics()
        self._token = self.args.api_token()
        self._classes: list[str] | None = None

    def __serve_build_asgi_app__(self):
        from raydq.serve.api import create_app

        self.trainer.notify.remote(0)  # starts a recovery training if labels moved past the stored head
        return create_app(self, token=self._token, max_body_bytes=self.args.max_body_bytes, metrics=self.metrics)

    # -- the Backend protocol of raydq.serve.api -----------------------------------------------------------------------
    async def select_batch(self, req: SelectBatchRequest) -> SelectBatchResponse:
        head = self.trainer.head.remote()  # resolved by Serve before the Selector runs
        return _raise_if_error(await self.selector.select_batch.remote(req, head))

    async def update_labels(self, req: UpdateLabelsRequest) -> UpdateLabelsResponse:
        from raydq.serve.service import make_update_response

        counts = _raise_if_error(await self.selector.update_labels.remote(req))
        version = await self.trainer.notify.remote(counts.revision)
        return make_update_response(counts, version)

    async def release_batch(self, req: ReleaseBatchRequest) -> ReleaseBatchResponse:
        return _raise_if_error(await self.selector.release_batch.remote(req))

    async def status(self) -> StatusResponse:
        from raydq.serve.service import make_status

        counts, training = await asyncio.gather(self.selector.counts.remote(), self.trainer.status.remote())
        return make_status(self.args, counts, training)

    async def model(self) -> ModelResponse:
        if self._classes is None:
            self._classes = await self.selector.classes.remote()
        return await self.trainer.model.remote(self._classes)  # the trainer has torch loaded already


def build_app(args: ServeArgs) -> Application:
    """The typed app builder: ``serve run``/``serve deploy`` pass the config's ``args`` validated as ``ServeArgs``."""
    if isinstance(args, dict):
        args = ServeArgs.model_validate(args)
    args = args.absolutized()
    payload = args.model_dump()
    selector = Selector.options(ray_actor_options={"num_cpus": args.selector_num_cpus}).bind(payload)
    trainer = HeadTrainer.options(ray_actor_options={"num_cpus": args.trainer_num_cpus}).bind(payload, selector)
    return Api.options(num_replicas=args.api_replicas, ray_actor_options={"num_cpus": args.api_num_cpus}).bind(
        payload, selector, trainer
    )
