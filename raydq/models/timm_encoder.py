"""timm backbones: ``timm:<name>@<local weights file>`` or ``timm:<name>`` (random init). Pooled features, no
classifier; preprocessing from timm's own data config for the model."""

from __future__ import annotations

from pathlib import Path

import torch

from raydq.models.base import Encoder, PreprocessCfg, file_sha256


def _load_state_dict(path: str) -> dict[str, torch.Tensor]:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    return {k.removeprefix("module."): v for k, v in state.items()}


def create_timm(identifier: str, *, device: str = "cpu") -> Encoder:
    import timm
    from timm.data import resolve_data_config

    name, _, path = identifier.partition("@")
    if not timm.is_model(name):
        raise ValueError(f"unknown timm model {name!r} (see timm.list_models())")
    model = timm.create_model(name, pretrained=False, num_classes=0)
    if path:
        if not Path(path).is_file():
            raise ValueError(f"timm weights file {path!r} does not exist")
        state = _load_state_dict(path)
        own = model.state_dict()
        # A checkpoint of the classification model carries the classifier; the pooled backbone has none.
        state = {k: v for k, v in state.items() if k in own}
        missing = [k for k in own if k not in state]
        if missing:
            raise ValueError(f"{path}: weights do not fit timm model {name!r}; missing {missing[:5]}")
        model.load_state_dict(state)
        weights = file_sha256(path)
    else:
        weights = "random-init"
    model.eval()
    data = resolve_data_config(model=model)
    cfg = PreprocessCfg(
        size=int(data["input_size"][-1]),
        mean=tuple(data["mean"]),
        std=tuple(data["std"]),
        interpolation=str(data.get("interpolation", "bilinear")),
        resize_mode="shortest",
    )
    # channels_last like the input (preprocess_images): no layout conversion in front of every conv layer
    model = model.to(device, memory_format=torch.channels_last)
    spec = {"model": f"timm:{identifier}", "weights": weights, "preprocessing": cfg.as_dict()}
    return Encoder(model=model, dim=int(model.num_features), spec=spec, preprocess_cfg=cfg, device=device)
