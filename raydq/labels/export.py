"""Label export: the opaque page cursor and the JSONL / CSV writers (``python -m raydq.admin export`` and the
service's ``GET /labels`` write the same rows)."""

from __future__ import annotations

import base64
import binascii
import csv
import json
from collections.abc import Iterable
from typing import IO, Literal

from raydq.labels.errors import InvalidField
from raydq.labels.schemas import ExportRow

Format = Literal["jsonl", "csv"]
FORMATS: tuple[str, ...] = ("jsonl", "csv")
COLUMNS = tuple(ExportRow.model_fields)
MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv"}


def encode_cursor(revision: int, item_id: str | None) -> str:
    """The position after row (revision, item_id), or after all of ``revision`` when ``item_id`` is None, as
    URL-safe text."""
    raw = json.dumps([revision, item_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str | None]:
    """The position of a cursor from ``encode_cursor``; ``InvalidField`` at ``cursor`` otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        revision, item_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise InvalidField(("cursor",), "not a cursor returned by a previous page") from None
    if (
        not isinstance(revision, int)
        or isinstance(revision, bool)
        or revision < 0
        or not (item_id is None or isinstance(item_id, str))
    ):
        raise InvalidField(("cursor",), "not a cursor returned by a previous page")
    return revision, item_id


def row_dict(row: ExportRow) -> dict:
    return row.model_dump(mode="json")


def write_jsonl(rows: Iterable[ExportRow], out: IO[str]) -> int:
    """One JSON object per line; returns how many rows were written."""
    n = 0
    for row in rows:
        out.write(json.dumps(row_dict(row), ensure_ascii=False) + "\n")
        n += 1
    return n


def write_csv(rows: Iterable[ExportRow], out: IO[str]) -> int:
    """A header line, then one row per answer (empty cell for None); returns how many rows were written."""
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    n = 0
    for row in rows:
        writer.writerow(row_dict(row))
        n += 1
    return n


def write_rows(rows: Iterable[ExportRow], out: IO[str], fmt: Format) -> int:
    if fmt == "jsonl":
        return write_jsonl(rows, out)
    if fmt == "csv":
        return write_csv(rows, out)
    raise InvalidField(("format",), f"must be one of {list(FORMATS)}")
