"""The embedding actor: a Ray Data callable class that loads the encoder once and embeds batches."""

from __future__ import annotations

import numpy as np


class EmbedActor:
    """``__init__`` builds the encoder (once per actor); ``__call__`` adds an ``embedding`` column and drops the
    images. Rows whose decode failed (``error`` set) pass through with a zero embedding, so the driver can report
    them; the model never sees them."""

    def __init__(
        self, spec: str, *, device: str = "cpu", torch_threads: int | None = None, precision: str = "fp32"
    ) -> None:
        import torch

        if torch_threads:
            torch.set_num_threads(torch_threads)
        from raydq.models import create_encoder

        self.encoder = create_encoder(spec, device=device, precision=precision)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        errors = batch["error"]
        ok = np.fromiter((not e for e in errors), dtype=bool, count=len(errors))
        embeddings = np.zeros((len(errors), self.encoder.dim), dtype=np.float32)
        if ok.any():
            images = batch["image"] if ok.all() else batch["image"][ok]
            embeddings[ok] = self.encoder.encode(images)
        return {
            "id": batch["id"],
            "uri": batch["uri"],
            "label": batch["label"],
            "error": errors,
            "embedding": embeddings,
        }
