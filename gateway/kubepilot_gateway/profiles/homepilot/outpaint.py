"""Outpainting as inpainting: the padded canvas and the mask the profile builds for ``/v1/outpaint``.

HomePilot extends an image with a ComfyUI outpaint workflow; the kubepilot generator has no
outpaint type, but it inpaints. So the profile builds what that workflow builds inside ComfyUI:

- ``extension`` is HomePilot's geometry (left, right, top, bottom for a direction and a number
  of pixels), with one addition: the generator needs sides that are multiples of 8, so the
  canvas grows by up to 7 more pixels on an extended side (right, then bottom, then left, then
  top) and ``new_size`` reports the size really produced;
- ``canvas_and_mask`` pastes the image on the larger canvas (the new border filled with the
  image's own edge pixels stretched outwards, a better start for the diffusion than a flat
  colour) and returns the mask, white (repaint) over the new border and black over the original.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from PIL import Image

SIZE_MULTIPLE = 8


class Direction(StrEnum):
    LEFT = "left"
    RIGHT = "right"
    UP = "up"
    DOWN = "down"
    ALL = "all"
    HORIZONTAL = "horizontal"
    VERTICAL = "vertical"


class Extension(NamedTuple):
    left: int
    right: int
    top: int
    bottom: int
    width: int
    height: int


def _round_up(size: int) -> int:
    return -(-size // SIZE_MULTIPLE) * SIZE_MULTIPLE


def extension(width: int, height: int, direction: Direction, pixels: int) -> Extension:
    """How far each side grows and the resulting canvas (multiples of 8)."""
    left = pixels if direction in (Direction.LEFT, Direction.HORIZONTAL, Direction.ALL) else 0
    right = pixels if direction in (Direction.RIGHT, Direction.HORIZONTAL, Direction.ALL) else 0
    top = pixels if direction in (Direction.UP, Direction.VERTICAL, Direction.ALL) else 0
    bottom = pixels if direction in (Direction.DOWN, Direction.VERTICAL, Direction.ALL) else 0
    extra_w = _round_up(width + left + right) - (width + left + right)
    extra_h = _round_up(height + top + bottom) - (height + top + bottom)
    if extra_w:
        if right or not left:
            right += extra_w
        else:
            left += extra_w
    if extra_h:
        if bottom or not top:
            bottom += extra_h
        else:
            top += extra_h
    return Extension(left, right, top, bottom, width + left + right, height + top + bottom)


def canvas_and_mask(image: Image.Image, ext: Extension) -> tuple[Image.Image, Image.Image]:
    """The padded RGB canvas and its L mask (255 = generate)."""
    source = image.convert("RGB")
    width, height = source.size
    canvas = source.resize((ext.width, ext.height), Image.Resampling.NEAREST)
    # The stretched copy gives the border the colours of the nearest edge; the original goes on top.
    if ext.left:
        strip = source.crop((0, 0, 1, height)).resize((ext.left, height))
        canvas.paste(strip, (0, ext.top))
    if ext.right:
        strip = source.crop((width - 1, 0, width, height)).resize((ext.right, height))
        canvas.paste(strip, (ext.left + width, ext.top))
    canvas.paste(source, (ext.left, ext.top))
    mask = Image.new("L", (ext.width, ext.height), 255)
    mask.paste(Image.new("L", (width, height), 0), (ext.left, ext.top))
    return canvas, mask
