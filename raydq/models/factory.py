"""``create_encoder(spec)``: one factory, a scheme prefix per model family (open_clip's ``parse_model_name``)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from raydq.models.base import BF16_MIN_CAPABILITY, Encoder, PreprocessCfg, resolve_precision

log = logging.getLogger(__name__)

DEFAULT_SPEC = "efficientnet_lite0"
SCHEMES = ("efficientnet_lite0", "open_clip:<model>[/<pretrained tag>|@<checkpoint>]", "timm:<name>[@<weights file>]")


def _default(identifier: str, device: str) -> Encoder:
    from raydq.models.efficientnet import create_efficientnet_lite0

    return create_efficientnet_lite0(device=device)


def _open_clip(identifier: str, device: str) -> Encoder:
    from raydq.models.openclip import create_open_clip

    return create_open_clip(identifier, device=device)


def _timm(identifier: str, device: str) -> Encoder:
    from raydq.models.timm_encoder import create_timm

    return create_timm(identifier, device=device)


_FACTORIES: dict[str, Callable[[str, str], Encoder]] = {"open_clip": _open_clip, "timm": _timm}


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _prepare_cuda(device: str, precision: str) -> None:
    """cuDNN autotuning on: an encoder sees one input shape (fixed size, fixed batch but the last), so the kernels
    chosen on the first batch serve every later one. Warn where bf16 was asked of a GPU without bf16 tensor cores."""
    import torch

    torch.backends.cudnn.benchmark = True
    capability = tuple(torch.cuda.get_device_capability(torch.device(device)))
    if precision == "bf16" and capability < BF16_MIN_CAPABILITY:
        log.warning("precision bf16 on %s (compute capability %d.%d < 8.0): no bf16 tensor cores, expect it slow or "
                    "unsupported; use fp16 or auto", device, *capability)  # fmt: skip


def create_encoder(spec: str | None = None, *, device: str | None = None, precision: str = "fp32") -> Encoder:
    """Build the encoder named by ``spec`` on ``device`` (default: CUDA when available, else CPU).

    ``precision`` is the forward pass's autocast: 'fp32' (none, the default), 'bf16', 'fp16', or 'auto' (on CUDA bf16
    from compute capability 8.0, else fp16; bf16 on a CPU with native bf16, else fp32). It is recorded in
    ``spec['precision']``. On CUDA, cuDNN autotuning is switched on for the process.

    >>> enc = create_encoder()                      # doctest: +SKIP
    >>> enc.dim, enc.spec["model"]                  # doctest: +SKIP
    (1280, 'efficientnet_lite0')
    """
    spec = (spec or DEFAULT_SPEC).strip()
    device = device or default_device()
    precision = resolve_precision(precision, device)
    if device.startswith("cuda"):
        _prepare_cuda(device, precision)
    if spec in (DEFAULT_SPEC, "efficientnet-lite0"):
        encoder = _default(spec, device)
    else:
        scheme, sep, identifier = spec.partition(":")
        if not sep or scheme not in _FACTORIES or not identifier:
            raise ValueError(f"unknown encoder spec {spec!r}; valid schemes: {', '.join(SCHEMES)}")
        encoder = _FACTORIES[scheme](identifier, device)
    encoder.precision = precision
    encoder.spec["precision"] = precision
    return encoder


def describe_encoder(spec: str | None = None) -> tuple[dict, int, PreprocessCfg]:
    """(spec, dim, preprocessing) of the encoder ``spec`` names, for a driver that only records what the workers
    will run. The default's are constants (no weights loaded); other families need the model built, on CPU."""
    if (spec or DEFAULT_SPEC).strip() in (DEFAULT_SPEC, "efficientnet-lite0"):
        from raydq.models.efficientnet import describe_efficientnet_lite0

        return describe_efficientnet_lite0()
    encoder = create_encoder(spec, device="cpu")
    return encoder.spec, encoder.dim, encoder.preprocess_cfg
