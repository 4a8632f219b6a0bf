"""The embed job's settings: one pydantic model, every field settable by flag and by ``RAYDQ_EMBED_<FIELD>``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ENV_PREFIX = "RAYDQ_EMBED_"
DEFAULT_OUTPUT = "data/embeddings/fashion-mnist-train"
DEFAULT_FASHION_MNIST_LIMIT = 5000


class EmbedConfig(BaseModel):
    """Settings of one embed run. ``EmbedConfig.from_env()`` reads ``RAYDQ_EMBED_<FIELD>`` variables."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    source: str = Field("fashion-mnist", description="fashion-mnist | folder/glob of images | s3://, gs:// URI | "
                        ".parquet file/folder with image bytes")  # fmt: skip
    split: Literal["train", "test"] = Field("train", description="Fashion-MNIST split")
    limit: int | None = Field(
        None, ge=0, description="embed a seeded random subset of this many images (Parquet: the first N rows); "
        f"0 or 'all' for every image; default {DEFAULT_FASHION_MNIST_LIMIT} for fashion-mnist, all otherwise",
    )  # fmt: skip
    seed: int = Field(0, description="seed of the --limit subset")
    output: str | None = Field(
        None, description=f"output folder (default data/embeddings/<source name>, e.g. {DEFAULT_OUTPUT})"
    )
    model: str = Field("efficientnet_lite0", description="encoder spec: efficientnet_lite0 | open_clip:<model>/<tag> | "
                       "open_clip:<model>@<checkpoint> | timm:<name>@<weights file>")  # fmt: skip
    batch_size: int | None = Field(None, ge=1, description="images per forward pass (default: 256 on GPU, 32 on CPU)")
    actors: int | None = Field(
        None, ge=1, description="a fixed pool of this many embedding actors (default: on GPU an autoscaling pool, "
        "see max_actors; on CPU one per core, at most 4)",
    )  # fmt: skip
    max_actors: int | None = Field(
        None, ge=1, description="GPU pools: the most actors the pool grows to as the autoscaler adds GPU nodes "
        "(set it to the GPUs the cluster can reach); it starts with one per GPU present and keeps at least one. "
        "Default: the GPUs present at start",
    )  # fmt: skip
    num_gpus_per_actor: float | None = Field(
        None, ge=0, description="GPUs per actor, fractional allowed (default: 1 when the cluster has GPUs, else 0)"
    )
    cpus_per_actor: float = Field(
        1.0, gt=0, description="logical CPUs each actor reserves (shrunk, fractionally, to leave decode tasks a CPU)"
    )
    torch_threads: int | None = Field(
        None, ge=1, description="intra-op threads per CPU actor (default: the node's cores divided among its actors)"
    )
    decode_cpus: float = Field(1.0, gt=0, description="logical CPUs per read/decode task")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="forward-pass autocast: auto = bf16 on GPUs of compute capability 8.0+ (Ampere and "
        "newer), fp16 on older GPUs, bf16 on a CPU with native bf16, else fp32",
    )
    dtype: Literal["float32", "float16"] = Field("float32", description="stored embedding dtype")
    rows_per_shard: int = Field(4096, ge=1, description="rows per Parquet shard (the unit of crash recovery)")
    image_column: str | None = Field(None, description="Parquet sources: the column of image bytes (auto-detected)")
    id_column: str | None = Field(None, description="Parquet sources: the id column (default 'id'; else content hash)")
    label_column: str | None = Field(None, description="Parquet sources: an integer label column (default 'label')")
    max_pixels: int = Field(100_000_000, ge=1, description="images with more pixels are reported, not decoded")
    overwrite: bool = Field(False, description="delete an existing store at the output instead of resuming it")
    progress: bool = Field(True, description="show a progress bar")

    @field_validator("limit", mode="before")
    @classmethod
    def _limit_none(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().lower() in ("", "none", "all"):
            return 0
        return v

    @field_validator("model")
    @classmethod
    def _model_nonempty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("model must not be empty")
        return v.strip()

    @model_validator(mode="after")
    def _one_pool_size(self) -> EmbedConfig:
        if self.actors is not None and self.max_actors is not None:
            raise ValueError("set actors (a fixed pool) or max_actors (an autoscaling GPU pool), not both")
        return self

    def resolved_limit(self) -> int | None:
        """The number of images to embed, None for all."""
        if self.limit is None:
            return DEFAULT_FASHION_MNIST_LIMIT if self.source == "fashion-mnist" else None
        return self.limit or None

    def resolved_output(self) -> str:
        if self.output:
            return self.output
        if self.source == "fashion-mnist":
            return f"data/embeddings/fashion-mnist-{self.split}"
        return "data/embeddings/" + (self.source.rstrip("/").split("/")[-1].split(".")[0] or "images")

    @classmethod
    def from_env(cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None):
        """Fields from ``RAYDQ_EMBED_<FIELD>`` variables, then ``overrides`` (e.g. parsed flags) on top."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = environ.get(ENV_PREFIX + name.upper())
            if raw is not None:
                values[name] = raw
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return cls.model_validate(values)
