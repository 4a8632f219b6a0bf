"""Sources and decoding without Ray: every kind of bad image gets a reason, odd good ones are converted; listing,
Fashion-MNIST, the embed config (flags and environment) and the actor-pool sizing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from raydq.data import CLASS_NAMES, BadImage, decode_image, fashion_mnist_id, list_image_files, load_fashion_mnist
from raydq.embed.config import EmbedConfig
from raydq.embed.pipeline import plan_actors
from tests.embed.images import bad_images, encode, good_images, rgb, write_folder


@pytest.mark.parametrize("name", sorted(good_images()))
def test_good_images_decode_to_model_size(name):
    arr = decode_image(good_images()[name], size=16)
    assert arr.shape == (16, 16, 3) and arr.dtype == np.uint8


@pytest.mark.parametrize(
    ("name", "reason"),
    [("empty.png", "empty file"), ("not_an_image.jpg", "not an image"), ("truncated.jpg", "truncated")],
)
def test_bad_images_raise_with_a_reason(name, reason):
    with pytest.raises(BadImage, match=reason):
        decode_image(bad_images()[name], size=16)


def test_too_many_pixels_is_refused_before_decoding():
    big = encode(Image.new("L", (11000, 10000)), "PNG")  # 110 MP of zeros: a small file, a huge bitmap
    with pytest.raises(BadImage, match="too large"):
        decode_image(big, size=16)
    with pytest.raises(BadImage, match="too large"):
        decode_image(encode(rgb(0, (50, 50)), "PNG"), size=16, max_pixels=2499)


def test_sixteen_bit_is_rescaled_not_clipped():
    values = np.array([[0, 32896], [65535, 65535]], dtype=np.uint16)  # 32896 = 128 * 257
    arr = decode_image(encode(Image.fromarray(values), "PNG"), size=2, resize_mode="squash")
    assert arr[0, 0, 0] == 0 and arr[0, 1, 0] == 128 and arr[1, 0, 0] == 255


def test_transparency_is_composited_on_white_and_cmyk_converted():
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))  # fully transparent black
    assert (decode_image(encode(rgba, "PNG"), size=8) == 255).all()
    red_cmyk = Image.new("RGB", (8, 8), (255, 0, 0)).convert("CMYK")
    arr = decode_image(encode(red_cmyk, "TIFF"), size=8)
    assert arr[..., 0].min() > 200 and arr[..., 1:].max() < 60


def test_shortest_side_resize_centre_crops():
    im = Image.new("RGB", (30, 10), (0, 0, 255))
    im.paste((255, 0, 0), (10, 0, 20, 10))  # a red centre third
    arr = decode_image(encode(im, "PNG"), size=10, resize_mode="shortest")
    assert arr.shape == (10, 10, 3) and arr[..., 0].min() > 200  # only the red centre survives the crop


def test_list_image_files_folder_glob_and_file(tmp_path):
    paths = write_folder(tmp_path / "imgs", {**good_images(), "notes.txt": b"x"}, subfolder="nested")
    images = [str(p) for p in paths if not p.name.endswith(".txt")]
    assert list_image_files(str(tmp_path / "imgs")) == sorted(images)
    assert list_image_files(str(tmp_path / "imgs" / "*.png")) == sorted(p for p in images if "/nested/" not in p
                                                                        and p.endswith(".png"))  # fmt: skip
    assert list_image_files(images[0]) == [images[0]]
    with pytest.raises(ValueError, match="no such"):
        list_image_files(str(tmp_path / "missing"))


def test_fashion_mnist_splits_labels_and_ids():
    x, y = load_fashion_mnist("test")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8 and y.shape == (10000,)
    assert set(np.unique(y)) == set(range(10)) and len(CLASS_NAMES) == 10 and CLASS_NAMES[9] == "Ankle boot"
    assert fashion_mnist_id("train", 123) == "fashion-mnist/train/000123"
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("validation")


def test_config_reads_environment_and_flags_win():
    env = {"RAYDQ_EMBED_BATCH_SIZE": "8", "RAYDQ_EMBED_DTYPE": "float16", "RAYDQ_EMBED_LIMIT": "all",
           "RAYDQ_EMBED_PROGRESS": "false", "RAYDQ_EMBED_NUM_GPUS_PER_ACTOR": "0.5"}  # fmt: skip
    cfg = EmbedConfig.from_env({"batch_size": 16}, environ=env)
    assert cfg.batch_size == 16 and cfg.dtype == "float16" and cfg.progress is False
    assert cfg.num_gpus_per_actor == 0.5 and cfg.resolved_limit() is None
    default = EmbedConfig.from_env(environ={})
    assert default.source == "fashion-mnist" and default.resolved_limit() == 5000
    assert default.resolved_output() == "data/embeddings/fashion-mnist-train"
    assert EmbedConfig(split="test").resolved_output() == "data/embeddings/fashion-mnist-test"
    assert EmbedConfig(source="/x/imgs").resolved_limit() is None
    with pytest.raises(ValueError, match="batch_size"):
        EmbedConfig.from_env(environ={"RAYDQ_EMBED_BATCH_SIZE": "zero"})
    with pytest.raises(ValueError, match="dtype"):
        EmbedConfig(dtype="int8")
    with pytest.raises(ValueError, match="no_such_field"):
        EmbedConfig.from_env({"no_such_field": 1}, environ={})


def test_every_config_field_is_a_flag():
    from jobs.embed import build_parser

    parser = build_parser()
    args = parser.parse_args(["--source", "/imgs", "--limit", "10", "--num-gpus-per-actor", "0.25",
                              "--dtype", "float16", "--no-progress", "--actors", "3"])  # fmt: skip
    cfg = EmbedConfig.from_env(vars(args), environ={})
    assert (cfg.source, cfg.limit, cfg.num_gpus_per_actor, cfg.dtype, cfg.progress, cfg.actors) == (
        "/imgs", 10, 0.25, "float16", False, 3,
    )  # fmt: skip
    flags = {a.dest for a in parser._actions}
    assert set(EmbedConfig.model_fields) <= flags


@pytest.mark.parametrize("word", ["all", "0", "ALL"])
def test_limit_flag_takes_the_words_its_help_names(word):
    args = build_parser_args(["--limit", word])
    assert EmbedConfig.from_env(args, environ={}).resolved_limit() is None


def test_bad_flag_value_names_its_field(capsys):
    from jobs.embed import main

    assert main(["--limit", "lots"]) == 2
    assert "limit" in capsys.readouterr().err


def build_parser_args(argv: list[str]) -> dict:
    from jobs.embed import build_parser

    return vars(build_parser().parse_args(argv))


def test_actor_pool_never_takes_every_cpu():
    two_cores = plan_actors(EmbedConfig(), {"CPU": 2.0}, single_node=True)
    assert (two_cores.actors, two_cores.num_gpus, two_cores.torch_threads, two_cores.device) == (2, 0.0, 1, "cpu")
    assert two_cores.actors * two_cores.num_cpus <= 1.0  # a whole CPU stays free for read/decode tasks
    one = plan_actors(EmbedConfig(actors=1), {"CPU": 2.0}, single_node=True)
    assert (one.actors, one.num_cpus, one.torch_threads) == (1, 1.0, 2)
    big = plan_actors(EmbedConfig(), {"CPU": 32.0}, single_node=True)
    assert (big.actors, big.num_cpus, big.torch_threads) == (4, 1.0, 8)
    fixed = plan_actors(EmbedConfig(torch_threads=1), {"CPU": 8.0}, single_node=False)
    assert fixed.torch_threads == 1
    assert plan_actors(EmbedConfig(), {"CPU": 1.0}, single_node=True).actors == 1


def test_actor_pool_uses_one_gpu_per_actor_by_default():
    gpu = plan_actors(EmbedConfig(), {"CPU": 16.0, "GPU": 4.0}, single_node=True)
    assert (gpu.actors, gpu.num_gpus, gpu.device) == (4, 1.0, "cuda")
    shared = plan_actors(EmbedConfig(num_gpus_per_actor=0.5), {"CPU": 16.0, "GPU": 2.0}, single_node=True)
    assert (shared.actors, shared.num_gpus) == (4, 0.5)
    cpu_only = plan_actors(EmbedConfig(num_gpus_per_actor=0), {"CPU": 16.0, "GPU": 2.0}, single_node=True)
    assert cpu_only.device == "cpu"
    with pytest.raises(ValueError, match="GPUs"):
        plan_actors(EmbedConfig(num_gpus_per_actor=1), {"CPU": 2.0}, single_node=True)
