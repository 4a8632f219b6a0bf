"""A small typed HTTP client for the raydq service: what an annotation tool (or the demo's simulated annotator)
calls. Plain httpx; errors carry the server's message."""

from __future__ import annotations

import time
from typing import Any

import httpx


class RaydqError(RuntimeError):
    """The service answered with an error status; ``status`` and ``detail`` are the server's."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class RaydqClient:
    """Client for one raydq service at ``base_url`` (e.g. ``http://127.0.0.1:8000``)."""

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 120.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RaydqClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        response = self._http.request(method, path, json=json)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise RaydqError(response.status_code, detail)
        return response.json()

    def healthz(self) -> Any:
        return self._call("GET", "/healthz")

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/status")

    def model(self) -> dict[str, Any]:
        return self._call("GET", "/model")

    def select_batch(self, batch_size: int, *, strategy: str | None = None, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"batch_size": batch_size, **extra}
        if strategy is not None:
            body["strategy"] = strategy
        return self._call("POST", "/select_batch", body)

    def update_labels(self, labels: list[dict[str, Any]], *, batch_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"labels": labels}
        if batch_id is not None:
            body["batch_id"] = batch_id
        return self._call("POST", "/update_labels", body)

    def release_batch(self, batch_id: str) -> dict[str, Any]:
        return self._call("POST", "/release_batch", {"batch_id": batch_id})

    def wait_until_ready(self, timeout: float = 120.0) -> None:
        """Poll /healthz until the service answers (Serve replicas take a while to start)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.healthz()
                return
            except (httpx.HTTPError, RaydqError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
