"""The trainer's dataset: kohya layout, captions, repeats, aspect-ratio buckets."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from PIL import Image

from kubepilot_workers.trainer.batches import BatchStream
from kubepilot_workers.trainer.dataset import (
    DatasetError,
    assign_buckets,
    epoch_batches,
    load_image_tensor,
    make_buckets,
    nearest_bucket,
    scan_dataset,
)
from tests.workers._trainer_tiny import make_dataset


def test_repeats_come_from_the_folder_prefix_and_captions_from_the_txt_files(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", {"3_cat": [(64, 64), (80, 64)], "1_dog": [(64, 64)]})
    images = scan_dataset(root)
    by_folder = {(image.path.parent.name, image.path.name): image for image in images}
    assert by_folder[("3_cat", "img0.png")].repeats == 3
    assert by_folder[("3_cat", "img1.png")].caption == "3_cat picture 1"
    assert by_folder[("1_dog", "img0.png")].repeats == 1
    assert (by_folder[("3_cat", "img1.png")].width, by_folder[("3_cat", "img1.png")].height) == (80, 64)
    batches = epoch_batches(images, assign_buckets(images, 64, bucketing=False), batch_size=1, seed=0)
    assert len(batches) == 3 + 3 + 1, "an epoch shows each image as often as its folder's repeat count"


def test_a_missing_caption_gives_an_empty_caption_and_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_dataset(tmp_path / "ds", {"2_x": [(64, 64)]}, captions=False)
    Image.new("RGB", (64, 64)).save(root / "2_x" / "extra.webp", format="WEBP")
    (root / "2_x" / "extra.txt").write_text("  a webp image \n")
    with caplog.at_level(logging.WARNING):
        images = scan_dataset(root)
    captions = {image.path.name: image.caption for image in images}
    assert captions == {"img0.png": "", "extra.webp": "a webp image"}
    assert any("no caption" in record.message for record in caplog.records)


def test_unusable_datasets_are_refused_with_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        scan_dataset(tmp_path / "missing")
    (tmp_path / "empty" / "5_none").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no png, jpg or webp"):
        scan_dataset(tmp_path / "empty")
    broken = tmp_path / "broken" / "1_b"
    broken.mkdir(parents=True)
    (broken / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match=r"cannot read image bad\.png"):
        scan_dataset(tmp_path / "broken")


def test_buckets_step_by_64_and_keep_the_area_near_the_resolution() -> None:
    buckets = make_buckets(512)
    assert (512, 512) in buckets and (384, 640) in buckets and (640, 384) in buckets
    for width, height in buckets:
        assert width % 64 == 0 and height % 64 == 0
        assert 0.75 * 512 * 512 <= width * height <= 512 * 512
    assert nearest_bucket(1200, 800, buckets) == (640, 384)
    assert nearest_bucket(800, 1200, buckets) == (384, 640)
    assert nearest_bucket(1000, 1000, buckets) == (512, 512)


def test_bucketing_groups_images_by_aspect_and_batches_never_mix_buckets(tmp_path: Path) -> None:
    sizes = [(300, 300), (310, 300), (600, 300), (620, 300), (300, 600), (290, 610)]
    root = make_dataset(tmp_path / "ds", {"2_mixed": sizes})
    images = scan_dataset(root)
    buckets = assign_buckets(images, 256, bucketing=True)
    groups = sorted(sorted(images[i].path.name for i in members) for members in buckets.values())
    assert groups == [["img0.png", "img1.png"], ["img2.png", "img3.png"], ["img4.png", "img5.png"]]
    stream = BatchStream(images, 256, True, batch_size=2, seed=1, rank=0, world_size=1)
    for micro in range(stream.per_process):
        _, bucket, members = stream.indices(micro)
        for index in members:
            assert index in buckets[bucket]
        shapes = {tuple(load_image_tensor(images[i], bucket).shape) for i in members}
        assert shapes == {(3, bucket[1], bucket[0])}


def test_without_bucketing_every_image_is_cropped_to_the_square(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", {"1_a": [(200, 100), (100, 300)]})
    images = scan_dataset(root)
    assert list(assign_buckets(images, 128, bucketing=False)) == [(128, 128)]
    tensor = load_image_tensor(images[0], (128, 128))
    assert tuple(tensor.shape) == (3, 128, 128)
    assert float(tensor.min()) >= -1.0 and float(tensor.max()) <= 1.0


def test_processes_get_disjoint_equal_shares_of_an_epoch(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", {"2_a": [(64, 64)] * 5})
    images = scan_dataset(root)
    streams = [BatchStream(images, 64, False, batch_size=1, seed=3, rank=r, world_size=2) for r in range(2)]
    assert streams[0].per_process == streams[1].per_process == 5
    first = [streams[0].indices(m)[2][0] for m in range(5)]
    second = [streams[1].indices(m)[2][0] for m in range(5)]
    assert sorted(first + second) == sorted(list(range(5)) * 2)
