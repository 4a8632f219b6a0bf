"""The linear head trained on labeled embeddings (ARCHITECTURE §3)."""

from raydq.head.linear import PAPER_HEAD, LinearHead

__all__ = ["PAPER_HEAD", "LinearHead"]
