"""Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (idx .gz files, nothing downloaded)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
CLASS_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
_FILES = {"train": "train", "test": "t10k"}


def fashion_mnist_root() -> Path:
    return Path(os.environ.get("RAYDQ_FASHION_MNIST_DIR", DEFAULT_ROOT))


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path} is not an idx file of uint8")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(split: str = "train", *, root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) int64) of one split."""
    if split not in _FILES:
        raise ValueError(f"split must be one of {sorted(_FILES)}, got {split!r}")
    root = Path(root) if root is not None else fashion_mnist_root()
    prefix = _FILES[split]
    images_path, labels_path = root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz"
    if not images_path.is_file():
        raise FileNotFoundError(
            f"Fashion-MNIST not found at {root}: install the Debian package dataset-fashion-mnist "
            "(make setup does) or set RAYDQ_FASHION_MNIST_DIR"
        )
    images, labels = _read_idx(images_path), _read_idx(labels_path).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{root}: {images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels


def fashion_mnist_id(split: str, index: int) -> str:
    """The stable id of one image: ``fashion-mnist/<split>/<index in the split, 6 digits>``."""
    return f"fashion-mnist/{split}/{index:06d}"
