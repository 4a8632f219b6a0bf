"""Plain pydantic schemas of the label store, split by direction (what comes in, what goes out)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from raydq.labels.text import unstorable

Kind = Literal["label", "skip"]
MAX_ID, MAX_LABEL, MAX_REASON, MAX_NAME = 1024, 256, 1024, 256


class LabelIn(BaseModel):
    """One answer as an annotator sends it: a pool id and a class name, or ``skip`` with an optional reason (an
    item nobody can label: it is never selected again and never trained on). ``annotator`` is set by the service
    (an admin import); otherwise the store records the caller."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=MAX_ID, description="pool item id (as returned by select_batch)")
    label: str | None = Field(
        default=None, min_length=1, max_length=MAX_LABEL, description="class name; omitted for a skip"
    )
    skip: bool = Field(default=False, description="true: the item cannot be labeled (no label)")
    reason: str | None = Field(default=None, max_length=MAX_REASON, description="why it was skipped (skips only)")
    annotator: str | None = Field(
        default=None, max_length=MAX_NAME, description="who answered; default: the caller (admin imports only)"
    )

    @field_validator("id", "label", "reason", "annotator")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        why = None if value is None else unstorable(value)
        if why is not None:
            raise ValueError(why)
        return value

    @model_validator(mode="after")
    def _label_or_skip(self) -> LabelIn:
        if self.skip:
            if self.label is not None:
                raise ValueError("a skip carries no label")
        else:
            if self.label is None:
                raise ValueError("label is required unless skip is true")
            if self.reason is not None:
                raise ValueError("reason is for skips only")
        return self

    @property
    def kind(self) -> Kind:
        return "skip" if self.skip else "label"


class LeaseReport(BaseModel):
    """Labels stored although their lease did not cover them (a label is never refused for a lease reason)."""

    expired: list[str] = Field(
        default_factory=list, description="items of the named batch whose lease had ended (expired or released)"
    )
    other_batch: list[str] = Field(default_factory=list, description="items leased by another batch of this caller")
    other_caller: list[str] = Field(default_factory=list, description="items leased by another caller's batch")
    not_in_batch: list[str] = Field(default_factory=list, description="items the named batch never handed out")

    @property
    def count(self) -> int:
        return len(self.expired) + len(self.other_batch) + len(self.other_caller) + len(self.not_in_batch)


class LabelCounts(BaseModel):
    """What one all-or-nothing label update did."""

    received: int
    created: int = Field(description="items answered for the first time")
    updated: int = Field(description="items whose answer changed (the old one stays in the history)")
    unchanged: int = Field(description="items that already had exactly this answer (idempotent repeats)")
    skipped: int = Field(description="answers in this update that are skips")
    revision: int = Field(description="label revision after the commit; it rises whenever an answer changes")
    labeled: int = Field(description="items with a label (not skips) in the store after the commit")
    lease: LeaseReport = Field(default_factory=LeaseReport)


class LabelChange(NamedTuple):
    """An item's answer as of ``revision``; ``label`` None means the item is skipped."""

    item_id: str
    label: str | None
    revision: int

    @property
    def skipped(self) -> bool:
        return self.label is None


class LabelSnapshot(NamedTuple):
    """Every label (skips excluded) and the revision they are the state of, read in one statement."""

    revision: int
    labels: dict[str, str]


class LabelPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    item_id: str
    kind: Kind
    label: str | None
    reason: str | None
    annotator: str | None
    created_at: datetime
    updated_at: datetime
    revision: int


class LabelEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    item_id: str
    kind: Kind
    label: str | None
    reason: str | None
    previous_label: str | None
    annotator: str | None
    batch_id: str | None
    created_at: datetime
    revision: int


class ExportRow(BaseModel):
    """One current answer in an export; skips are included and flagged (``kind='skip'``, no label), so a consumer
    that pulls incrementally learns that an item it had a label for was withdrawn."""

    item_id: str
    kind: Kind
    label: str | None
    reason: str | None
    annotator: str | None
    revision: int
    updated_at: datetime


class BatchPublic(BaseModel):
    batch_id: str
    owner: str | None = Field(description="the caller that selected it (None: made before owners were recorded)")
    created_at: datetime
    expires_at: datetime
    released_at: datetime | None
    strategy: str
    model_version: int
    size: int
    leased_ids: list[str] = Field(description="items of the batch still leased (not labeled, not released)")


class HeadPublic(BaseModel):
    """A stored head: ``payload`` is ``LinearHead.to_dict()``; ``sane`` False with a ``reason`` when it failed the
    trainer's sanity check (such a head is kept for the record, never served)."""

    version: int
    revision: int
    n_labels: int
    classes: list[str]
    created_at: datetime
    sane: bool
    reason: str | None
    payload: dict[str, Any]


class TokenPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    role: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class NewToken(BaseModel):
    """A token as created: the secret is shown once and never stored."""

    name: str
    role: str
    token: str = Field(repr=False)
    expires_at: datetime | None


class AuditPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    caller: str
    role: str
    action: str
    request_id: str | None
    batch_id: str | None
    detail: dict[str, Any]
