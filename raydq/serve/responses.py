"""Turning service state into response models (shared by the in-process app and the Serve deployments)."""

from __future__ import annotations

from raydq.serve.schemas import ModelResponse
from raydq.serve.snapshots import HeadSnapshot


def make_model(snapshot: HeadSnapshot, classes: list[str]) -> ModelResponse:
    """The served head as ``/model`` returns it: the folded affine map and ``LinearHead.to_dict()``."""
    W = b = None
    if snapshot.payload is not None:
        from raydq.head import LinearHead

        W_, b_ = LinearHead.from_dict(snapshot.payload).affine()
        W, b = W_.tolist(), b_.tolist()
    return ModelResponse(
        model_version=snapshot.version,
        classes=list(snapshot.classes) or classes,
        revision=snapshot.revision,
        n_labels=snapshot.n_labels,
        trained_at=snapshot.trained_at,
        W=W,
        b=b,
        head=snapshot.payload,
    )
