"""The FastAPI app of the labeling service: routes, validation, limits, auth and metrics, over a backend.

The app does not know whether its backend runs in-process (``LocalBackend``: uvicorn, TestClient) or behind Ray
Serve deployment handles (``raydq.serve.app``); importing this module does not import Ray.

Guards run as one plain ASGI middleware before routing, in this order: bearer token (401, before the body is read,
so an unauthenticated request never reaches a handler), body size (413), then the route (pydantic validation: 422
naming the field). ``/healthz`` and the OpenAPI schema/docs are open.
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from raydq.serve.errors import ServiceError
from raydq.serve.metrics import ServiceMetrics
from raydq.serve.pages import PAGE_PATHS, pages_router
from raydq.serve.schemas import (
    ErrorResponse,
    Health,
    ModelResponse,
    ReleaseBatchRequest,
    ReleaseBatchResponse,
    SelectBatchRequest,
    SelectBatchResponse,
    StatusResponse,
    UpdateLabelsRequest,
    UpdateLabelsResponse,
)

OPEN_PATHS = frozenset({"/healthz", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"}) | PAGE_PATHS
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in [
        (401, "missing or wrong bearer token"),
        (404, "unknown batch"),
        (409, "conflict with concurrent requests"),
        (413, "request body too large"),
        (422, "invalid request; detail names the field"),
    ]
}


class Backend(Protocol):
    """What the routes call; every method raises ``ServiceError`` for a refused request (nothing changed)."""

    async def select_batch(self, req: SelectBatchRequest) -> SelectBatchResponse: ...
    async def update_labels(self, req: UpdateLabelsRequest) -> UpdateLabelsResponse: ...
    async def release_batch(self, req: ReleaseBatchRequest) -> ReleaseBatchResponse: ...
    async def status(self) -> StatusResponse: ...
    async def model(self) -> ModelResponse: ...


async def _send_json(send, status: int, body: dict, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
            + (headers or []),
        }
    )
    await send({"type": "http.response.body", "body": data})


class GuardMiddleware:
    """Bearer token (constant-time compare), body-size limit and per-endpoint metrics, as plain ASGI."""

    def __init__(self, app, *, token: str | None, max_body_bytes: int, metrics: ServiceMetrics) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope.get("path", "")
        status_box = [500]

        async def send_wrapper(message) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
            await send(message)

        try:
            await self._guarded(scope, receive, send_wrapper, path)
        finally:
            self.metrics.request(
                path=path, method=scope.get("method", ""), status=status_box[0], seconds=time.perf_counter() - start
            )

    async def _guarded(self, scope, receive, send, path: str) -> None:
        headers = dict(scope.get("headers") or [])
        if self.token is not None and path not in OPEN_PATHS:
            auth = headers.get(b"authorization", b"")
            scheme, _, given = auth.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
                detail = {
                    "detail": [
                        {
                            "loc": ["header", "authorization"],
                            "msg": "missing or wrong bearer token",
                            "type": "unauthorized",
                        }
                    ]
                }
                await _send_json(send, 401, detail, [(b"www-authenticate", b"Bearer")])
                return
        too_big = {
            "detail": [
                {"loc": ["body"], "msg": f"request body exceeds {self.max_body_bytes} bytes", "type": "too_large"}
            ]
        }
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared < 0:
                await _send_json(
                    send,
                    400,
                    {"detail": [{"loc": ["header", "content-length"], "msg": "invalid", "type": "value_error"}]},
                )
                return
            if declared > self.max_body_bytes:
                await _send_json(send, 413, too_big)
                return
        # Read the body here (bounded), so a chunked upload cannot exceed the limit either; then replay it.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _send_json(send, 413, too_big)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def create_app(
    backend: Backend,
    *,
    token: str | None = None,
    max_body_bytes: int = 1 << 20,
    metrics: ServiceMetrics | None = None,
    lifespan=None,
) -> FastAPI:
    """The labeling service's FastAPI app over ``backend``."""
    app = FastAPI(
        title="raydq labeling service",
        version="1",
        description="DropQuery active learning: lease batches to annotators, store labels, retrain the head.",
        lifespan=lifespan,
    )
    metrics = metrics or ServiceMetrics()

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(exc.to_json(), status_code=exc.status)

    @app.post("/select_batch", response_model=SelectBatchResponse, responses=_ERRORS, tags=["labeling"])
    async def select_batch(req: SelectBatchRequest) -> SelectBatchResponse:
        """Choose ``batch_size`` unlabeled items with the newest head and lease them to the caller."""
        result = await backend.select_batch(req)
        metrics.model_version(result.model_version)
        return result

    @app.post("/update_labels", response_model=UpdateLabelsResponse, responses=_ERRORS, tags=["labeling"])
    async def update_labels(req: UpdateLabelsRequest) -> UpdateLabelsResponse:
        """Store labels, all or nothing; the answer comes after the commit. Same label twice = one label."""
        result = await backend.update_labels(req)
        metrics.labels_stored(created=result.created, updated=result.updated)
        metrics.model_version(result.model_version)
        return result

    @app.post("/release_batch", response_model=ReleaseBatchResponse, responses=_ERRORS, tags=["labeling"])
    async def release_batch(req: ReleaseBatchRequest) -> ReleaseBatchResponse:
        """End a batch's leases early, so its unlabeled items can be selected again."""
        return await backend.release_batch(req)

    @app.get("/status", response_model=StatusResponse, responses=_ERRORS, tags=["service"])
    async def status() -> StatusResponse:
        result = await backend.status()
        metrics.model_version(result.model_version)
        return result

    @app.get("/model", response_model=ModelResponse, responses=_ERRORS, tags=["service"])
    async def model() -> ModelResponse:
        """The served head: the folded affine map ``logits = X @ W + b`` and ``LinearHead.to_dict()``."""
        return await backend.model()

    @app.get("/healthz", response_model=Health, tags=["service"])
    async def healthz() -> Health:
        return Health(status="ok")

    app.include_router(pages_router(backend))  # the labeling page (raydq.serve.pages)
    app.add_middleware(GuardMiddleware, token=token, max_body_bytes=max_body_bytes, metrics=metrics)
    return app
