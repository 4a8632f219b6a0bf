"""Image encoders behind one interface: ``create_encoder(spec) -> Encoder`` (model, dim, spec, preprocessing)."""

from raydq.models.base import Encoder, PreprocessCfg, preprocess_images
from raydq.models.factory import DEFAULT_SPEC, SCHEMES, create_encoder

__all__ = ["DEFAULT_SPEC", "SCHEMES", "Encoder", "PreprocessCfg", "create_encoder", "preprocess_images"]
