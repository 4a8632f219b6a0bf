"""The Ray Serve app: ``build_app(ServeArgs)`` binds three deployments that compose through handles.

- ``Api`` (FastAPI ingress, ``api_replicas``): routes, validation, auth, limits, metrics, and every label-store
  write (labels, skips, batches, idempotency, audit) through ``Endpoints``, so writes never queue behind a
  selection.
- ``Selector`` (one replica): hosts ``SelectionService``: the shard actors holding the pool, the label mirror,
  selection with a time budget, leasing; answers id lookups on separate threads.
- ``HeadTrainer`` (one replica): hosts ``TrainingService``, the head-retraining loop.

Each deployment is a thin shell around a service that also runs without Ray (``raydq.serve.inprocess``). Services
raise ``ServiceError`` for refusals; a shell returns it as a value so that it crosses the handle unchanged, and
``RemotePort`` raises it again on the other side.

``serve run serve_configs/local.yaml`` or ``serve run raydq.serve.app:build_app embeddings=... database_url=...``.
Importing this module defines the deployments and does nothing else.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ray import serve
from ray.exceptions import RayError, RayTaskError
from ray.serve import Application
from ray.serve.exceptions import RayServeException
from ray.serve.handle import DeploymentHandle

from raydq.deadline import DeadlineExceeded
from raydq.serve.config import ServeArgs
from raydq.serve.errors import ServiceError, unavailable

log = logging.getLogger(__name__)
_PASSED_THROUGH = (ServiceError, DeadlineExceeded)


async def _as_value(coro) -> Any:
    """Await ``coro``; a refusal becomes the return value (it crosses the handle intact, unlike a raised error)."""
    try:
        return await coro
    except _PASSED_THROUGH as e:
        return e


class CannotStart(RuntimeError):
    """The app cannot be built (a label store whose schema is older than the code); the message says what to run.

    Raised while Serve builds the application, so the app fails once (DEPLOY_FAILED, with this message) instead of
    replicas that Serve restarts over and over."""


class RemotePort:
    """A port (``SelectorPort``, ``TrainerPort``) over a deployment handle: ``await port.method(...)``.

    A refusal returned by the deployment is raised here; a deployment that cannot be reached (restarting, gone)
    becomes 503 with Retry-After."""

    def __init__(self, handle: DeploymentHandle, what: str) -> None:
        self._handle = handle
        self._what = what

    def __getattr__(self, name: str):
        method = getattr(self._handle, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            try:
                result = await method.remote(*args, **kwargs)
            except RayTaskError as e:  # the deployment's own code raised: a bug there, not an outage
                raise e.as_instanceof_cause() from None
            except (RayError, RayServeException) as e:  # dead, restarting, overloaded: come back later
                log.warning("%s.%s failed: %s: %s", self._what, name, type(e).__name__, e)
                raise unavailable(
                    f"the {self._what} is not reachable now ({type(e).__name__})", retry_after_s=5
                ) from None
            if isinstance(result, _PASSED_THROUGH):
                raise result
            return result

        return call


@serve.deployment(name="Selector", num_replicas=1, max_ongoing_requests=1024, health_check_period_s=10)
class Selector:
    """Hosts ``SelectionService`` (the pool's shard actors live as long as this replica).

    Before anything was embedded there is no store to serve: the replica says so once in its log, answers every
    request with a 503 that names the command to run, and opens the pool as soon as the store appears (a first
    ``serve run`` that just works once ``python jobs/embed.py`` has run, instead of replicas restarted over and over).
    """

    async def __init__(self, args: dict[str, Any]) -> None:
        from raydq.serve.builder import missing_store_message

        self.args = ServeArgs.model_validate(args)
        self.service = None
        self._waiting = missing_store_message(self.args.resolved_embeddings())
        if self._waiting is None:
            await self._open()
        else:
            log.warning("%s; waiting for it", self._waiting)
            self._opening = asyncio.get_running_loop().create_task(self._open_when_embedded())

    async def _open(self) -> None:
        from raydq.serve.builder import maintain, open_pool, open_store
        from raydq.serve.selection import SelectionService

        store = open_store(self.args)
        pool = await asyncio.to_thread(open_pool, self.args, use_actors=self.args.pool.use_actors)
        self.service = await asyncio.to_thread(SelectionService, self.args, store=store, pool=pool)
        self._maintenance = asyncio.get_running_loop().create_task(maintain(self.service, self.args))
        self._waiting = None

    async def _open_when_embedded(self) -> None:
        from raydq.serve.builder import missing_store_message

        while missing_store_message(self.args.resolved_embeddings()) is not None:
            await asyncio.sleep(2.0)
        await self._open()
        log.info("embedding store found; serving it")

    def _ready(self):
        if self.service is None:
            raise unavailable(self._waiting or "the pool is still loading", retry_after_s=10, loc=["pool"])
        return self.service

    async def _call(self, method: str, *args, **kwargs):
        try:
            return await getattr(self._ready(), method)(*args, **kwargs)
        except _PASSED_THROUGH as e:
            return e

    async def select_batch(self, req, head, **kwargs):
        return await self._call("select_batch", req, head, **kwargs)

    async def resolve(self, ids: list[str]):
        return await self._call("resolve", ids)

    async def training_set(self):
        return await self._call("training_set")

    async def counts(self):
        return await self._call("counts")

    async def pool_status(self):
        return await self._call("pool_status")

    async def refresh_pool(self):
        return await self._call("refresh_pool")

    async def kmeans_backend(self):
        return await self._call("kmeans_backend")

    async def classes(self):
        return await self._call("classes")


@serve.deployment(name="HeadTrainer", num_replicas=1, max_ongoing_requests=256, health_check_period_s=10)
class HeadTrainer:
    """Hosts ``TrainingService`` (one replica: one training loop per app; versions come from the database)."""

    async def __init__(self, args: dict[str, Any], selector: DeploymentHandle) -> None:
        from raydq.serve.builder import make_trainer, open_store

        parsed = ServeArgs.model_validate(args)
        store = open_store(parsed)
        self.service = make_trainer(parsed, store, RemotePort(selector, "selector").training_set)
        self.service.start(await asyncio.to_thread(store.revision))  # recovery: labels past the stored head

    async def notify(self, revision: int) -> int:
        return self.service.notify(revision)

    async def head(self):
        return self.service.snapshot()

    async def status(self):
        return self.service.status()

    async def pin(self, version: int | None, caller, request_id: str | None):
        return await _as_value(self.service.pin(version, caller, request_id))

    async def wait_idle(self, timeout: float = 60.0) -> int:
        return await self.service.wait_idle(timeout)


def _serve_http_host() -> str:
    """The address Serve's HTTP proxies bind (asked from the Serve controller)."""
    try:
        import ray
        from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

        controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        return str(ray.get(controller.get_http_config.remote(), timeout=30).host)
    except Exception as e:  # cannot tell: assume reachable from elsewhere (the safe side)
        log.warning("could not read Serve's HTTP host (%s); assuming a non-loopback address", e)
        return "0.0.0.0"


@serve.deployment(name="Api", max_ongoing_requests=256)
@serve.ingress()
class Api:
    """The HTTP ingress; its FastAPI app is built per replica from the args."""

    def __init__(self, args: dict[str, Any], selector: DeploymentHandle, trainer: DeploymentHandle) -> None:
        from raydq.serve.builder import make_authenticator, open_store
        from raydq.serve.endpoints import Endpoints
        from raydq.serve.identity import check_anonymous_bind
        from raydq.serve.metrics import ServiceMetrics

        self.args = ServeArgs.model_validate(args)
        store = open_store(self.args)
        self.authenticator = make_authenticator(self.args, store)
        check_anonymous_bind(
            host=_serve_http_host(), authenticator=self.authenticator, allow_anonymous=self.args.allow_anonymous
        )
        self.metrics = ServiceMetrics()
        self.endpoints = Endpoints(
            self.args,
            store=store,
            selector=RemotePort(selector, "selector"),
            trainer=RemotePort(trainer, "trainer"),
            authenticator=self.authenticator,
        )

    def __serve_build_asgi_app__(self):
        from raydq.serve.api import create_app

        return create_app(
            self.endpoints,
            authenticator=self.authenticator,
            max_body_bytes=self.args.max_body_bytes,
            metrics=self.metrics,
        )


def build_app(args: ServeArgs | dict[str, Any]) -> Application:
    """The typed app builder: ``serve run``/``serve deploy`` pass the config's ``args`` validated as ``ServeArgs``.

    A label store that needs its migrations stops the app here, once, with the command to run (rather than as
    replicas that Serve restarts); a missing embedding store is waited for by the Selector."""
    from raydq.serve.builder import startup_problem

    if isinstance(args, dict):
        args = ServeArgs.model_validate(args)
    args = args.absolutized()
    if message := startup_problem(args, embeddings=False):
        raise CannotStart(message)
    payload = args.model_dump()
    selector = Selector.options(ray_actor_options={"num_cpus": args.selector_num_cpus}).bind(payload)
    trainer = HeadTrainer.options(ray_actor_options={"num_cpus": args.trainer_num_cpus}).bind(payload, selector)
    return Api.options(num_replicas=args.api_replicas, ray_actor_options={"num_cpus": args.api_num_cpus}).bind(
        payload, selector, trainer
    )
