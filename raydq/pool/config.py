"""``PoolConfig``: how a pool is split into shards, where the shards live, and how long a request waits for one."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class PoolConfig(BaseModel):
    """Settings of a ``ShardedPool``. Give ``shards`` (how many to split the pool into when it is opened) or
    ``rows_per_shard``; either way the shard size is fixed at open, and rows appended later fill the last shard up
    to that size and then go to new shards."""

    model_config = ConfigDict(extra="forbid")

    shards: int | None = Field(None, ge=1, le=4096, description="shard count at open (default 1 unless rows_per_shard)")
    rows_per_shard: int | None = Field(None, ge=1, description="rows per shard (instead of shards)")
    dtype: Literal["float16", "float32"] = Field(
        "float16", description="in-memory embedding dtype (float16 halves memory; arithmetic runs in float32 chunks)"
    )
    use_actors: bool = Field(True, description="one Ray actor per shard; False: every shard in this process")
    num_cpus: float = Field(1.0, ge=0, description="CPUs each shard actor reserves")
    num_gpus: float | None = Field(None, ge=0, description="GPUs each shard actor reserves")
    memory: int | None = Field(None, ge=0, description="bytes of memory each shard actor reserves (None: none)")
    resources: dict[str, float] = Field(default_factory=dict, description="custom Ray resources per shard actor")
    placement: Literal["spread", "default"] = Field(
        "spread", description="spread: shard actors on distinct nodes where possible (Ray's SPREAD scheduling)"
    )
    threads_per_shard: int | None = Field(
        None,
        ge=1,
        description="row threads of a shard's kernels (default: an actor's CPU allotment, else every core)",
    )
    ready_timeout_s: float = Field(
        60.0, gt=0, description="how long a request waits for a restarting shard before PoolUnavailable"
    )
    load_timeout_s: float = Field(600.0, gt=0, description="how long open/refresh wait for new shards to load")
    poll_interval_s: float = Field(
        60.0, gt=0, description="how often the service calls refresh() to pick up growth (the pool starts no thread)"
    )
    storage_options: dict[str, Any] | None = Field(
        None, description="pyarrow S3FileSystem/GcsFileSystem keyword arguments (endpoint_override, region, ...)"
    )

    @model_validator(mode="after")
    def _one_size(self) -> PoolConfig:
        if self.shards is not None and self.rows_per_shard is not None:
            raise ValueError("give shards or rows_per_shard, not both")
        return self

    def shard_rows(self, n_rows: int) -> int:
        """The fixed shard size for a pool opened with ``n_rows`` rows."""
        if self.rows_per_shard is not None:
            return self.rows_per_shard
        return max(1, math.ceil(n_rows / (self.shards or 1)))
