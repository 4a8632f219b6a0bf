"""HTTP request and response models of the labeling service (the OpenAPI schema is generated from these).

Requests are strict (no coercion of ``"5"`` to 5 or of ``true`` to 1) and refuse unknown fields, so a client's typo is
a 422 naming the field rather than a silently ignored option.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from raydq.labels.schemas import LabelIn

_STRICT = ConfigDict(extra="forbid", strict=True)
JsonScalar = StrictStr | StrictInt | StrictFloat | bool | None


class SelectBatchRequest(BaseModel):
    model_config = _STRICT

    batch_size: StrictInt = Field(ge=1, le=1_000_000, description="items to lease (at most max_batch_size)")
    strategy: StrictStr | None = Field(default=None, min_length=1, max_length=64, description="strategy name")
    options: dict[StrictStr, JsonScalar] = Field(
        default_factory=dict, max_length=32, description="strategy constructor parameters for this query"
    )
    lease_seconds: StrictInt | StrictFloat | None = Field(
        default=None, gt=0, le=365 * 86400, description="lease length (default: the service's lease_seconds)"
    )


class Item(BaseModel):
    id: str
    uri: str | None = None


class SelectBatchResponse(BaseModel):
    batch_id: str
    items: list[Item]
    model_version: int = Field(description="version of the head the selection used (0: none yet)")
    strategy: str = Field(description="strategy actually run (the cold start while there is no head)")
    lease_expires_at: datetime


class UpdateLabelsRequest(BaseModel):
    model_config = _STRICT

    labels: list[LabelIn] = Field(min_length=1, max_length=1_000_000)
    batch_id: StrictStr | None = Field(default=None, min_length=1, max_length=64)


class UpdateLabelsResponse(BaseModel):
    received: int
    created: int
    updated: int
    unchanged: int
    labeled: int = Field(description="labeled items in the store after this update")
    revision: int = Field(description="label revision after this update")
    model_version: int = Field(description="current head version (the retrain this update triggers comes later)")


class ReleaseBatchRequest(BaseModel):
    model_config = _STRICT

    batch_id: StrictStr = Field(min_length=1, max_length=64)


class ReleaseBatchResponse(BaseModel):
    batch_id: str
    released: int = Field(description="leases ended now (items already labeled or expired are not counted)")


class TrainingStatus(BaseModel):
    state: str = Field(description="idle | scheduled | training")
    model_version: int
    trained_revision: int = Field(description="label revision the current head was trained on (-1: none)")
    n_labels: int = Field(description="labels the current head was trained on")
    trained_at: datetime | None = None
    last_error: str | None = Field(default=None, description="why the most recent training failed, if it did")
    last_error_at: datetime | None = None
    failures: int = 0


class StatusResponse(BaseModel):
    pool_size: int
    dim: int
    labeled: int
    leased: int
    unlabeled_available: int
    classes: list[str]
    revision: int
    model_version: int
    training: TrainingStatus
    kmeans_backend: str
    strategies: list[str]
    default_strategy: str
    cold_start: str
    database: str = Field(description="sqlite or postgresql")
    embedding_model: str | None = None


class ModelResponse(BaseModel):
    model_version: int
    classes: list[str]
    revision: int = Field(description="label revision the head was trained on")
    n_labels: int
    trained_at: datetime | None
    W: list[list[float]] | None = Field(description="(dim, n_classes): logits = X @ W + b (eval mode, folded)")
    b: list[float] | None
    head: dict[str, Any] | None = Field(description="LinearHead.to_dict(); null before the first training")


class Health(BaseModel):
    status: str


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    detail: list[ErrorDetail] | str
