"""The connector's own small HTTP endpoint (FastAPI):

- ``POST /webhook``: Label Studio's webhooks, authenticated by the shared secret in a bearer header; it only wakes
  the sync loop, which reads the project again, so a webhook and a poll take one code path (and a lost webhook
  only delays a sync until the next poll);
- ``GET /images/{item_id}?size=&sig=``: the images Label Studio shows, fetched from raydq with the connector's
  token; only URLs the connector signed are served;
- ``GET /healthz``.

``run_connector`` is the process around it (what ``jobs/label_studio.py`` runs).
"""

from __future__ import annotations

import hmac
import logging
import signal
import socket
import threading
from collections.abc import Callable

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import Response

from raydq.client import RaydqClient, RaydqError
from raydq.integrations.label_studio.config import SyncSettings
from raydq.integrations.label_studio.signing import verify_image
from raydq.integrations.label_studio.sync import LabelStudioSync

log = logging.getLogger(__name__)

MAX_WEBHOOK_BYTES = 8 << 20  # a TASKS_DELETED payload for thousands of tasks fits


def create_endpoint(*, secret: str, signing_key: bytes, images: RaydqClient, on_webhook: Callable[[], None]) -> FastAPI:
    app = FastAPI(title="raydq Label Studio connector", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.webhooks = 0  # accepted so far (reported by /healthz)
    expected = f"Bearer {secret}".encode()

    @app.post("/webhook")
    async def webhook(request: Request) -> dict:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise HTTPException(401, "missing or wrong webhook secret")
        length = int(request.headers.get("content-length") or 0)
        if length > MAX_WEBHOOK_BYTES:
            raise HTTPException(413, f"webhook body exceeds {MAX_WEBHOOK_BYTES} bytes")
        app.state.webhooks += 1
        on_webhook()
        return {"ok": True}

    @app.get("/images/{item_id:path}")
    def image(item_id: str, size: int = Query(ge=16, le=1024), sig: str = Query(min_length=64, max_length=64)):
        if not verify_image(signing_key, item_id, size, sig):
            raise HTTPException(403, "image URL signature does not match")
        try:
            data, media_type = images.item_image(item_id, size=size)
        except RaydqError as e:
            raise HTTPException(404 if e.status == 404 else 502, f"raydq: {e.detail}") from None
        # Signed URLs never change meaning (same id and size, same pixels): browsers may keep them. Label Studio's
        # <Image> loads cross-origin (crossOrigin="anonymous", for its canvas): without the CORS header it shows
        # "There was an issue loading URL" (seen in Chromium). The signature, not the origin, guards the image.
        headers = {"Cache-Control": "private, max-age=86400", "Access-Control-Allow-Origin": "*"}
        return Response(data, media_type=media_type, headers=headers)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "webhooks": app.state.webhooks}

    return app


def run_connector(settings: SyncSettings, *, once: bool = False) -> None:
    """The long-running job: the sync loop, plus the endpoint when ``listen_port`` is set. SIGTERM/SIGINT stop
    both after the current pass (a pass interrupted by a kill is finished by the next start)."""
    sync = LabelStudioSync(settings)
    try:
        if once:
            sync.setup()
            log.info("sync: %s", sync.sync_once())
            return
        if settings.listen_port is None:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: sync.stop())
            sync.run_forever()
            return
        import uvicorn

        images = RaydqClient(settings.raydq_url, token=settings.raydq_token, timeout=60.0)
        app = create_endpoint(
            secret=settings.webhook_secret or "", signing_key=settings.signing_key(), images=images,
            on_webhook=sync.poke,
        )  # fmt: skip
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((settings.listen_host, settings.listen_port))
        host, port = sock.getsockname()[:2]
        print(f"connector endpoint on http://{host}:{port}", flush=True)
        loop = threading.Thread(target=sync.run_forever, name="label-studio-sync", daemon=True)
        loop.start()
        uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])
        sync.stop()
        loop.join(timeout=60)
        images.close()
    finally:
        sync.close()
