"""Item images read back from the ``uri`` locators that the sources record: a folder, Parquet bytes (several files
and row groups, with and without a limit), Arrow bytes and Fashion-MNIST give decodable images whose pixels are the
source's; every broken source is an ``ImageSourceError`` naming it."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from PIL import Image

from raydq.data.decode import decode_image
from raydq.data.fashion_mnist import load_fashion_mnist
from raydq.data.images import ImageSourceError, Locator, read_item_image
from raydq.data.sources import DecodeSpec, plan_source
from tests.embed.images import encode, rgb, write_folder


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _source_rows(source: str, **kw) -> list[dict]:
    """Rows of the real source plan (Ray Data), as the embed job sees them."""
    plan = plan_source(source, split=kw.pop("split", "train"), limit=kw.pop("limit", None), seed=0, done=set(),
                       decode=DecodeSpec(size=16), rows_per_block=4, **kw)  # fmt: skip
    return plan.dataset().take_all()


@pytest.mark.slow
def test_folder_source_uris_read_back_the_files(ray_cluster, tmp_path):
    files = {"a.png": encode(rgb(1, (40, 30)), "PNG"), "b.jpg": encode(rgb(2, (50, 20)), "JPEG"),
             "gray.png": encode(Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)), "PNG")}  # fmt: skip
    paths = write_folder(tmp_path / "imgs", files)
    rows = _source_rows(str(tmp_path / "imgs"))
    assert sorted(r["uri"] for r in rows) == sorted(str(p) for p in paths)
    for row in rows:
        original = (tmp_path / "imgs" / row["uri"].rsplit("/", 1)[1]).read_bytes()
        image = read_item_image(row["uri"], image_format="png")
        assert image.media_type == "image/png"
        assert np.array_equal(_pixels(image.data), _pixels(original))  # lossless: exactly the source's pixels
    jpeg = read_item_image(str(paths[1]))
    assert jpeg.media_type == "image/jpeg" and (jpeg.width, jpeg.height) == (50, 20)  # a JPEG stays a JPEG
    assert np.abs(_pixels(jpeg.data).astype(int) - _pixels(files["b.jpg"]).astype(int)).mean() < 8


@pytest.mark.slow
def test_parquet_bytes_uris_name_file_row_and_column(ray_cluster, tmp_path):
    images = [encode(rgb(n, (12 + n, 10)), "PNG") for n in range(7)]
    folder = tmp_path / "table"
    folder.mkdir()
    # Two files, row groups of 2 rows: a locator must count rows within its own file, across row groups.
    pq.write_table(pa.table({"img": pa.array(images[:5], type=pa.binary())}), folder / "part-0.parquet",
                   row_group_size=2)  # fmt: skip
    pq.write_table(pa.table({"img": pa.array(images[5:], type=pa.binary())}), folder / "part-1.parquet")
    rows = _source_rows(str(folder))
    assert len(rows) == 7 and all(r["uri"].split("#")[1].startswith("row=") for r in rows)
    by_uri = {r["uri"]: r for r in rows}
    assert f"{folder / 'part-0.parquet'}#row=4&column=img" in by_uri
    assert f"{folder / 'part-1.parquet'}#row=1&column=img" in by_uri
    for uri in by_uri:
        file, fragment = uri.split("#")
        n = int(fragment.split("&")[0].removeprefix("row=")) + (5 if file.endswith("part-1.parquet") else 0)
        image = read_item_image(uri)
        assert image.media_type == "image/png" and np.array_equal(_pixels(image.data), _pixels(images[n]))

    limited = _source_rows(str(folder / "part-0.parquet"), limit=3)  # the limit cuts inside a row group
    assert sorted(r["uri"] for r in limited) == [f"{folder / 'part-0.parquet'}#row={n}&column=img" for n in range(3)]

    own = folder / "with_uri.parquet"  # a table with its own uri column keeps it
    pq.write_table(pa.table({"image": pa.array(images[:2], type=pa.binary()), "uri": ["s3://b/x.png", None]}), own)
    got = sorted(r["uri"] for r in _source_rows(str(own)))
    assert got == sorted(["s3://b/x.png", f"{own}#row=1&column=image"])


@pytest.mark.slow
def test_fashion_mnist_uris_read_back_the_idx_images(ray_cluster):
    rows = _source_rows("fashion-mnist", split="test", limit=5)
    images, _ = load_fashion_mnist("test")
    assert len(rows) == 5
    for row in rows:
        index = int(row["id"].rsplit("/", 1)[1])
        assert row["uri"].endswith(f"t10k-images-idx3-ubyte.gz#{index}")
        image = read_item_image(row["uri"])
        assert (image.width, image.height, image.media_type) == (28, 28, "image/png")
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(image.data))), images[index])


def test_arrow_bytes_and_thumbnails(tmp_path):
    big = encode(rgb(3, (300, 120)), "PNG")
    path = tmp_path / "t.arrow"
    feather.write_feather(pa.table({"bytes": pa.array([b"x", big], type=pa.binary())}), path)
    thumb = read_item_image(f"{path}#row=1&column=bytes", size=100)
    assert (thumb.width, thumb.height) == (100, 40)  # longest side = size, aspect kept
    expected = decode_image(big, size=100, resize_mode="squash")  # same picture, so a small mean difference
    got = np.asarray(Image.open(io.BytesIO(thumb.data)).convert("RGB").resize((100, 100)))
    assert np.abs(got.astype(int) - expected.astype(int)).mean() < 40
    small = read_item_image(f"{path}#row=1&column=bytes", size=1024, image_format="jpeg")
    assert (small.width, small.height, small.media_type) == (300, 120, "image/jpeg")  # never enlarged
    with pytest.raises(ImageSourceError, match="not an image"):
        read_item_image(f"{path}#row=0&column=bytes")


@pytest.mark.parametrize(
    ("make_uri", "reason", "missing"),
    [
        (lambda d: str(d / "nope.png"), "no such file", True),
        (lambda d: str(d / "t.parquet") + "#row=9&column=image", "past the file's 2 rows", True),
        (lambda d: str(d / "t.parquet") + "#row=0&column=pixels", "no column 'pixels'", False),
        (lambda d: str(d / "t.parquet") + "#row=1&column=image", "not an image", False),
        (lambda d: str(d / "t.parquet") + "#row=x", "expected '#row=<n>&column=<name>'", False),
        (lambda d: str(d / "img.png") + "#page=2", "unknown locator fragment", False),
        (lambda d: str(d / "missing-images-idx3-ubyte.gz") + "#3", "no such idx file", True),
        (lambda d: str(d / "huge.png"), "too large", False),
        (lambda d: "", "empty locator", False),
    ],
)
def test_unreadable_sources_are_clear_errors_naming_them(tmp_path, make_uri, reason, missing):
    pq.write_table(pa.table({"image": pa.array([encode(rgb(1), "PNG"), b"junk"], type=pa.binary())}),
                   tmp_path / "t.parquet")  # fmt: skip
    (tmp_path / "img.png").write_bytes(encode(rgb(2), "PNG"))
    (tmp_path / "huge.png").write_bytes(encode(Image.new("L", (11000, 10000)), "PNG"))  # 110 MP, a small file
    uri = make_uri(tmp_path)
    with pytest.raises(ImageSourceError, match=reason) as info:
        read_item_image(uri)
    assert info.value.locator == uri and repr(uri) in str(info.value) and info.value.missing is missing


def test_bad_arguments_are_value_errors(tmp_path):
    (tmp_path / "a.png").write_bytes(encode(rgb(1), "PNG"))
    for size in (0, 15, 1025):
        with pytest.raises(ValueError, match="size must be between 16 and 1024"):
            read_item_image(str(tmp_path / "a.png"), size=size)
    with pytest.raises(ValueError, match="image_format"):
        read_item_image(str(tmp_path / "a.png"), image_format="gif")  # type: ignore[arg-type]
    with pytest.raises(ImageSourceError, match="exceeds max_bytes=10"):
        read_item_image(str(tmp_path / "a.png"), max_bytes=10)
    assert Locator.parse("file:///x/y.png") == Locator("file", "/x/y.png")
    assert Locator.parse("s3://b/t.parquet#row=3&column=img") == Locator("parquet", "s3://b/t.parquet", 3, "img")
