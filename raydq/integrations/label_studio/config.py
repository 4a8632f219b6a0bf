"""``SyncSettings``: the connector's configuration, from the environment (``RAYDQ_LS_<FIELD>``) over a YAML config
file over the defaults. Secrets may come from files (``*_file``: a mounted Kubernetes secret)."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

ENV_PREFIX = "RAYDQ_LS_"


class SyncSettings(BaseSettings):
    """Everything the Label Studio sync job needs; ``python jobs/label_studio.py --help`` prints it."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    label_studio_url: str = Field(description="Label Studio's URL as the connector reaches it")
    label_studio_token: str | None = Field(
        default=None, description="a personal access token (or a legacy token) of a Label Studio admin"
    )
    label_studio_token_file: str | None = Field(default=None, description="file holding label_studio_token")
    project_id: int | None = Field(default=None, ge=1, description="use this existing project")
    project_title: str = Field(default="raydq", min_length=1, description="use or create the project of this title")
    raydq_url: str = Field(description="raydq's URL as the connector reaches it")
    raydq_token: str | None = Field(default=None, description="raydq bearer token (an admin token once roles exist)")
    raydq_token_file: str | None = None
    queue_size: int = Field(default=40, ge=1, le=10_000, description="open tasks kept in Label Studio (at most)")
    batch_size: int = Field(default=10, ge=1, le=1000, description="items per select_batch")
    strategy: str | None = Field(default=None, description="raydq strategy (default: the service's)")
    lease_seconds: float | None = Field(default=None, gt=0, description="lease asked for (default: the service's)")
    renew_before_s: float = Field(default=300.0, ge=0, description="renew a lease this long before it expires")
    poll_interval_s: float = Field(default=10.0, gt=0, le=3600, description="seconds between full syncs")
    state_path: str = Field(default="data/label-studio-sync.db", description="SQLite file of what was synced")
    listen_host: str = Field(default="127.0.0.1", description="address of the webhook and image endpoint")
    listen_port: int | None = Field(default=None, ge=0, le=65535, description="None: no endpoint (polling only)")
    public_url: str | None = Field(
        default=None, description="the connector's endpoint as Label Studio and annotators' browsers reach it"
    )
    webhook_secret: str | None = Field(default=None, min_length=16, description="shared with Label Studio webhooks")
    webhook_secret_file: str | None = None
    image_urls: Literal["proxy", "raydq", "source"] = Field(
        default="proxy",
        description="proxy: signed URLs of this connector, which fetches from raydq with its token; raydq: "
        "raydq_public_url/items/<id>/image (an open service); source: the item's own http(s)/s3/gs URI",
    )
    raydq_public_url: str | None = Field(default=None, description="raydq as browsers reach it (image_urls=raydq)")
    image_size: int = Field(default=512, ge=16, le=1024, description="longest side of the images shown")

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:  # fmt: skip
        return init_settings, env_settings, YamlConfigSettingsSource(settings_cls)  # reads model_config["yaml_file"]

    @classmethod
    def load(cls, config_file: str | None = None, **overrides: Any) -> SyncSettings:
        """Environment over ``config_file`` (YAML, optional) over defaults; ``overrides`` win over both."""
        if config_file and not Path(config_file).is_file():
            raise ValueError(f"config file {config_file} does not exist")
        with_file = type(cls.__name__, (cls,), {"model_config": {**cls.model_config, "yaml_file": config_file}})
        return with_file(**overrides)

    @model_validator(mode="after")
    def _secrets_and_urls(self) -> SyncSettings:
        for name in ("label_studio_token", "raydq_token", "webhook_secret"):
            path = getattr(self, f"{name}_file")
            if path:
                value = Path(path).read_text().strip()
                if not value:
                    raise ValueError(f"{name}_file: {path} is empty")
                object.__setattr__(self, name, value)
        if self.batch_size > self.queue_size:
            raise ValueError(f"batch_size {self.batch_size} exceeds queue_size {self.queue_size}")
        if not self.label_studio_token:
            raise ValueError("label_studio_token (or label_studio_token_file) is required")
        if self.image_urls == "proxy" and (self.listen_port is None or not self.public_url):
            raise ValueError("image_urls=proxy needs listen_port and public_url (the connector serves the images)")
        if self.image_urls == "raydq" and not self.raydq_public_url:
            raise ValueError("image_urls=raydq needs raydq_public_url")
        if self.listen_port is not None and not self.webhook_secret:
            raise ValueError("listen_port needs webhook_secret (it authenticates webhooks and signs image URLs)")
        return self

    def signing_key(self) -> bytes:
        """The image-URL signing key, derived from the webhook secret (one secret to configure, two uses)."""
        secret = (self.webhook_secret or "").encode()
        return hmac.new(secret, b"raydq label-studio image urls", hashlib.sha256).digest()
