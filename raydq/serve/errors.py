"""Every refusal the service makes, in one shape: ``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}``.

That is FastAPI's 422 shape, used for every 4xx and 5xx the service itself decides, so a client parses one thing.
Error bodies are rendered with ASCII escapes and without the offending input: a request holding NaN, a lone
surrogate or a NUL byte must get a 4xx that names the field, and echoing the input back is how such a request used
to turn into a 500 (the 422 body itself could not be encoded).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from starlette.responses import Response


class ServiceError(Exception):
    """A refused request: HTTP ``status``, the field's location and a message. Nothing was changed.

    ``headers`` travel with the response (``Retry-After`` on a 503, for instance).
    """

    def __init__(
        self,
        status: int,
        loc: Sequence[str | int],
        msg: str,
        type_: str = "value_error",
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, list(loc), msg, type_)
        self.status, self.loc, self.msg, self.type = status, list(loc), msg, type_
        self.headers = dict(headers or {})

    def __str__(self) -> str:
        return f"{'.'.join(map(str, self.loc))}: {self.msg}"

    def to_json(self) -> dict[str, Any]:
        return error_body([(self.loc, self.msg, self.type)])


def unavailable(msg: str, *, retry_after_s: float, loc: Sequence[str | int] = ("service",)) -> ServiceError:
    """503 with ``Retry-After`` (whole seconds, at least 1): the service cannot answer now but will soon."""
    seconds = max(1, math.ceil(retry_after_s))
    return ServiceError(503, loc, msg, "unavailable", headers={"Retry-After": str(seconds)})


def error_body(items: Iterable[tuple[Sequence[str | int], str, str]]) -> dict[str, Any]:
    return {"detail": [{"loc": [_safe_loc(p) for p in loc], "msg": str(msg), "type": str(t)} for loc, msg, t in items]}


def _safe_loc(part: Any) -> str | int:
    return part if isinstance(part, int) and not isinstance(part, bool) else str(part)


def validation_items(errors: Iterable[dict[str, Any]]) -> list[tuple[list[str | int], str, str]]:
    """pydantic / FastAPI validation errors as (loc, msg, type), without ``input`` and ``ctx`` (they may hold NaN,
    lone surrogates or megabytes of the request)."""
    return [(list(e.get("loc", ())), str(e.get("msg", "invalid")), str(e.get("type", "value_error"))) for e in errors]


def json_bytes(body: Any) -> bytes:
    """JSON that always encodes: ASCII escapes (lone surrogates become ``\\ud800``), NaN refused as a bug."""
    return json.dumps(body, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


class SafeJSONResponse(Response):
    """A JSON response whose body always encodes (see ``json_bytes``)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json_bytes(content)


def error_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> SafeJSONResponse:
    return SafeJSONResponse(body, status_code=status, headers=headers)
