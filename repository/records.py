"""The values the repository's operations take and give: plain frozen dataclasses (no Flask,
no session), and a stored run read back as a DetectionResult."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

import numpy as np

from detection_types import DetectionParams, DetectionResult, Detections
from repository.renditions import StoredBox
from repository.tables import Blob, DetectionRun, Image

MAX_PAGE_SIZE: Final = 1000
DEFAULT_PAGE_SIZE: Final = 50
MAX_NAME_CHARS: Final = 255
MAX_LABEL_FILTERS: Final = 16


@dataclass(frozen=True)
class UploadSource:
    data: bytes
    filename: str | None


@dataclass(frozen=True)
class DetectOptions:
    """Whether and how to detect on upload (or on a re-run)."""

    detect: bool
    model: str
    params: DetectionParams


@dataclass(frozen=True)
class LabelSummary:
    name: str
    count: int
    max_score: float


@dataclass(frozen=True)
class ImageRecord:
    image: Image
    blob: Blob
    labels: tuple[LabelSummary, ...]


@dataclass(frozen=True)
class Uploaded:
    record: ImageRecord
    duplicate: bool


@dataclass(frozen=True)
class RunRecord:
    run: DetectionRun
    boxes: tuple[StoredBox, ...]


@dataclass(frozen=True)
class Original:
    path: Path
    sha256: str
    mime_type: str
    size: int
    name: str | None


@dataclass(frozen=True)
class Rendition:
    data: bytes | None  # None: serve `path` (a cached file)
    path: Path | None
    mime_type: str
    etag: str


@dataclass(frozen=True)
class ListQuery:
    labels: tuple[str, ...] = ()
    min_score: float = 0.0
    min_count: int = 1
    uploaded_after: datetime | None = None
    uploaded_before: datetime | None = None
    taken_after: datetime | None = None
    taken_before: datetime | None = None
    camera_model: str | None = None
    name_prefix: str | None = None
    sha256: str | None = None
    pixel_sha256: str | None = None
    page_size: int = DEFAULT_PAGE_SIZE
    page_token: str | None = field(default=None, compare=False)

    def digest(self) -> str:
        """What a page token is bound to: the filters, not the page size or position."""
        fields = {k: v for k, v in asdict(self).items() if k not in {"page_size", "page_token"}}
        text = json.dumps(fields, default=str, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Page:
    records: tuple[ImageRecord, ...]
    next_token: str | None


def stored_result(record: RunRecord) -> tuple[DetectionResult, list[str]]:
    """A stored run as a DetectionResult in pixels of its frame, with class names that cover
    its class ids (for `dialects.google.object_annotations`)."""
    run = record.run
    width, height = run.image_width, run.image_height
    names: dict[int, str] = {box.class_id: box.label for box in record.boxes}
    class_names = [names.get(i, str(i)) for i in range(max(names, default=-1) + 1)]
    if not record.boxes:
        detections = Detections.empty()
    else:
        detections = Detections(
            xyxy=np.array(
                [[b.x1 * width, b.y1 * height, b.x2 * width, b.y2 * height] for b in record.boxes],
                dtype=np.float32,
            ),
            scores=np.array([b.score for b in record.boxes], dtype=np.float32),
            class_ids=np.array([b.class_id for b in record.boxes], dtype=np.int64),
        )
    return DetectionResult(detections, width, height, {}), class_names
