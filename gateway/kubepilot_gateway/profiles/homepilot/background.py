"""Background replace and blur without a segmentation model: the mask the profile builds, and the blur.

HomePilot replaces a background by removing it with U2-Net (rembg) and inpainting the transparent
part; the kubepilot generator has no segmentation model, so background *removal* is unavailable
(a 503 that says so, and ``/v1/capabilities`` reports it). *Replace* still works as the issue asks:
inpainting with a mask built here, by two rules that need no model:

- **flood fill from the border**: the background is taken to be what is connected to the image's
  edge and close in colour to it (each border pixel seeds a fill with a colour tolerance on a
  copy at most ``WORK_EDGE`` pixels wide). That is right for the usual subject-on-a-backdrop
  photo and for generated images with a plain background;
- **central ellipse**: when the fill finds too little (< 5 %) or nearly everything (> 90 %: the
  subject touches the border in the same colours), the subject is taken to be the centred
  ellipse spanning 60 % x 80 % of the image, and the background everything outside it.

The mask is white (repaint) on the background, grown by a few pixels so the seam is repainted,
and black on the subject. Blur is HomePilot's own: a gaussian blur of the whole image done with
Pillow (HomePilot does not segment for it either), written to the outputs volume; no job.
"""

from __future__ import annotations

from PIL import Image, ImageChops, ImageDraw, ImageFilter

WORK_EDGE = 256
"""The longest side of the working copy the mask is computed on (then scaled to the image)."""
TOLERANCE = 40
"""Per-channel colour distance the flood fill accepts from its seed's colour."""
MIN_SHARE = 0.05
MAX_SHARE = 0.90
SEEDS_PER_SIDE = 16
SENTINEL = (255, 0, 255)


def background_mask(image: Image.Image) -> tuple[Image.Image, str]:
    """The L mask (255 = background, to repaint) for ``image`` and the rule that made it
    (``border-fill`` or ``center-ellipse``)."""
    source = image.convert("RGB")
    width, height = source.size
    scale = min(1.0, WORK_EDGE / max(width, height))
    work_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    work = source.resize(work_size, Image.Resampling.BILINEAR)
    # A colour no photo region is likely to hold exactly, painted by the fills, then read back.
    work = work.point(lambda v: min(v, 254))
    for x, y in _border_seeds(*work_size):
        if work.getpixel((x, y)) != SENTINEL:
            ImageDraw.floodfill(work, (x, y), SENTINEL, thresh=TOLERANCE)
    # The filled pixels: each band equal to the sentinel's, combined with a logical AND.
    bands = [
        band.point(lambda v, wanted=wanted: 255 if v == wanted else 0)
        for band, wanted in zip(work.split(), SENTINEL, strict=True)
    ]
    mask = ImageChops.logical_and(
        ImageChops.logical_and(bands[0].convert("1"), bands[1].convert("1")), bands[2].convert("1")
    ).convert("L")
    share = mask.histogram()[255] / (work_size[0] * work_size[1])
    rule = "border-fill"
    if not MIN_SHARE <= share <= MAX_SHARE:
        rule = "center-ellipse"
        mask = Image.new("L", work_size, 255)
        w, h = work_size
        ImageDraw.Draw(mask).ellipse((w * 0.2, h * 0.1, w * 0.8, h * 0.9), fill=0)
    mask = mask.filter(ImageFilter.MaxFilter(3)).resize((width, height), Image.Resampling.NEAREST)
    return mask, rule


def _border_seeds(width: int, height: int) -> list[tuple[int, int]]:
    seeds: set[tuple[int, int]] = set()
    for i in range(SEEDS_PER_SIDE):
        x = round(i * (width - 1) / (SEEDS_PER_SIDE - 1))
        y = round(i * (height - 1) / (SEEDS_PER_SIDE - 1))
        seeds.update({(x, 0), (x, height - 1), (0, y), (width - 1, y)})
    return sorted(seeds)


def blurred(image: Image.Image, strength: int) -> Image.Image:
    """HomePilot's blur: the whole image, gaussian, radius ``strength``."""
    source = image if image.mode in ("RGB", "RGBA") else image.convert("RGB")
    return source.filter(ImageFilter.GaussianBlur(radius=strength))
