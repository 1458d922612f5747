"""The repository's JSON shapes (camelCase, like the rest of the API): the image object,
upload results, lists, detection runs and labels. Plain dicts from the service's values."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from dialects import google
from errors import ApiError
from repository.records import ImageRecord, RunRecord, Uploaded, stored_result

API_PREFIX = "/v1/images"


def _instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _taken_at(record: ImageRecord) -> str | None:
    image = record.image
    if image.taken_at is None:
        return None
    if image.taken_at_offset_min is None:
        # The camera's local time, with no offset to place it: shown without one.
        return image.taken_at.replace(tzinfo=None).isoformat()
    zone = timezone(timedelta(minutes=image.taken_at_offset_min))
    return image.taken_at.astimezone(zone).isoformat()


def links(image_id: str) -> dict[str, str]:
    base = f"{API_PREFIX}/{image_id}"
    return {
        "self": f"{base}/details",
        "original": base,
        "thumbnail": f"{base}/thumbnail",
        "render": f"{base}/render",
        "detections": f"{base}/detections",
    }


def image_object(record: ImageRecord, gps_policy: str) -> dict[str, Any]:
    image, blob = record.image, record.blob
    gps = None
    if gps_policy == "store" and image.gps_latitude is not None:
        gps = {
            "latitude": image.gps_latitude,
            "longitude": image.gps_longitude,
            "altitude": image.gps_altitude_m,
        }
    return {
        "id": image.id,
        "originalName": image.original_name,
        "owner": image.owner,
        "uploadedAt": _instant(image.uploaded_at),
        "sha256": blob.sha256,
        "pixelSha256": image.pixel_sha256,
        "sizeBytes": blob.size_bytes,
        "mimeType": blob.mime_type,
        "width": image.width,
        "height": image.height,
        "takenAt": _taken_at(record),
        "camera": {"make": image.camera_make, "model": image.camera_model, "lens": image.lens},
        "exposure": {
            "iso": image.iso,
            "fNumber": image.f_number,
            "exposureTime": image.exposure_s,
            "focalLength": image.focal_length_mm,
        },
        "orientation": image.orientation,
        "gps": gps,
        "exifError": image.exif_error,
        "labels": [
            {"name": label.name, "count": label.count, "maxScore": round(label.max_score, 4)}
            for label in record.labels
        ],
        "links": links(image.id),
    }


def upload_result(outcome: Uploaded, gps_policy: str) -> dict[str, Any]:
    return {"image": image_object(outcome.record, gps_policy), "duplicate": outcome.duplicate}


def upload_results(outcomes: Sequence[Uploaded | ApiError], gps_policy: str) -> dict[str, Any]:
    """Several files: each one's own status, created, duplicate or an error."""
    results = []
    for outcome in outcomes:
        if isinstance(outcome, ApiError):
            results.append({"status": outcome.status, **google.error_envelope(outcome)})
        else:
            status = 200 if outcome.duplicate else 201
            results.append({"status": status, **upload_result(outcome, gps_policy)})
    return {"results": results}


def runs_object(runs: Sequence[RunRecord]) -> dict[str, Any]:
    answered = []
    for record in runs:
        result, class_names = stored_result(record)
        run = record.run
        answered.append(
            {
                "model": run.model,
                "modelSha256": run.model_sha256,
                "createdAt": _instant(run.created_at),
                "parameters": json.loads(run.params),
                "imageSize": {"width": run.image_width, "height": run.image_height},
                "localizedObjectAnnotations": google.object_annotations(result, class_names),
            }
        )
    return {"runs": answered}


def labels_object(rows: Sequence[tuple[str, int, int]]) -> dict[str, Any]:
    return {
        "labels": [
            {"name": name, "images": images, "detections": count} for name, images, count in rows
        ]
    }
