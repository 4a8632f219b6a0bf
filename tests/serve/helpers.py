"""Helpers shared by the labeling-service tests (fixtures are in conftest.py)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np

CLASSES = ["circle", "square", "triangle"]
N_ITEMS = 240
DIM = 16


def service_args(embeddings: Path, database_url: str, strategies: tuple[str, str], **overrides):
    """ServeArgs for tests: small limits, quick retraining, no token unless given."""
    from raydq.serve.config import ServeArgs

    values = {
        "embeddings": str(embeddings),
        "database_url": database_url,
        "default_strategy": strategies[0],
        "cold_start": strategies[1],
        "retrain_delay_s": 0.05,
        "api_token_env": None,
        "max_batch_size": 64,
        "max_labels_per_request": 100,
        "max_body_bytes": 64 * 1024,
        "head_params": {"max_epochs": 60},
        # small CPU requests: the session's Ray has 2 CPUs, shared with whatever other test modules left running
        "api_num_cpus": 0.05,
        "selector_num_cpus": 0.1,
        "trainer_num_cpus": 0.1,
    }
    values.update(overrides)
    return ServeArgs.model_validate(values)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_store(directory: Path, *, n: int = N_ITEMS, dim: int = DIM, seed: int = 0) -> Path:
    """A separable 3-class embedding store written the way the embed job writes one (Parquet + manifest)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from raydq.pool.store import Manifest, write_manifest

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(CLASSES), dim)) * 4
    labels = rng.integers(0, len(CLASSES), n)
    X = (centers[labels] + rng.normal(size=(n, dim))).astype(np.float32)
    ids = [f"img-{i:05d}" for i in range(n)]
    directory.mkdir(parents=True, exist_ok=True)
    half = n // 2
    for part, sl in enumerate((slice(0, half), slice(half, n))):
        table = pa.table(
            {
                "id": ids[sl],
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(X[sl].ravel()), dim),
                "uri": [f"file:///images/{i}.png" for i in ids[sl]],
                "label": labels[sl],
            }
        )
        pq.write_table(table, directory / f"part-{part}.parquet")
    write_manifest(
        directory, Manifest(model="synthetic", weights="none", dim=dim, num_rows=n, class_names=list(CLASSES))
    )
    return directory


def wait_for(predicate, *, timeout: float = 60.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


def open_selection(args):
    """A ``SelectionService`` on ``args`` with its pool in this process (what a Selector replica holds)."""
    from raydq.labels import LabelStore
    from raydq.serve.builder import open_pool
    from raydq.serve.selection import SelectionService

    return SelectionService(args, store=LabelStore(args.database_url), pool=open_pool(args, use_actors=False))


def select_now(service, req, *, caller=None):
    """One selection, synchronously, as an anonymous admin unless ``caller`` is given."""
    import asyncio

    from raydq.serve.identity import ANONYMOUS_ADMIN
    from raydq.serve.snapshots import HeadSnapshot

    return asyncio.run(service.select_batch(req, HeadSnapshot(), caller=caller or ANONYMOUS_ADMIN))
