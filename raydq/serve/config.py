"""``ServeArgs``: the typed arguments of the labeling service (what a Serve config's ``args:`` holds).

Strings may name environment variables as ``${VAR}``; they are expanded where the service runs (in the replicas, so
a cluster's pods supply them), never in the config file. The API token is never an argument: it comes from the
environment variable named by ``api_token_env`` or the file named by ``api_token_file`` (a mounted secret).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from raydq.pool import PoolConfig

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class OptionPolicy(BaseModel):
    """What the operator allows requests to do with one strategy's options."""

    model_config = ConfigDict(extra="forbid")

    forbid: list[str] = Field(default_factory=list, description="options a request may not set")
    bounds: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="tighter bounds, e.g. {n_init: {le: 3}}; keys ge, le"
    )
    allow_override: list[str] = Field(
        default_factory=list, description="strategy_params a request may override (none by default)"
    )

    @field_validator("bounds")
    @classmethod
    def _bound_keys(cls, v: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for name, bound in v.items():
            if not bound or set(bound) - {"ge", "le"}:
                raise ValueError(f"bounds.{name}: give ge and/or le")
        return v


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: str, *, field: str) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` from the environment; a clear error naming the field when a
    variable without a default is unset."""

    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        got = os.environ.get(name)
        if got:
            return got
        if default is not None:
            return default
        raise ValueError(f"{field}: environment variable {name} is not set (needed by {value!r})")

    return _ENV_REF.sub(sub, value)


class ServeArgs(BaseModel):
    """Everything the labeling service needs, validated once by the app builder."""

    model_config = ConfigDict(extra="forbid")

    embeddings: str = Field(description="embedding store: a directory, or a URI pyarrow can read (s3://, gs://)")
    database_url: str = Field(
        default="sqlite:///data/labels.db", description="label store: sqlite:///file.db or postgresql://..."
    )
    classes: list[str] | None = Field(
        default=None, description="class names accepted as labels; default: the embedding manifest's class_names"
    )
    default_strategy: str = Field(default="dropquery", description="strategy when a request names none")
    cold_start: str = Field(default="centroid", description="strategy while there is no trained head")
    strategy_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="constructor parameters per strategy name"
    )
    head_params: dict[str, Any] = Field(default_factory=dict, description="LinearHead parameters (not n_classes)")
    lease_seconds: float = Field(default=1800.0, ge=1, description="default lease of a selected batch")
    max_lease_seconds: float = Field(default=7 * 86400.0, ge=1)
    max_batch_size: int = Field(default=1000, ge=1)
    max_labels_per_request: int = Field(default=1000, ge=1)
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    api_token_env: str | None = Field(default="RAYDQ_API_TOKEN", description="env var holding the bearer token")
    api_token_file: str | None = Field(default=None, description="file holding the bearer token (a mounted secret)")
    seed: int | None = Field(default=0, description="seeds selection and training; None for fresh randomness")
    retrain_delay_s: float = Field(default=0.5, ge=0, description="wait this long after a label change to coalesce")
    min_train_accuracy: float = Field(
        default=0.5, ge=0, le=1, description="a head below this accuracy on its own training set is not served"
    )
    select_timeout_s: float = Field(
        default=60.0, gt=0, le=3600, description="a selection past this budget stops and the client gets 504"
    )
    max_queued_selections: int = Field(
        default=64, ge=1, le=10_000, description="selections waiting beyond this many get 503 with Retry-After"
    )
    option_policy: dict[str, OptionPolicy] = Field(
        default_factory=dict,
        description="per strategy: options requests may not set, tighter bounds, operator settings they may override",
    )
    skip_excludes: bool = Field(default=True, description="items answered with skip are never selected again")
    allow_anonymous: bool = Field(
        default=False, description="serve without any token on a non-loopback address (otherwise refused)"
    )
    lease_purge_interval_s: float = Field(
        default=300.0, gt=0, description="how often expired leases (and idempotency records) are deleted"
    )
    idempotency_retention_s: float = Field(
        default=7 * 86400.0,
        gt=0,
        description="how long a request's answer is kept for replay under its idempotency key; a retry after that "
        "is a new request",
    )
    pool: PoolConfig = Field(
        default_factory=lambda: PoolConfig(num_cpus=0.5),
        description="how the pool is split over shard actors (default: one float16 shard actor)",
    )
    api_replicas: int = Field(default=1, ge=1)
    api_num_cpus: float = Field(default=0.1, ge=0)
    selector_num_cpus: float = Field(default=0.25, ge=0)
    trainer_num_cpus: float = Field(default=0.25, ge=0)

    @field_validator("classes")
    @classmethod
    def _classes_distinct(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            if not v:
                raise ValueError("classes must not be empty")
            if len(set(v)) != len(v) or any(not c for c in v):
                raise ValueError("classes must be distinct non-empty names")
        return v

    @field_validator("head_params")
    @classmethod
    def _head_params_valid(cls, v: dict[str, Any]) -> dict[str, Any]:
        """Checked when the service starts, not at the first training: a bad value names itself here."""
        from raydq.head import LinearHead

        try:
            return LinearHead.check_params(v)
        except ValueError as e:
            raise ValueError(f"head_params: {e}") from None

    @model_validator(mode="after")
    def _lease_bounds(self) -> ServeArgs:
        if self.lease_seconds > self.max_lease_seconds:
            raise ValueError("lease_seconds must not exceed max_lease_seconds")
        return self

    def absolutized(self, cwd: str | Path | None = None) -> ServeArgs:
        """Relative local paths (embeddings, an SQLite file) made absolute against ``cwd``, so that replicas with
        another working directory find the same files. ``${VAR}`` values and URIs are left alone."""
        cwd = Path(cwd or os.getcwd())
        update: dict[str, Any] = {}
        if "${" not in self.embeddings and not _SCHEME.match(self.embeddings):
            update["embeddings"] = str((cwd / self.embeddings).resolve())
        prefix = "sqlite:///"
        url = self.database_url
        if url.startswith(prefix) and "${" not in url:
            path = url[len(prefix) :]
            if path and path != ":memory:" and not path.startswith("/"):
                update["database_url"] = prefix + str((cwd / path).resolve())
        return self.model_copy(update=update)

    def resolved_embeddings(self) -> str:
        return expand_env(self.embeddings, field="embeddings")

    def resolved_database_url(self) -> str:
        return expand_env(self.database_url, field="database_url")

    def api_token(self) -> str | None:
        """The bearer token, or None for an open service. The file wins over the environment variable."""
        if self.api_token_file:
            path = Path(expand_env(self.api_token_file, field="api_token_file"))
            token = path.read_text().strip()
            if not token:
                raise ValueError(f"api_token_file: {path} is empty")
            return token
        if self.api_token_env:
            token = os.environ.get(self.api_token_env, "").strip()
            return token or None
        return None
