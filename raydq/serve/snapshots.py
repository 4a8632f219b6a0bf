"""Plain data that travels between the deployments: a head snapshot, a training set, an item reference."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from raydq.numerics.moments import FeatureMoments


@dataclass(frozen=True)
class HeadSnapshot:
    """The newest good head: ``payload`` is ``LinearHead.to_dict()``, None before the first training."""

    version: int = 0
    revision: int = -1
    n_labels: int = 0
    classes: tuple[str, ...] = ()
    trained_at: datetime | None = None
    payload: dict[str, Any] | None = None


@dataclass(frozen=True)
class TrainingSet:
    """Labeled embeddings at one label revision; ``y`` holds indices into ``classes``; ``feature_moments``: the whole
    pool's, which the head standardizes with."""

    revision: int
    classes: tuple[str, ...]
    X: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    feature_moments: FeatureMoments | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class ItemRef:
    """Where an id lives in the pool: its row and its source locator."""

    id: str
    row: int
    uri: str | None
