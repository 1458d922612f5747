"""Thumbnails and renders of a stored image, made on the fly from its decoded pixels:
resized with INTER_AREA (never enlarged), the stored boxes drawn when asked (`render.py`),
encoded with `cv2.imencode`, and cached in the store's derived folder under a name that
says exactly what was made, so that a cached file has a stable ETag.

Sizes snap up to a fixed ladder (64 ... 2048): a client can make at most a few variants per
image, never fill the cache with one per pixel size. Derived images carry no EXIF.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

from detection_types import Detections, ImageArray
from errors import InvalidParameter
from image_io import cv2, downscale
from render import draw_detections
from utils_serve import is_integer_text

RenditionFormat = Literal["jpeg", "png", "webp"]
Fit = Literal["contain", "cover"]

LADDER: Final = (64, 128, 256, 512, 1024, 2048)
THUMBNAIL_SIZES: Final = (128, 256, 512)
DEFAULT_THUMBNAIL: Final = 256
MAX_SIDE_LIMIT: Final = LADDER[-1]
FORMATS: Final[Mapping[str, RenditionFormat]] = {
    "jpeg": "jpeg",
    "jpg": "jpeg",
    "png": "png",
    "webp": "webp",
}
MIME_TYPES: Final[Mapping[RenditionFormat, str]] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
}
JPEG_QUALITY: Final = 85
WEBP_QUALITY: Final = 80
PNG_COMPRESSION: Final = 3
# Part of every ETag: bump it when the rendering changes, so caches do not keep old bytes.
RENDER_VERSION: Final = f"1/{cv2.__version__}"


@dataclass(frozen=True)
class RenditionSpec:
    """What to make: fit in (or cover) width x height, in a format, boxes drawn or not.
    None for a side means unbounded; `cacheable` is False for exact `max_side` sizes."""

    width: int | None
    height: int | None
    fit: Fit
    fmt: RenditionFormat
    annotate: bool = False
    cacheable: bool = True

    def variant(self, run_marker: str) -> str:
        """The derived file's name: every input of the rendering is in it."""
        boxes = f"boxes-{run_marker}" if self.annotate else "plain"
        return f"{self.width or 0}x{self.height or 0}-{self.fit}-{boxes}.{self.fmt}"


@dataclass(frozen=True)
class StoredBox:
    """A stored detection: corners as fractions of the oriented frame."""

    label: str
    class_id: int
    score: float
    x1: float
    y1: float
    x2: float
    y2: float


def snap(size: int) -> int:
    """The smallest ladder size >= size (the largest for anything above it)."""
    return next((step for step in LADDER if step >= size), LADDER[-1])


def _int_parameter(query: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    text = raw.strip()
    if not is_integer_text(text) or not low <= int(text) <= high:
        raise InvalidParameter(
            f"{name} must be an integer between {low} and {high}, got {raw[:20]!r}"
        )
    return int(text)


def _format(query: Mapping[str, str], default: RenditionFormat) -> RenditionFormat:
    raw = query.get("format")
    if raw is None:
        return default
    fmt = FORMATS.get(raw.strip().lower())
    if fmt is None:
        raise InvalidParameter(f"format must be jpeg, png or webp, got {raw[:20]!r}")
    return fmt


def _bool(query: Mapping[str, str], name: str) -> bool:
    raw = (query.get(name) or "false").strip().lower()
    if raw not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
        raise InvalidParameter(f"{name} must be true or false, got {raw[:20]!r}")
    return raw in {"1", "true", "yes", "on"}


def thumbnail_spec(query: Mapping[str, str]) -> RenditionSpec:
    """`?size=128|256|512&format=jpeg|png|webp` (256 px JPEG by default)."""
    size = _int_parameter(query, "size", 1, 1 << 16) or DEFAULT_THUMBNAIL
    if size not in THUMBNAIL_SIZES:
        raise InvalidParameter(
            f"size must be one of {', '.join(map(str, THUMBNAIL_SIZES))}, got {size}"
        )
    return RenditionSpec(size, size, "contain", _format(query, "jpeg"))


def render_spec(query: Mapping[str, str]) -> RenditionSpec:
    """`?w=..&h=..&fit=contain|cover&format=..&annotate=true`; w and h snap to the ladder."""
    width = _int_parameter(query, "w", 1, 1 << 16)
    height = _int_parameter(query, "h", 1, 1 << 16)
    fit_raw = (query.get("fit") or "contain").strip().lower()
    if fit_raw not in ("contain", "cover"):
        raise InvalidParameter(f"fit must be contain or cover, got {fit_raw[:20]!r}")
    fit: Fit = "cover" if fit_raw == "cover" else "contain"
    if fit == "cover" and (width is None or height is None):
        raise InvalidParameter("fit=cover needs both w and h")
    return RenditionSpec(
        snap(width) if width is not None else None,
        snap(height) if height is not None else None,
        fit,
        _format(query, "jpeg"),
        annotate=_bool(query, "annotate"),
    )


def original_rendition_spec(query: Mapping[str, str]) -> RenditionSpec | None:
    """`GET /v1/images/<id>?max_side=..&format=..`: a rendition, as the original on-the-fly
    design has it (exact size, cached only when it is a ladder size); None for the original."""
    if query.get("max_side") is None and query.get("format") is None:
        return None
    side = _int_parameter(query, "max_side", 1, MAX_SIDE_LIMIT)
    return RenditionSpec(
        side, side, "contain", _format(query, "png"), cacheable=side is None or side in LADDER
    )


def _fitted(image: ImageArray, spec: RenditionSpec) -> ImageArray:
    height, width = image.shape[:2]
    if spec.fit == "cover" and spec.width is not None and spec.height is not None:
        scale = min(1.0, max(spec.width / width, spec.height / height))
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        resized = image
        if (new_w, new_h) != (width, height):
            resized = np.asarray(
                cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA), dtype=np.uint8
            )
        crop_w, crop_h = min(spec.width, new_w), min(spec.height, new_h)
        left, top = (new_w - crop_w) // 2, (new_h - crop_h) // 2
        return np.ascontiguousarray(resized[top : top + crop_h, left : left + crop_w])
    scales = [1.0]
    if spec.width is not None:
        scales.append(spec.width / width)
    if spec.height is not None:
        scales.append(spec.height / height)
    scale = min(scales)
    if scale >= 1.0:
        return image
    longer = max(round(width * scale), round(height * scale))
    return downscale(image, max(1, longer))


def _boxes_as_detections(
    boxes: Sequence[StoredBox], width: int, height: int
) -> tuple[Detections, list[str]]:
    if not boxes:
        return Detections.empty(), []
    names: dict[int, str] = {box.class_id: box.label for box in boxes}
    class_names = [names.get(i, str(i)) for i in range(max(names) + 1)]
    detections = Detections(
        xyxy=np.array(
            [[b.x1 * width, b.y1 * height, b.x2 * width, b.y2 * height] for b in boxes],
            dtype=np.float32,
        ),
        scores=np.array([b.score for b in boxes], dtype=np.float32),
        class_ids=np.array([b.class_id for b in boxes], dtype=np.int64),
    )
    return detections, class_names


def encode(image: ImageArray, fmt: RenditionFormat) -> bytes:
    if fmt == "jpeg":
        extension, params = ".jpg", [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    elif fmt == "png":
        extension, params = ".png", [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]
    else:
        extension, params = ".webp", [cv2.IMWRITE_WEBP_QUALITY, WEBP_QUALITY]
    ok, buffer = cv2.imencode(extension, image, params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {image.shape} image as {fmt}")
    return bytes(buffer.tobytes())


def make(image: ImageArray, spec: RenditionSpec, boxes: Sequence[StoredBox] = ()) -> bytes:
    """The rendition's bytes: boxes drawn at full size (lines shrink with the picture),
    then fitted, then encoded."""
    if spec.annotate and boxes:
        height, width = image.shape[:2]
        detections, class_names = _boxes_as_detections(boxes, width, height)
        image = draw_detections(image, detections, class_names)
    return encode(_fitted(image, spec), spec.fmt)


def etag(blob_sha256: str, variant: str) -> str:
    """A weak ETag (the bytes are equivalent, not promised identical across versions)."""
    digest = hashlib.sha256(f"{RENDER_VERSION}|{blob_sha256}|{variant}".encode()).hexdigest()
    return f'W/"{digest[:40]}"'
