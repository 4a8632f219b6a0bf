"""Image sources for the embed job: Fashion-MNIST, folders/globs/object-store URIs, Parquet tables of bytes."""

from raydq.data.decode import BadImage, decode_image
from raydq.data.fashion_mnist import CLASS_NAMES, fashion_mnist_id, load_fashion_mnist
from raydq.data.sources import DecodeSpec, SourcePlan, list_image_files, plan_source

__all__ = [
    "CLASS_NAMES",
    "BadImage",
    "DecodeSpec",
    "SourcePlan",
    "decode_image",
    "fashion_mnist_id",
    "list_image_files",
    "load_fashion_mnist",
    "plan_source",
]
