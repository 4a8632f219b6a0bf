"""The few Label Studio REST calls the connector makes (plain httpx; Label Studio's own SDK pins clash with ours).

Authentication takes either kind of Label Studio token: a personal access token (a JWT refresh token, exchanged at
``/api/token/refresh/`` for short-lived access tokens, renewed on a 401) or a legacy token (``Token <key>``,
enabled per organization).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx


class LabelStudioError(RuntimeError):
    """Label Studio answered with an error status."""

    def __init__(self, method: str, path: str, status: int, text: str) -> None:
        super().__init__(f"Label Studio {method} {path}: HTTP {status}: {text[:500]}")
        self.status = status


def is_personal_access_token(token: str) -> bool:
    """Personal access tokens are JWTs (three base64url parts); legacy tokens are 40 hex characters."""
    return token.startswith("eyJ") and token.count(".") == 2


class LabelStudioClient:
    """One Label Studio at ``url`` acting as the holder of ``token``."""

    def __init__(self, url: str, token: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._http = httpx.Client(base_url=self.url, timeout=timeout)
        self._access: str | None = None

    def close(self) -> None:
        self._http.close()

    # -- transport ---------------------------------------------------------------------------------------------------
    def _auth(self, *, refresh: bool = False) -> dict[str, str]:
        if not is_personal_access_token(self._token):
            return {"Authorization": f"Token {self._token}"}
        if self._access is None or refresh:
            r = self._http.post("/api/token/refresh/", json={"refresh": self._token})
            if r.status_code >= 400:
                raise LabelStudioError("POST", "/api/token/refresh/", r.status_code, r.text)
            self._access = r.json()["access"]
        return {"Authorization": f"Bearer {self._access}"}

    def request(self, method: str, path: str, **kw: Any) -> Any:
        r = self._http.request(method, path, headers=self._auth(), **kw)
        if r.status_code == 401 and is_personal_access_token(self._token):  # the access token expired
            r = self._http.request(method, path, headers=self._auth(refresh=True), **kw)
        if r.status_code >= 400:
            raise LabelStudioError(method, path, r.status_code, r.text)
        return r.json() if r.content else None

    # -- calls -------------------------------------------------------------------------------------------------------
    def health(self) -> bool:
        try:
            return self._http.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    def projects(self) -> list[dict[str, Any]]:
        out, page = [], 1
        while True:
            data = self.request("GET", "/api/projects/", params={"page": page, "page_size": 100})
            if isinstance(data, list):  # older servers answer without pagination
                return data
            out.extend(data.get("results", []))
            if not data.get("next"):
                return out
            page += 1

    def project(self, project_id: int) -> dict[str, Any]:
        return self.request("GET", f"/api/projects/{project_id}/")

    def create_project(self, **fields: Any) -> dict[str, Any]:
        return self.request("POST", "/api/projects/", json=fields)

    def update_project(self, project_id: int, **fields: Any) -> dict[str, Any]:
        return self.request("PATCH", f"/api/projects/{project_id}/", json=fields)

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> list[int]:
        """Create ``tasks`` (``{"data": ..., "meta"?: ...}``); returns their ids in order."""
        data = self.request(
            "POST", f"/api/projects/{project_id}/import", params={"return_task_ids": "true"}, json=tasks
        )
        ids = data.get("task_ids")
        if not isinstance(ids, list) or len(ids) != len(tasks):
            raise LabelStudioError("POST", f"/api/projects/{project_id}/import", 200, f"unexpected answer {data}")
        return [int(i) for i in ids]

    def iter_tasks(self, project_id: int, *, page_size: int = 200) -> Iterator[dict[str, Any]]:
        """Every task of the project with its annotations, page by page."""
        page = 1
        while True:
            params = {"project": project_id, "page": page, "page_size": page_size, "fields": "all"}
            try:
                data = self.request("GET", "/api/tasks/", params=params)
            except LabelStudioError as e:
                if e.status == 404 and page > 1:  # past the last page
                    return
                raise
            tasks = data.get("tasks", []) if isinstance(data, dict) else data
            yield from tasks
            if len(tasks) < page_size:
                return
            page += 1

    def task(self, task_id: int) -> dict[str, Any]:
        return self.request("GET", f"/api/tasks/{task_id}/")

    def delete_task(self, task_id: int) -> None:
        """Delete a task; one already gone is not an error."""
        try:
            self.request("DELETE", f"/api/tasks/{task_id}/")
        except LabelStudioError as e:
            if e.status != 404:
                raise

    def users(self) -> list[dict[str, Any]]:
        data = self.request("GET", "/api/users/", params={"page_size": 1000})
        return data.get("results", []) if isinstance(data, dict) else data

    def webhooks(self, project_id: int) -> list[dict[str, Any]]:
        return self.request("GET", "/api/webhooks/", params={"project": project_id})

    def create_webhook(self, **fields: Any) -> dict[str, Any]:
        return self.request("POST", "/api/webhooks/", json=fields)

    def update_webhook(self, webhook_id: int, **fields: Any) -> dict[str, Any]:
        return self.request("PATCH", f"/api/webhooks/{webhook_id}/", json=fields)
