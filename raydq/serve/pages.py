"""The labeling page of our own: ``GET /label`` and its static files (plain HTML/JS/CSS from
``raydq/serve/static/``: no build step, nothing fetched from elsewhere). The page calls the service's JSON endpoints
with the token the user types, so the page itself and its files are open (``PAGE_PATHS``).

Also, until the service's own items API lands, a minimal ``GET /items/{id}/image`` over the in-process backend's
pool (``raydq.data.images`` reads the row's ``uri``): MARKED FOR THE LEAD, to be replaced by the real endpoint
(which must keep the path, the ``size`` parameter and the bearer-token auth the page relies on).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from importlib import resources
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from raydq.data.images import ImageSourceError, read_item_image
from raydq.pool.store import Pool

_STATIC = {"/label": ("label.html", "text/html; charset=utf-8"),
           "/label/app.js": ("label.js", "text/javascript; charset=utf-8"),
           "/label/app.css": ("label.css", "text/css; charset=utf-8")}  # fmt: skip
PAGE_PATHS = frozenset(_STATIC)


def _static(name: str) -> bytes:
    return resources.files("raydq.serve").joinpath("static", name).read_bytes()


def _error(status: int, loc: list[Any], msg: str, type_: str) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": loc, "msg": msg, "type": type_}]}, status_code=status)


def pool_locator(backend: Any) -> Callable[[str], str | None] | None:
    """item id -> uri for a backend that holds the pool in this process (``LocalBackend``); None otherwise."""
    pool = getattr(getattr(backend, "selector", None), "pool", None)
    if not isinstance(pool, Pool) or pool.uris is None:
        return None
    uris = pool.uris

    def locate(item_id: str) -> str | None:
        if not pool.contains(item_id):
            return None
        uri = uris[int(pool.index_of([item_id])[0])]
        return None if uri is None else str(uri)

    return locate


def pages_router(backend: Any = None) -> APIRouter:
    """The page's routes; with a backend that holds the pool, the interim image route too."""
    router = APIRouter(tags=["labeling page"])

    def serve_file(path: str):
        name, media_type = _STATIC[path]
        body = _static(name)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'

        async def handler(request: Request) -> Response:
            if request.headers.get("if-none-match") == etag:
                return Response(status_code=304, headers={"ETag": etag})
            return Response(body, media_type=media_type, headers={"ETag": etag, "Cache-Control": "no-cache"})

        return handler

    for path in _STATIC:
        router.add_api_route(path, serve_file(path), methods=["GET"], include_in_schema=path == "/label")

    locate = pool_locator(backend)
    if locate is not None:

        @router.get("/items/{item_id:path}/image", responses={404: {}, 502: {}})
        async def item_image(request: Request, item_id: str, size: int | None = Query(None, ge=16, le=1024)):
            """An item's image from its source (INTERIM, see the module docstring)."""
            uri = locate(item_id)
            if uri is None:
                return _error(404, ["path", "item_id"], f"unknown id {item_id!r} (or it has no uri)", "not_found")
            etag = '"' + hashlib.sha256(f"{item_id}\n{size}".encode()).hexdigest()[:32] + '"'
            if request.headers.get("if-none-match") == etag:
                return Response(status_code=304, headers={"ETag": etag})
            try:
                image = await asyncio.to_thread(read_item_image, uri, size=size)
            except ImageSourceError as e:
                return _error(404 if e.missing else 502, ["path", "item_id"], str(e), "image_source")
            headers = {"ETag": etag, "Cache-Control": "private, max-age=3600"}
            return Response(image.data, media_type=image.media_type, headers=headers)

    return router
