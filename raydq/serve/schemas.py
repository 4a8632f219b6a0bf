"""HTTP request and response models of the labeling service (the OpenAPI schema is generated from these).

Requests are strict: no coercion of ``"5"`` to 5 or of ``true`` to 1, unknown fields refused, numbers finite
(NaN and Infinity are a 422, not a float that poisons arithmetic), and every text field is ``Text``: valid Unicode
without NUL or other control characters (lone surrogates cannot be stored or even echoed back, and PostgreSQL
refuses NUL). Constraints sit on the branch they constrain (``Annotated[float, Field(gt=0)] | None``), so the
published schema carries them where validators look.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, model_validator

from raydq.labels.schemas import BatchPublic

_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
_CONTROL = {chr(c) for c in range(32)} - {"\t", "\n", "\r"} | {"\x7f"}


def _clean_text(value: str) -> str:
    if any(ch in _CONTROL for ch in value):
        raise ValueError("must not contain NUL or other control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (a lone surrogate is not)") from None
    return value


Text = Annotated[str, Field(strict=True), AfterValidator(_clean_text)]
ItemId = Annotated[Text, Field(min_length=1, max_length=1024, description="pool item id (as select_batch returns)")]
ClassName = Annotated[Text, Field(min_length=1, max_length=256, description="one of the configured classes")]
BatchId = Annotated[Text, Field(min_length=1, max_length=64)]
RequestId = Annotated[
    Text,
    Field(
        min_length=1,
        max_length=128,
        description="idempotency key (the Idempotency-Key header does the same): a retry returns the first answer",
    ),
]
LeaseSeconds = Annotated[float, Field(ge=1, le=365 * 86400, description="lease length in seconds (at least one)")]
OptionValue = StrictBool | StrictInt | StrictFloat | Text | None


# -- select_batch -----------------------------------------------------------------------------------------------
class SelectBatchRequest(BaseModel):
    model_config = _STRICT

    batch_size: StrictInt = Field(ge=1, le=1_000_000, description="items to lease (at most max_batch_size)")
    strategy: Annotated[Text, Field(min_length=1, max_length=64)] | None = Field(
        default=None, description="strategy name (GET /strategies lists them with their options)"
    )
    options: dict[Annotated[Text, Field(max_length=64)], OptionValue] = Field(
        default_factory=dict,
        max_length=32,
        description="strategy options for this query; each is bounded server-side (see GET /strategies)",
    )
    lease_seconds: LeaseSeconds | None = Field(default=None, description="default: the service's lease_seconds")
    request_id: RequestId | None = None


class Item(BaseModel):
    id: str
    uri: str | None = None


class SelectBatchResponse(BaseModel):
    batch_id: str
    items: list[Item]
    model_version: int = Field(description="version of the head the selection used (0: none yet)")
    strategy: str = Field(description="strategy actually run (the cold start while there is no head)")
    lease_expires_at: datetime
    selection: dict[str, int | float | str | bool] = Field(
        default_factory=dict,
        description="how the batch was chosen: DropQuery's threshold and candidates, or sampled_rows when a "
        "whole-pool strategy ran on a uniform sample of a large pool",
    )


# -- update_labels ----------------------------------------------------------------------------------------------
class LabelAnswer(BaseModel):
    """One answer: a class (``label``), or ``skip: true`` with an optional ``reason`` for an item that cannot be
    labeled (ambiguous, broken image). ``annotator`` may be given only with an admin token (imports)."""

    model_config = _STRICT

    id: ItemId
    label: ClassName | None = None
    skip: StrictBool = False
    reason: Annotated[Text, Field(max_length=1024)] | None = None
    annotator: Annotated[Text, Field(min_length=1, max_length=256)] | None = Field(
        default=None, description="who labeled it; only an admin token may set it (imports from other tools)"
    )

    @model_validator(mode="after")
    def _label_xor_skip(self) -> LabelAnswer:
        if self.skip and self.label is not None:
            raise ValueError("give either a label or skip: true, not both")
        if not self.skip and self.label is None:
            raise ValueError("label is required unless skip is true")
        if self.reason is not None and not self.skip:
            raise ValueError("reason is only for skip answers")
        return self


class UpdateLabelsRequest(BaseModel):
    model_config = _STRICT

    labels: list[LabelAnswer] = Field(min_length=1, max_length=1_000_000)
    batch_id: BatchId | None = None
    request_id: RequestId | None = None


class LeaseNote(BaseModel):
    id: str
    reason: Literal["expired", "other_batch", "other_annotator", "not_leased"] = Field(
        description="the label was stored; the item's lease was not the caller's live lease in this batch"
    )


class UpdateLabelsResponse(BaseModel):
    received: int
    created: int
    updated: int
    unchanged: int
    skipped: int = Field(default=0, description="skip answers stored")
    labeled: int = Field(description="labeled items in the store after this update")
    revision: int = Field(description="label revision after this update")
    model_version: int = Field(description="current head version (the retrain this update triggers comes later)")
    lease_notes: list[LeaseNote] = Field(default_factory=list)
    trainer: Literal["notified", "unreachable"] = Field(
        default="notified", description="unreachable: the labels are stored; training catches up when it is back"
    )


# -- batches ----------------------------------------------------------------------------------------------------
class ReleaseBatchRequest(BaseModel):
    model_config = _STRICT

    batch_id: BatchId


class ReleaseBatchResponse(BaseModel):
    batch_id: str
    released: int = Field(description="leases ended now (items already labeled or expired are not counted)")


class RenewBatchRequest(BaseModel):
    model_config = _STRICT

    batch_id: BatchId
    lease_seconds: LeaseSeconds | None = Field(default=None, description="new lease from now (default: service's)")


class RenewBatchResponse(BaseModel):
    batch_id: str
    renewed: int = Field(description="items whose lease now runs to lease_expires_at")
    lease_expires_at: datetime


class BatchList(BaseModel):
    batches: list[BatchPublic] = Field(description="open batches: their items still leased are leased_ids")


# -- items ------------------------------------------------------------------------------------------------------
class LabelEventOut(BaseModel):
    label: str | None
    previous_label: str | None
    skipped: bool = False
    reason: str | None = None
    annotator: str | None
    batch_id: str | None
    created_at: datetime
    revision: int


class ItemResponse(BaseModel):
    id: str
    uri: str | None
    row: int = Field(description="the item's row in the pool")
    label: str | None = Field(description="current label (null when unlabeled or skipped)")
    skipped: bool = False
    annotator: str | None = None
    labeled_at: datetime | None = None
    leased: bool = False
    history: list[LabelEventOut] = Field(default_factory=list)


# -- status, model, health --------------------------------------------------------------------------------------
class TrainingStatus(BaseModel):
    state: str = Field(description="idle | scheduled | training | backoff")
    model_version: int
    trained_revision: int = Field(description="label revision the served head was trained on (-1: none)")
    n_labels: int = Field(description="labels the served head was trained on")
    trained_at: datetime | None = None
    last_error: str | None = Field(default=None, description="why the most recent training failed, if it did")
    last_error_at: datetime | None = None
    failures: int = 0
    rejected: str | None = Field(default=None, description="why the newest trained head was not served, if it was not")
    pinned_version: int | None = Field(default=None, description="an admin pinned this version")
    next_retry_s: float | None = None


class PoolStatus(BaseModel):
    rows: int
    dim: int
    dtype: str = Field(description="how the shards hold the embeddings (float16 halves the memory)")
    shards: int
    store_version: str = Field(description="changes when embeddings are added to the store")
    generation: int = Field(description="how many times the store was rewritten (rows renumbered) while serving")
    location: str
    state: str = Field(description="ready | degraded (a shard is restarting)")
    detail: list[dict[str, Any]] = Field(default_factory=list, description="per shard: rows, node, state")


class StatusResponse(BaseModel):
    pool_size: int
    dim: int
    labeled: int
    skipped: int = 0
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
    auth: str = Field(description="tokens | shared-token | anonymous")
    pool: PoolStatus | None = None
    selections: dict[str, int] = Field(
        default_factory=dict,
        description="selections since start: completed, refused (4xx/5xx), timed_out, cancelled; running, queued now",
    )
    sampled_strategies: dict[str, int] = Field(
        default_factory=dict, description="whole-pool strategies that run on a uniform sample of this many rows"
    )


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


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str]


# -- admin ------------------------------------------------------------------------------------------------------
class PinHeadRequest(BaseModel):
    model_config = _STRICT

    version: StrictInt | None = Field(ge=1, le=2**31 - 1, description="serve this stored version; null: unpin")


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    detail: list[ErrorDetail]
