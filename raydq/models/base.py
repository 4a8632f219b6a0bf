"""The encoder interface: a model, its dimension, its preprocessing and a record of what it is.

Preprocessing travels with the model (open_clip's idea): the embed job never chooses a normalisation on its own,
so an embedding store cannot silently mix up models and transforms.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessCfg:
    """How raw uint8 images become the model's input.

    ``resize_mode``: 'squash' resizes straight to ``size`` x ``size``; 'shortest' resizes the shorter side to
    ``size`` and centre-crops (open_clip's and timm's default for photos).
    """

    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    resize_mode: str = "shortest"

    def as_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "resize_mode": self.resize_mode,
            "channels": "RGB; grayscale tiled to 3 channels",
        }


def _to_nchw(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(B, H, W) or (B, H, W, C) uint8 -> a (B, C, H, W) uint8 view; C is 1 or 3 (alpha dropped)."""
    if isinstance(images, np.ndarray) and not images.flags.writeable:
        images = images.copy()  # Ray hands out read-only views; torch wants to own writable memory
    t = torch.as_tensor(images)
    if t.ndim == 3:
        t = t.unsqueeze(-1)
    if t.ndim != 4:
        raise ValueError(f"images must be (B, H, W) or (B, H, W, C), got shape {tuple(t.shape)}")
    if t.shape[-1] == 4:
        t = t[..., :3]
    elif t.shape[-1] == 2:  # grayscale + alpha
        t = t[..., :1]
    if t.shape[-1] not in (1, 3):
        raise ValueError(f"images must have 1, 3 or 4 channels, got {t.shape[-1]}")
    return t.permute(0, 3, 1, 2)


def to_device(x: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """``x`` on ``device``; a host-to-GPU copy goes through pinned memory, since ``non_blocking=True`` from pageable
    memory is a synchronous copy (the pinned buffer is released by torch's caching host allocator after the copy)."""
    device = torch.device(device)
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def _resize(x: torch.Tensor, cfg: PreprocessCfg) -> torch.Tensor:
    h, w = x.shape[-2:]
    size = cfg.size
    if (h, w) == (size, size):
        return x
    mode = cfg.interpolation if cfg.interpolation in ("bilinear", "bicubic") else "bilinear"
    if cfg.resize_mode == "shortest" and h != w:
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    else:
        nh, nw = size, size
    antialias = nh < h or nw < w
    x = F.interpolate(x, size=(nh, nw), mode=mode, align_corners=False, antialias=antialias)
    if (nh, nw) != (size, size):
        top, left = (nh - size) // 2, (nw - size) // 2
        x = x[..., top : top + size, left : left + size]
    return x


def preprocess_images(
    images: np.ndarray | torch.Tensor | Sequence[np.ndarray], cfg: PreprocessCfg, *, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """A batch of uint8 images -> normalised (B, 3, size, size) float32 tensor in channels-last memory layout.

    Accepts one array (B, H, W[, C]) or a sequence of differently sized images. Resizing happens on ``device`` as
    one batched op, which is far cheaper than per-image PIL resizes when images are small (Fashion-MNIST 28 -> 224).
    """
    if isinstance(images, np.ndarray | torch.Tensor):
        groups = [_to_nchw(images)]
    else:
        if len(images) == 0:
            raise ValueError("images is empty")
        groups = [_to_nchw(np.asarray(im)[None]) for im in images]
    out = []
    for g in groups:
        g = _resize(to_device(g, device).float(), cfg)  # uint8 crosses to the device: 4x fewer bytes than float32
        if g.shape[1] == 1:
            g = g.expand(-1, 3, -1, -1)
        out.append(g)
    x = torch.cat(out) if len(out) > 1 else out[0]
    mean = torch.tensor(cfg.mean, device=x.device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(cfg.std, device=x.device).view(1, 3, 1, 1) * 255.0
    x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last)


@lru_cache(maxsize=16)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a weights file: the weights identity recorded in the manifest (cached per size/mtime)."""
    st = Path(path).stat()
    return "sha256:" + _sha256_cached(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@dataclass
class Encoder:
    """An image encoder ready for inference.

    Attributes
    ----------
    model : torch.nn.Module
        In eval mode; maps (B, 3, size, size) float tensors to (B, dim) features.
    dim : int
        Feature dimension.
    spec : dict
        What goes into the embedding manifest: ``model`` (the spec string), ``weights`` (file SHA-256, pretrained
        tag or 'random-init') and ``preprocessing``.
    preprocess_cfg : PreprocessCfg
    device : str
    precision : {'fp32', 'bf16', 'fp16'}
        Autocast dtype of the forward pass ('fp32': none).
    """

    model: torch.nn.Module
    dim: int
    spec: dict[str, Any]
    preprocess_cfg: PreprocessCfg
    device: str = "cpu"
    precision: str = "fp32"

    def preprocess(self, images: np.ndarray | torch.Tensor | Sequence[np.ndarray]) -> torch.Tensor:
        """uint8 images (B, H, W[, C]) -> the model's input tensor on this encoder's device."""
        return preprocess_images(images, self.preprocess_cfg, device=self.device)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Model features (float32) for a preprocessed batch, under this encoder's ``precision``."""
        dtype = _AUTOCAST.get(self.precision)
        if dtype is None:
            return self.model(x).float()
        with torch.autocast(torch.device(self.device).type, dtype=dtype):
            return self.model(x).float()

    def encode(self, images: np.ndarray | torch.Tensor | Sequence[np.ndarray]) -> np.ndarray:
        """uint8 images -> (B, dim) float32 numpy features."""
        return self.forward(self.preprocess(images)).cpu().numpy()


BF16_MIN_CAPABILITY = (8, 0)  # Ampere: the first NVIDIA GPUs with bf16 tensor cores


def resolve_precision(precision: str, device: str, capability: tuple[int, int] | None = None) -> str:
    """The autocast a forward pass runs under; 'auto' picks one for the device.

    On CUDA, 'auto' is bf16 on compute capability 8.0 and newer (bf16 has fp32's exponent range, so the CLIP and timm
    towers that can overflow fp16 stay finite) and fp16 on older GPUs. ``capability`` is the GPU's (major, minor);
    None asks torch about ``device`` and, where no GPU is visible (a CPU-only driver planning GPU actors), falls back
    to fp16, which every CUDA GPU runs. On a CPU, 'auto' is bf16 where the CPU has native bf16 (AVX512-BF16/AMX:
    about 2.5x the fp32 speed of EfficientNet-Lite0 on this project's CPUs, features within cosine 0.996 of fp32),
    else fp32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        if capability is None and torch.cuda.is_available():
            capability = tuple(torch.cuda.get_device_capability(torch.device(device)))
        return "bf16" if capability is not None and tuple(capability) >= BF16_MIN_CAPABILITY else "fp16"
    try:
        native_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native_bf16 = False
    return "bf16" if native_bf16 else "fp32"
