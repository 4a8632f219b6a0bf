"""A small typed HTTP client for the raydq service: what an annotation tool (the demo's simulated annotator, the
Label Studio connector) calls. Plain httpx; errors carry the server's message. Every endpoint path the tools use is
written here once, so following a change of the service's API is a change to this file."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx


class RaydqError(RuntimeError):
    """The service answered with an error status; ``status`` and ``detail`` are the server's."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Capabilities:
    """Optional endpoints this service offers (read from its OpenAPI schema, so tools adapt to older services)."""

    skip: bool  # update_labels accepts {"id", "skip": true, "reason"}
    renew: bool  # POST /renew_batch
    item_image: bool  # GET /items/{id}/image


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

    def _send(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None):
        response = self._http.request(method, path, json=json, params=params)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except (ValueError, AttributeError):
                detail = response.text
            raise RaydqError(response.status_code, detail)
        return response

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        return self._send(method, path, json=json).json()

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

    def skip_items(self, skips: list[dict[str, Any]], *, batch_id: str | None = None) -> dict[str, Any]:
        """Answer items as unanswerable: ``skips`` are ``{"id", "reason"?, "annotator"?}``.

        Needs ``capabilities().skip``; an older service refuses the ``skip`` field with a 422."""
        return self.update_labels([{**s, "skip": True} for s in skips], batch_id=batch_id)

    def release_batch(self, batch_id: str) -> dict[str, Any]:
        return self._call("POST", "/release_batch", {"batch_id": batch_id})

    def renew_batch(self, batch_id: str, *, lease_seconds: float | None = None) -> dict[str, Any]:
        """Extend the leases of a batch's open items (needs ``capabilities().renew``)."""
        body: dict[str, Any] = {"batch_id": batch_id}
        if lease_seconds is not None:
            body["lease_seconds"] = lease_seconds
        return self._call("POST", "/renew_batch", body)

    def item_image(self, item_id: str, *, size: int | None = None) -> tuple[bytes, str]:
        """``(encoded image, media type)`` of one pool item, at most ``size`` pixels on its longest side."""
        response = self._send("GET", item_image_path(item_id), params={"size": size} if size else None)
        return response.content, response.headers.get("content-type", "application/octet-stream")

    def capabilities(self) -> Capabilities:
        return capabilities_of(self._call("GET", "/openapi.json"))

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


def capabilities_of(schema: dict[str, Any]) -> Capabilities:
    """What a service can do, read from its OpenAPI schema (older services lack skips, renewals, images)."""
    paths = schema.get("paths", {})
    return Capabilities(
        skip="skip" in _answer_fields(schema),
        renew="/renew_batch" in paths,
        item_image=any(p.startswith("/items/") and p.endswith("/image") for p in paths),
    )


def _answer_fields(schema: dict[str, Any]) -> dict[str, Any]:
    """The properties of one answer in ``update_labels``'s body, followed through the schema's references (so a
    renamed model on the service side does not hide a capability)."""
    components = schema.get("components", {}).get("schemas", {})

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        ref = node.get("$ref", "")
        return components.get(ref.rsplit("/", 1)[-1], {}) if ref else node

    body = schema.get("paths", {}).get("/update_labels", {}).get("post", {}).get("requestBody", {})
    request = resolve(body.get("content", {}).get("application/json", {}).get("schema", {}))
    labels = request.get("properties", {}).get("labels", {})
    return resolve(labels.get("items", {})).get("properties", {})


def item_image_path(item_id: str) -> str:
    """The image endpoint's path for ``item_id`` (ids may hold slashes: they are percent-encoded)."""
    return f"/items/{quote(item_id, safe='')}/image"
