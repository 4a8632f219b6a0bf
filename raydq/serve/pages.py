"""The labeling page of our own: ``GET /label`` and its static files (plain HTML/JS/CSS from
``raydq/serve/static/``: no build step, nothing fetched from elsewhere). The page calls the service's JSON endpoints
with the token the user types, so the page itself and its files are open (``PAGE_PATHS``).
"""

from __future__ import annotations

import hashlib
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import Response

_STATIC = {"/label": ("label.html", "text/html; charset=utf-8"),
           "/label/app.js": ("label.js", "text/javascript; charset=utf-8"),
           "/label/app.css": ("label.css", "text/css; charset=utf-8")}  # fmt: skip
PAGE_PATHS = frozenset(_STATIC)


def _static(name: str) -> bytes:
    return resources.files("raydq.serve").joinpath("static", name).read_bytes()


def pages_router() -> APIRouter:
    """The page and its files."""
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

    for path, (_, media_type) in _STATIC.items():
        router.add_api_route(
            path,
            serve_file(path),
            methods=["GET"],
            include_in_schema=path == "/label",
            responses={200: {"content": {media_type.split(";")[0]: {}}, "description": "the labeling page"}},
            response_class=Response,
        )

    return router
