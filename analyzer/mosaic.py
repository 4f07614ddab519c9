"""Pack many face crops into one image so that one DetectFaces call analyzes up to 64 faces.

DetectFaces is priced per image, so a grid of crops costs one call instead of one per face. The
grid respects Amazon Rekognition's documented set quotas:
- image bytes passed in the request: at most 5 MB (we re-encode with lower quality, then split);
- DetectFaces returns the 100 largest faces: at most 64 tiles, leaving room for a stray
  background face inside a crop's margin;
- a face must be at least 40x40 px in a 1920x1080 image, proportionally larger in bigger images:
  tiles are 160 px, so the face inside a crop (about 2/3 of it with the edge's 25 % margin) is
  ~105 px, above the ~53 px needed in the 1424x1424 mosaic of 64 tiles;
- images at least 80 px on each side; we also keep each side <= 4096 px.
Each tile sits in a grey gutter so that a face box cannot straddle two tiles; a face is attributed
to the tile that contains the centre of its bounding box (ratios of the mosaic's width/height).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

from PIL import Image

MAX_REQUEST_BYTES = 5 * 1024 * 1024
DETECTFACES_MAX_FACES = 100
MIN_FACE_PX_AT_1080P = 40
MIN_IMAGE_SIDE_PX = 80
MAX_IMAGE_SIDE_PX = 4096


@dataclass(frozen=True)
class MosaicLimits:
    tile_px: int = 160
    gutter_px: int = 16
    max_tiles: int = 64
    jpeg_quality: int = 90
    max_bytes: int = MAX_REQUEST_BYTES

    def __post_init__(self):
        if not 1 <= self.max_tiles <= DETECTFACES_MAX_FACES:
            raise ValueError(f"max_tiles must be 1..{DETECTFACES_MAX_FACES}")
        if self.tile_px < MIN_IMAGE_SIDE_PX:
            raise ValueError(f"tile_px must be at least {MIN_IMAGE_SIDE_PX}")
        cols = math.ceil(math.sqrt(self.max_tiles))
        if cols * (self.tile_px + self.gutter_px) + self.gutter_px > MAX_IMAGE_SIDE_PX:
            raise ValueError("a full mosaic would exceed 4096 px per side")


@dataclass(frozen=True)
class Tile:
    """Where one crop (by its position in the caller's list) lies in the mosaic, in pixels."""

    item: int
    left: int
    top: int
    width: int
    height: int

    def contains(self, x: float, y: float) -> bool:
        return self.left <= x < self.left + self.width and self.top <= y < self.top + self.height


@dataclass
class Mosaic:
    width: int
    height: int
    tiles: list[Tile]
    jpeg: bytes = field(repr=False, default=b"")

    def min_face_px(self) -> float:
        """Rekognition's documented minimum face size for an image of this size."""
        scale = max(1.0, self.width / 1920, self.height / 1080)
        return MIN_FACE_PX_AT_1080P * scale

    def tile_for_box(self, box: dict) -> Tile | None:
        """The tile holding the centre of a DetectFaces BoundingBox (ratios of the mosaic)."""
        try:
            cx = (float(box["Left"]) + float(box["Width"]) / 2) * self.width
            cy = (float(box["Top"]) + float(box["Height"]) / 2) * self.height
        except (KeyError, TypeError, ValueError):
            return None
        for tile in self.tiles:
            if tile.contains(cx, cy):
                return tile
        return None

    def box_for_tile(self, tile: Tile, shrink: float = 0.15) -> dict:
        """A BoundingBox (as DetectFaces returns it) well inside `tile`; used by tests and bench."""
        dx, dy = tile.width * shrink, tile.height * shrink
        return {
            "Left": (tile.left + dx) / self.width,
            "Top": (tile.top + dy) / self.height,
            "Width": (tile.width - 2 * dx) / self.width,
            "Height": (tile.height - 2 * dy) / self.height,
        }


def _fit(image: Image.Image, side: int) -> Image.Image:
    """Scale a crop to fit a side x side tile, keeping its aspect ratio (faces must not stretch)."""
    scale = side / max(image.width, image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.convert("RGB").resize(size, Image.Resampling.BILINEAR)


def _grid(count: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    return cols, rows


def build_mosaic(images: list[tuple[int, Image.Image]], limits: MosaicLimits) -> Mosaic:
    """One mosaic of at most limits.max_tiles crops, JPEG-encoded within limits.max_bytes."""
    if not images:
        raise ValueError("a mosaic needs at least one crop")
    if len(images) > limits.max_tiles:
        raise ValueError(f"{len(images)} crops exceed {limits.max_tiles} tiles per mosaic")
    cols, rows = _grid(len(images))
    pitch = limits.tile_px + limits.gutter_px
    width = cols * pitch + limits.gutter_px
    height = rows * pitch + limits.gutter_px
    canvas = Image.new("RGB", (width, height), (128, 128, 128))
    tiles: list[Tile] = []
    for slot, (item, image) in enumerate(images):
        col, row = slot % cols, slot // cols
        fitted = _fit(image, limits.tile_px)
        left = limits.gutter_px + col * pitch + (limits.tile_px - fitted.width) // 2
        top = limits.gutter_px + row * pitch + (limits.tile_px - fitted.height) // 2
        canvas.paste(fitted, (left, top))
        tiles.append(Tile(item, left, top, fitted.width, fitted.height))
    mosaic = Mosaic(width, height, tiles)
    quality = limits.jpeg_quality
    while True:
        buffer = io.BytesIO()
        canvas.save(buffer, format="JPEG", quality=quality)
        if buffer.tell() <= limits.max_bytes or quality <= 40:
            break
        quality -= 15
    mosaic.jpeg = buffer.getvalue()
    return mosaic


def plan(images: list[tuple[int, Image.Image]], limits: MosaicLimits) -> list[Mosaic]:
    """Split the crops into as few mosaics as the limits allow, balanced in size."""
    if not images:
        return []
    count = math.ceil(len(images) / limits.max_tiles)
    per = math.ceil(len(images) / count)
    return [build_mosaic(images[i : i + per], limits) for i in range(0, len(images), per)]
