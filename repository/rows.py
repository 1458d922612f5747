"""What an upload or a detection writes, as row values: new ids, the pixels' hash, a cleaned
file name, the stored parameters and boxes (normalised to the frame), and the dialect's INSERT
with ON CONFLICT."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from detection_types import DetectionParams, DetectionResult, ImageArray
from repository.records import MAX_NAME_CHARS


def new_image_id() -> str:
    """128 random bits, URL-safe: ids say nothing and cannot be guessed."""
    return secrets.token_urlsafe(16)


def pixel_sha256(image: ImageArray) -> str:
    """The sha256 of the decoded pixels (with their shape): the same picture in another file."""
    digest = hashlib.sha256(f"{image.shape[0]}x{image.shape[1]}x{image.shape[2]}:".encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()


def now() -> datetime:
    return datetime.now(UTC)


def clean_name(name: str | None) -> str | None:
    if not name:
        return None
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch for ch in base if ch.isprintable()).strip()
    return cleaned[:MAX_NAME_CHARS] or None


def insert_for(session: Session) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (SQLite and PostgreSQL alike)."""
    dialect = session.get_bind().dialect.name
    return sqlite.insert if dialect == "sqlite" else postgresql.insert


def params_json(params: DetectionParams) -> dict[str, Any]:
    return {
        "score_th": params.score_threshold,
        "nms_iou": params.nms_iou_threshold,
        "min_height": params.min_height_fraction,
        "min_width": params.min_width_fraction,
        "maxResults": params.max_results,
        "classes": sorted(params.class_ids) if params.class_ids is not None else None,
        "agnostic_nms": params.class_agnostic,
    }


def detection_rows(
    result: DetectionResult,
    class_names: Sequence[str],
    run_id: int,
    image_id: str,
    owner: str,
) -> list[dict[str, Any]]:
    width, height = result.image_width, result.image_height
    detections = result.detections
    rows = []
    for (x1, y1, x2, y2), score, class_id in zip(
        detections.xyxy.tolist(),
        detections.scores.tolist(),
        detections.class_ids.tolist(),
        strict=True,
    ):
        name = class_names[class_id] if 0 <= class_id < len(class_names) else str(class_id)
        rows.append(
            {
                "run_id": run_id,
                "image_id": image_id,
                "owner": owner,
                "label": name.lower()[:64],
                "class_id": int(class_id),
                "score": float(score),
                "x1": x1 / width,
                "y1": y1 / height,
                "x2": x2 / width,
                "y2": y2 / height,
            }
        )
    return rows
