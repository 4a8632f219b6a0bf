"""open_clip image towers: ``open_clip:<model>/<pretrained tag>``, ``open_clip:<model>@<checkpoint>``, or
``open_clip:<model>`` (random init)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from raydq.models.base import Encoder, PreprocessCfg, file_sha256


class _ImageTower(nn.Module):
    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.visual = clip.visual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


def parse(identifier: str) -> tuple[str, str | None, str | None]:
    """'<model>/<tag>' | '<model>@<path>' | '<model>' -> (model, tag, checkpoint)."""
    if "@" in identifier:
        model, path = identifier.split("@", 1)
        return model, None, path
    if "/" in identifier:
        model, tag = identifier.split("/", 1)
        return model, tag, None
    return identifier, None, None


def create_open_clip(identifier: str, *, device: str = "cpu") -> Encoder:
    import open_clip

    model_name, tag, checkpoint = parse(identifier)
    if model_name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {model_name!r}; known: {', '.join(open_clip.list_models())}")
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise ValueError(f"open_clip checkpoint {checkpoint!r} does not exist")
        clip = open_clip.create_model(model_name, pretrained=checkpoint, device="cpu")
        weights = file_sha256(checkpoint)
    elif tag is not None:
        clip = open_clip.create_model(model_name, pretrained=tag, device="cpu", require_pretrained=True)
        weights = f"open_clip:{tag}"
    else:
        clip = open_clip.create_model(model_name, pretrained=None, device="cpu")
        weights = "random-init"
    clip.eval()
    pcfg = clip.visual.preprocess_cfg
    size = pcfg["size"]
    size = size if isinstance(size, int) else size[0]
    cfg = PreprocessCfg(
        size=int(size),
        mean=tuple(pcfg["mean"]),
        std=tuple(pcfg["std"]),
        interpolation=pcfg.get("interpolation", "bicubic"),
        resize_mode="shortest" if pcfg.get("resize_mode", "shortest") == "shortest" else "squash",
    )
    # channels_last like the input (preprocess_images), so the patch-embedding conv needs no layout conversion
    tower = _ImageTower(clip).eval().to(device, memory_format=torch.channels_last)
    dim = int(clip.visual.output_dim)
    spec = {"model": f"open_clip:{identifier}", "weights": weights, "preprocessing": cfg.as_dict()}
    return Encoder(model=tower, dim=dim, spec=spec, preprocess_cfg=cfg, device=device)
