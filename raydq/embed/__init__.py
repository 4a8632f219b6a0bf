"""The embed job: a Ray Data pipeline from images to an embedding store (``run_embed(EmbedConfig(...))``)."""

from raydq.embed.config import EmbedConfig
from raydq.embed.pipeline import EmbedSummary, run_embed

__all__ = ["EmbedConfig", "EmbedSummary", "run_embed"]
