"""One error type for refusals the service decides itself (beyond pydantic's), rendered like FastAPI's 422s:
``{"detail": [{"loc": ["body", "labels", 3, "id"], "msg": ..., "type": ...}]}``."""

from __future__ import annotations

from collections.abc import Sequence


class ServiceError(Exception):
    """A refused request: HTTP ``status``, the field's location and a message. Nothing was changed."""

    def __init__(self, status: int, loc: Sequence[str | int], msg: str, type_: str = "value_error") -> None:
        super().__init__(status, list(loc), msg, type_)
        self.status, self.loc, self.msg, self.type = status, list(loc), msg, type_

    def __str__(self) -> str:
        return f"{'.'.join(map(str, self.loc))}: {self.msg}"

    def to_json(self) -> dict:
        return {"detail": [{"loc": self.loc, "msg": self.msg, "type": self.type}]}
