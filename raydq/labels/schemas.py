"""Plain pydantic schemas of the label store, split by direction (what comes in, what goes out)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class LabelIn(BaseModel):
    """One label as an annotator sends it: a pool id and a class name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=1024, description="pool item id (as returned by select_batch)")
    label: str = Field(min_length=1, max_length=256, description="class name, one of the configured classes")
    annotator: str | None = Field(default=None, max_length=256, description="who labeled it (kept in history)")


class LabelCounts(BaseModel):
    """What one all-or-nothing label update did."""

    received: int
    created: int = Field(description="items labeled for the first time")
    updated: int = Field(description="items whose label changed (the old one stays in the history)")
    unchanged: int = Field(description="items that already had exactly this label (idempotent repeats)")
    revision: int = Field(description="label revision after the commit; it rises whenever a label changes")
    labeled: int = Field(description="labeled items in the store after the commit")


class LabelPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    item_id: str
    label: str
    annotator: str | None
    created_at: datetime
    updated_at: datetime
    revision: int


class LabelEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    item_id: str
    label: str
    previous_label: str | None
    annotator: str | None
    batch_id: str | None
    created_at: datetime
    revision: int


class BatchPublic(BaseModel):
    batch_id: str
    created_at: datetime
    expires_at: datetime
    released_at: datetime | None
    strategy: str
    model_version: int
    size: int
    leased_ids: list[str] = Field(description="items of the batch still leased (not labeled, not released)")


class HeadPublic(BaseModel):
    """A stored head: ``payload`` is ``LinearHead.to_dict()``."""

    version: int
    revision: int
    n_labels: int
    classes: list[str]
    created_at: datetime
    payload: dict
