"""Training images in the kohya/TagPilot layout, with aspect-ratio buckets.

A dataset folder holds ``N_name`` sub-folders whose images are repeated N times per epoch (images
straight in the folder count once). Each image has a caption file with the same stem; a missing one
gives an empty caption and a warning. Every image is assigned to the bucket whose aspect ratio is
closest to its own; batches are drawn from one bucket so that every tensor in a batch has one shape.
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})
BUCKET_STEP = 64
MAX_ASPECT_RATIO = 4.0
_REPEATS_FOLDER = re.compile(r"^(\d+)_(.+)$")


class DatasetError(Exception):
    """The dataset folder cannot be trained on (missing, empty, unreadable image)."""


@dataclass(frozen=True)
class TrainingImage:
    """One image of the dataset with its caption and how often an epoch shows it."""

    path: Path
    caption: str
    repeats: int
    width: int
    height: int


Bucket = tuple[int, int]
"""(width, height) in pixels, multiples of :data:`BUCKET_STEP`."""


def _read_caption(image: Path, caption_extension: str) -> str:
    caption_file = image.with_suffix(caption_extension)
    if not caption_file.is_file():
        log.warning("no caption file for %s: training it with an empty caption", image.name)
        return ""
    return caption_file.read_text(encoding="utf-8", errors="replace").strip()


def _folder_repeats(folder: Path) -> int:
    match = _REPEATS_FOLDER.match(folder.name)
    if match is None:
        log.warning("folder %s has no N_ repeat prefix: its images count once", folder.name)
        return 1
    return max(1, int(match.group(1)))


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def scan_dataset(root: str | Path, caption_extension: str = ".txt") -> list[TrainingImage]:
    """All images under ``root`` with captions and repeats; raises :class:`DatasetError` when unusable."""
    folder = Path(root)
    if not folder.is_dir():
        raise DatasetError(f"dataset folder {folder} does not exist")
    sources: list[tuple[Path, int]] = [(image, 1) for image in _image_files(folder)]
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        repeats = _folder_repeats(sub)
        sources.extend((image, repeats) for image in _image_files(sub))
    images: list[TrainingImage] = []
    for path, repeats in sources:
        try:
            with Image.open(path) as opened:
                width, height = opened.size
        except (OSError, UnidentifiedImageError) as error:
            raise DatasetError(f"cannot read image {path.name}: {error}") from error
        images.append(TrainingImage(path, _read_caption(path, caption_extension), repeats, width, height))
    if not images:
        raise DatasetError(f"dataset folder {folder} holds no png, jpg or webp images")
    return images


def make_buckets(
    resolution: int, step: int = BUCKET_STEP, max_aspect: float = MAX_ASPECT_RATIO
) -> list[Bucket]:
    """Bucket sizes in ``step`` increments whose area is at most (and close to) ``resolution``².

    For each width the tallest height that keeps the area within budget is taken, so every bucket
    trains about as many pixels as the square one.
    """
    max_area = resolution * resolution
    side = max(step, resolution // step * step)
    buckets: set[Bucket] = {(side, side)}
    width = step
    # Widths up to the square side; the mirrored buckets cover the landscape shapes.
    while width <= resolution:
        height = (max_area // width) // step * step
        if height >= step and max(width / height, height / width) <= max_aspect:
            buckets.add((width, height))
            buckets.add((height, width))
        width += step
    return sorted(buckets)


def nearest_bucket(width: int, height: int, buckets: list[Bucket]) -> Bucket:
    """The bucket whose aspect ratio is closest to the image's (compared on a log scale)."""
    aspect = math.log(width / height)
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - aspect), -b[0] * b[1]))


def assign_buckets(images: list[TrainingImage], resolution: int, bucketing: bool) -> dict[Bucket, list[int]]:
    """Image indices per bucket; without bucketing everything goes to the square bucket."""
    square = resolution // BUCKET_STEP * BUCKET_STEP or BUCKET_STEP
    buckets = make_buckets(resolution) if bucketing else [(square, square)]
    grouped: dict[Bucket, list[int]] = defaultdict(list)
    for index, image in enumerate(images):
        grouped[nearest_bucket(image.width, image.height, buckets)].append(index)
    return dict(grouped)


def epoch_batches(
    images: list[TrainingImage], buckets: dict[Bucket, list[int]], batch_size: int, seed: int
) -> list[tuple[Bucket, list[int]]]:
    """One epoch's batches: each image repeated, shuffled within its bucket, batches shuffled.

    A bucket's last short batch is kept (nothing is dropped), so every repeat is seen.
    """
    rng = random.Random(seed)
    batches: list[tuple[Bucket, list[int]]] = []
    for bucket, indices in sorted(buckets.items()):
        expanded = [index for index in indices for _ in range(images[index].repeats)]
        rng.shuffle(expanded)
        batches.extend((bucket, expanded[i : i + batch_size]) for i in range(0, len(expanded), batch_size))
    rng.shuffle(batches)
    return batches


def load_image_tensor(image: TrainingImage, bucket: Bucket) -> torch.Tensor:
    """The image scaled to cover its bucket, centre-cropped, as a [3, H, W] tensor in [-1, 1]."""
    target_width, target_height = bucket
    with Image.open(image.path) as opened:
        rgb = opened.convert("RGB")
    scale = max(target_width / rgb.width, target_height / rgb.height)
    resized_size = (
        max(target_width, round(rgb.width * scale)),
        max(target_height, round(rgb.height * scale)),
    )
    resized = rgb.resize(resized_size, Image.Resampling.BICUBIC)
    left = (resized.width - target_width) // 2
    top = (resized.height - target_height) // 2
    cropped = resized.crop((left, top, left + target_width, top + target_height))
    data = torch.frombuffer(bytearray(cropped.tobytes()), dtype=torch.uint8)
    pixels = data.view(target_height, target_width, 3).permute(2, 0, 1).float()
    return pixels / 127.5 - 1.0
