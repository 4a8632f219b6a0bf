"""The linear head trained on labeled embeddings (ARCHITECTURE §3)."""

from raydq.head.linear import LinearHead

__all__ = ["LinearHead"]
