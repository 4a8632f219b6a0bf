"""The label store: labels, their history, leases and trained heads in SQL (SQLite file or PostgreSQL)."""

from raydq.labels.crud import LeaseConflict
from raydq.labels.db import Database, connect, normalise_url
from raydq.labels.schemas import BatchPublic, HeadPublic, LabelCounts, LabelEventPublic, LabelIn, LabelPublic
from raydq.labels.store import LabelStore

__all__ = [
    "BatchPublic",
    "Database",
    "HeadPublic",
    "LabelCounts",
    "LabelEventPublic",
    "LabelIn",
    "LabelPublic",
    "LabelStore",
    "LeaseConflict",
    "connect",
    "normalise_url",
]
