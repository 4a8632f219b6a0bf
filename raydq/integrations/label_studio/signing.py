"""Signed image URLs: Label Studio's pages load images with plain ``<img src>`` (no bearer header), so the
connector hands out URLs that carry an HMAC of the item and size; only URLs it made are served."""

from __future__ import annotations

import hashlib
import hmac


def sign_image(key: bytes, item_id: str, size: int) -> str:
    return hmac.new(key, f"{item_id}\n{size}".encode(), hashlib.sha256).hexdigest()


def verify_image(key: bytes, item_id: str, size: int, signature: str) -> bool:
    return hmac.compare_digest(sign_image(key, item_id, size), signature)
