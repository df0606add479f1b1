"""The outpaint canvas and mask the HomePilot profile builds for the generator's inpainting: each
direction grows the canvas as asked (to multiples of 8), and the mask repaints exactly the new border.
Pure functions, no server."""

from __future__ import annotations

import pytest
from PIL import Image

from kubepilot_gateway.profiles.homepilot.outpaint import Direction, canvas_and_mask, extension

CASES = {
    Direction.LEFT: (64, 0, 0, 0),
    Direction.RIGHT: (0, 64, 0, 0),
    Direction.UP: (0, 0, 64, 0),
    Direction.DOWN: (0, 0, 0, 64),
    Direction.HORIZONTAL: (64, 64, 0, 0),
    Direction.VERTICAL: (0, 0, 64, 64),
    Direction.ALL: (64, 64, 64, 64),
}


@pytest.mark.parametrize("direction", list(Direction))
def test_each_direction_grows_the_canvas_as_asked(direction: Direction) -> None:
    left, right, top, bottom = CASES[direction]
    ext = extension(40, 24, direction, 64)
    assert (ext.left, ext.right, ext.top, ext.bottom) == (left, right, top, bottom)
    assert (ext.width, ext.height) == (40 + left + right, 24 + top + bottom)

    source = Image.new("RGB", (40, 24), (200, 30, 30))
    canvas, mask = canvas_and_mask(source, ext)
    assert canvas.size == mask.size == (ext.width, ext.height)
    # The original is kept (black in the mask, its pixels on the canvas); the border is repainted.
    assert mask.getpixel((ext.left + 20, ext.top + 12)) == 0
    assert canvas.getpixel((ext.left, ext.top)) == (200, 30, 30)
    white = mask.histogram()[255]
    assert white == ext.width * ext.height - 40 * 24


def test_sizes_are_rounded_up_to_multiples_of_eight_on_an_extended_side() -> None:
    ext = extension(61, 50, Direction.LEFT, 70)
    assert (ext.width % 8, ext.height % 8) == (0, 0)
    assert ext.left == 75 and ext.right == 0  # the extra goes where the canvas grows already
    assert ext.bottom == 6 and ext.top == 0  # no vertical growth asked: the bottom takes the rounding
    up = extension(64, 61, Direction.UP, 64)
    assert (up.top, up.bottom, up.height) == (67, 0, 128)
