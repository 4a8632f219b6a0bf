"""The whole service in one process, without Ray: for uvicorn (``python -m raydq.serve.local``) and TestClient.

The same ``Endpoints`` as under Ray Serve, with the selector and the trainer as local objects instead of deployment
handles, and the pool in this process (``PoolConfig.use_actors`` is ignored: there is no Ray to hold actors).
"""

from __future__ import annotations

import asyncio
import contextlib

from raydq.labels import Identity
from raydq.serve.config import ServeArgs
from raydq.serve.schemas import TrainingStatus
from raydq.serve.snapshots import HeadSnapshot
from raydq.serve.training import TrainingService


class LocalTrainer:
    """``TrainerPort`` over a ``TrainingService`` in this process."""

    def __init__(self, service: TrainingService) -> None:
        self.service = service

    async def notify(self, revision: int) -> int:
        return self.service.notify(revision)

    async def head(self) -> HeadSnapshot:
        return self.service.snapshot()

    async def status(self) -> TrainingStatus:
        return self.service.status()

    async def pin(self, version: int | None, caller: Identity, request_id: str | None) -> TrainingStatus:
        return await self.service.pin(version, caller, request_id)


def create_inprocess_app(args: ServeArgs, *, host: str = "127.0.0.1"):
    """The service's FastAPI app with every part in this process; ``app.state`` exposes the parts to tests."""
    from raydq.serve.api import create_app
    from raydq.serve.builder import open_parts

    parts = open_parts(args, use_actors=False, host=host)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        parts.trainer.start(parts.store.revision())
        tasks = [asyncio.create_task(parts.maintenance())]
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            parts.selection.close()
            parts.store.close()

    endpoints = parts.endpoints(LocalTrainer(parts.trainer))
    app = create_app(
        endpoints,
        authenticator=parts.authenticator,
        max_body_bytes=args.max_body_bytes,
        lifespan=lifespan,
    )
    app.state.parts = parts
    app.state.endpoints = endpoints
    return app
