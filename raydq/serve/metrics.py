"""Prometheus metrics through ``ray.util.metrics`` (exported by Ray's metrics agent), or nothing outside Ray.

Every tag takes values from a fixed set: the endpoint is one of the service's own route templates (``/items/{id}``,
not the id; anything else is ``other``), the method one of a handful (anything else is ``OTHER``) and the status an
HTTP status code, so a scanner cannot blow up the number of time series.
"""

from __future__ import annotations

import sys

ENDPOINTS = frozenset(
    {
        "/select_batch",
        "/update_labels",
        "/release_batch",
        "/renew_batch",
        "/batches",
        "/labels",
        "/strategies",
        "/status",
        "/healthz",
        "/readyz",
        "/model",
        "/label",
        "/docs",
        "/openapi.json",
    }
)
PREFIX_ENDPOINTS = (("/items/", "/items/{id}"), ("/admin/", "/admin/*"), ("/static/", "/static/*"))
METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"})
_LATENCY_BOUNDARIES = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]


def endpoint_tag(path: str) -> str:
    if path in ENDPOINTS:
        return path
    for prefix, tag in PREFIX_ENDPOINTS:
        if path.startswith(prefix):
            return tag + ("/image" if tag == "/items/{id}" and path.endswith("/image") else "")
    return "other"


def method_tag(method: str) -> str:
    return method if method in METHODS else "OTHER"


def status_tag(status: int) -> str:
    return str(status) if 100 <= status < 600 else "other"


class ServiceMetrics:
    """Requests and latency per endpoint, labels stored, model version. No-ops when Ray is not initialised."""

    def __init__(self) -> None:
        ray = sys.modules.get("ray")
        self.enabled = bool(ray is not None and ray.is_initialized())
        if not self.enabled:
            return
        from ray.util import metrics

        self._requests = metrics.Counter(
            "raydq_requests",
            description="HTTP requests by endpoint and status",
            tag_keys=("endpoint", "method", "status"),
        )
        self._latency = metrics.Histogram(
            "raydq_request_latency_seconds",
            description="HTTP request latency",
            boundaries=_LATENCY_BOUNDARIES,
            tag_keys=("endpoint", "method"),
        )
        self._labels = metrics.Counter(
            "raydq_labels_stored", description="labels written (created or changed)", tag_keys=("kind",)
        )
        self._version = metrics.Gauge("raydq_model_version", description="version of the served head")

    def request(self, *, path: str, method: str, status: int, seconds: float) -> None:
        if not self.enabled:
            return
        endpoint, method = endpoint_tag(path), method_tag(method)
        self._requests.inc(1, tags={"endpoint": endpoint, "method": method, "status": status_tag(status)})
        self._latency.observe(seconds, tags={"endpoint": endpoint, "method": method})

    def labels_stored(self, *, created: int, updated: int) -> None:
        if not self.enabled:
            return
        if created:
            self._labels.inc(created, tags={"kind": "created"})
        if updated:
            self._labels.inc(updated, tags={"kind": "updated"})

    def model_version(self, version: int) -> None:
        if self.enabled:
            self._version.set(version)
