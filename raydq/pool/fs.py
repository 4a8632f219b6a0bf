"""Where an embedding store lives: a local folder or an object-store URI, opened as one pyarrow filesystem.

A location is a plain string (a path, ``file://``, ``s3://bucket/prefix``, ``gs://bucket/prefix``), so it travels to
shard actors as is. Credentials and endpoints come from the usual environment (``AWS_ACCESS_KEY_ID``,
``AWS_ENDPOINT_URL`` for an S3-compatible server, ``GOOGLE_APPLICATION_CREDENTIALS``, ...), or from
``storage_options``: keyword arguments of pyarrow's ``S3FileSystem`` / ``GcsFileSystem`` (``endpoint_override``,
``access_key``, ``region``, ...), which also travel to the actors.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import pyarrow.fs as pafs

StorageOptions = Mapping[str, Any]

_URI = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://(?P<rest>.*)$")
_GCS = getattr(pafs, "GcsFileSystem", None)  # absent from pyarrow builds without GCS support
_CLASSES = {"s3": pafs.S3FileSystem, "gs": _GCS, "gcs": _GCS}


def is_uri(location: str) -> bool:
    """True for ``scheme://...`` other than ``file://`` (a store on object storage or another remote filesystem)."""
    m = _URI.match(str(location))
    return m is not None and m["scheme"].lower() != "file"


def filesystem_for(location: str, storage_options: StorageOptions | None = None) -> tuple[pafs.FileSystem, str]:
    """``(filesystem, path inside it)`` for a store location; local paths become absolute."""
    location = str(location)
    m = _URI.match(location)
    if m is None or m["scheme"].lower() == "file":
        path = location[len("file://") :] if m is not None else location
        return pafs.LocalFileSystem(), os.path.abspath(path)
    scheme = m["scheme"].lower()
    if storage_options:
        cls = _CLASSES.get(scheme)
        if cls is None:
            raise ValueError(f"storage_options are supported for s3:// and gs:// locations, not {scheme}://")
        return cls(**dict(storage_options)), m["rest"].rstrip("/")
    fs, path = pafs.FileSystem.from_uri(location)
    return fs, path.rstrip("/")


def join(base: str, name: str) -> str:
    """``base/name`` in a filesystem's own separator (pyarrow paths always use ``/``)."""
    return f"{base.rstrip('/')}/{name}"


def read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as f:
        return f.read()


def write_bytes_atomic(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write a whole file so that readers see all of it or none: temporary file, fsync and rename on a local disk;
    one object PUT (atomic by itself) on object storage."""
    if isinstance(fs, pafs.LocalFileSystem):
        head, _, name = path.rpartition("/")
        tmp = f"{head}/.{name}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return
    with fs.open_output_stream(path) as f:
        f.write(data)
