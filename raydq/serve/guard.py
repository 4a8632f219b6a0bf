"""One plain ASGI middleware that runs before routing: request id, authentication, body size, metrics.

Order: a request id (the client's ``X-Request-ID`` when it is sane, else a new one; echoed on the response), then
the bearer token (401 before the body is read, so an unauthenticated request never reaches a handler), then the
body size (413; a chunked upload is counted as it arrives), then the route. The ``Caller`` and the request id are
left in ``scope["state"]`` for the routes (``request.state.caller``, ``request.state.request_id``).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from raydq.serve.errors import error_body, json_bytes
from raydq.serve.identity import Authenticator
from raydq.serve.metrics import ServiceMetrics
from raydq.serve.pages import PAGE_PATHS

#: Paths anyone may read: liveness/readiness probes, the API's own description, and the labeling page's shell
#: (the page asks for a token and sends it with every call it makes).
OPEN_PATHS = (
    frozenset({"/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"}) | PAGE_PATHS
)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def is_open(path: str) -> bool:
    return path in OPEN_PATHS


async def send_json(send: Send, status: int, body: dict, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json_bytes(body)
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
    """Request id, bearer token -> Caller, body-size limit and per-endpoint metrics, as plain ASGI."""

    def __init__(
        self, app, *, authenticator: Authenticator, max_body_bytes: int, metrics: ServiceMetrics | None = None
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics or ServiceMetrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status_box = [500]

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self._guarded(scope, receive, send_wrapper, headers)
        finally:
            self.metrics.request(
                path=scope.get("path", ""),
                method=scope.get("method", ""),
                status=status_box[0],
                seconds=time.perf_counter() - start,
            )

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes]) -> None:
        path = scope.get("path", "")
        if not is_open(path):
            caller = await asyncio.to_thread(self.authenticator.authenticate, headers.get(b"authorization"))
            if caller is None:
                body = error_body([(["header", "authorization"], "missing or wrong bearer token", "unauthorized")])
                await send_json(send, 401, body, [(b"www-authenticate", b"Bearer")])
                return
            scope["state"]["caller"] = caller
        too_big = error_body([(["body"], f"request body exceeds {self.max_body_bytes} bytes", "too_large")])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared < 0:
                bad = error_body([(["header", "content-length"], "must be a non-negative integer", "value_error")])
                await send_json(send, 400, bad)
                return
            if declared > self.max_body_bytes:
                await send_json(send, 413, too_big)
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
                await send_json(send, 413, too_big)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
