"""``create_encoder(spec)``: one factory, a scheme prefix per model family (open_clip's ``parse_model_name``)."""

from __future__ import annotations

from collections.abc import Callable

from raydq.models.base import Encoder

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


def create_encoder(spec: str | None = None, *, device: str | None = None) -> Encoder:
    """Build the encoder named by ``spec`` on ``device`` (default: CUDA when available, else CPU).

    >>> enc = create_encoder()                      # doctest: +SKIP
    >>> enc.dim, enc.spec["model"]                  # doctest: +SKIP
    (1280, 'efficientnet_lite0')
    """
    spec = (spec or DEFAULT_SPEC).strip()
    device = device or default_device()
    if spec in (DEFAULT_SPEC, "efficientnet-lite0"):
        return _default(spec, device)
    scheme, sep, identifier = spec.partition(":")
    if not sep or scheme not in _FACTORIES or not identifier:
        raise ValueError(f"unknown encoder spec {spec!r}; valid schemes: {', '.join(SCHEMES)}")
    return _FACTORIES[scheme](identifier, device)
