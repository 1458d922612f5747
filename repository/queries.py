"""The filters of `GET /v1/images`: parsed from the query string (a 400 that names the bad
parameter), then made into one SELECT of the owner's images."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from sqlalchemy import Select, func, select

from errors import InvalidParameter
from repository.records import (
    DEFAULT_PAGE_SIZE,
    MAX_LABEL_FILTERS,
    MAX_NAME_CHARS,
    MAX_PAGE_SIZE,
    ListQuery,
)
from repository.tables import Blob, Detection, Image


def _datetime_filter(values: Mapping[str, str], name: str) -> datetime | None:
    raw = values.get(name)
    if raw is None or raw == "":
        return None
    try:
        parsed = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameter(
            f"{name} must be an ISO 8601 date or date-time, got {raw[:40]!r}"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _hex_filter(values: Mapping[str, str], name: str) -> str | None:
    raw = values.get(name)
    if raw is None:
        return None
    text = raw.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise InvalidParameter(f"{name} must be 64 hexadecimal digits")
    return text


def _number_filter(
    values: Mapping[str, str], name: str, low: float, high: float, integer: bool
) -> float | None:
    raw = values.get(name)
    if raw is None or raw == "":
        return None
    try:
        number = float(raw.strip())
    except ValueError:
        raise InvalidParameter(f"{name} must be a number, got {raw[:20]!r}") from None
    if not low <= number <= high or (integer and not number.is_integer()):
        kind = "an integer" if integer else "a number"
        raise InvalidParameter(
            f"{name} must be {kind} between {low:g} and {high:g}, got {raw[:20]!r}"
        )
    return number


def parse_list_query(values: Mapping[str, str], labels: Sequence[str]) -> ListQuery:
    """The filters of `GET /v1/images` (`labels`: every `label` parameter given)."""
    wanted = tuple(dict.fromkeys(label.strip().lower() for label in labels if label.strip()))
    if len(wanted) > MAX_LABEL_FILTERS:
        raise InvalidParameter(f"at most {MAX_LABEL_FILTERS} label filters, got {len(wanted)}")
    page_size = _number_filter(values, "page_size", 1, MAX_PAGE_SIZE, True)
    min_score = _number_filter(values, "min_score", 0, 1, False)
    min_count = _number_filter(values, "min_count", 1, 10_000, True)
    camera = (values.get("camera_model") or "").strip() or None
    prefix = values.get("name_prefix") or None
    return ListQuery(
        labels=wanted,
        min_score=min_score if min_score is not None else 0.0,
        min_count=int(min_count) if min_count is not None else 1,
        uploaded_after=_datetime_filter(values, "uploaded_after"),
        uploaded_before=_datetime_filter(values, "uploaded_before"),
        taken_after=_datetime_filter(values, "taken_after"),
        taken_before=_datetime_filter(values, "taken_before"),
        camera_model=camera[:128] if camera else None,
        name_prefix=prefix[:MAX_NAME_CHARS] if prefix else None,
        sha256=_hex_filter(values, "sha256"),
        pixel_sha256=_hex_filter(values, "pixel_sha256"),
        page_size=int(page_size) if page_size is not None else DEFAULT_PAGE_SIZE,
        page_token=values.get("page_token") or None,
    )


def like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def filtered(owner: str, query: ListQuery) -> Select[Image, Blob]:
    statement = (
        select(Image, Blob).join(Blob, Blob.sha256 == Image.blob_sha256).where(Image.owner == owner)
    )
    for label in query.labels:
        matching = (
            select(Detection.image_id)
            .where(
                Detection.owner == owner,
                Detection.label == label,
                Detection.score >= query.min_score,
            )
            .group_by(Detection.image_id)
            .having(func.count(Detection.id) >= query.min_count)
        )
        statement = statement.where(Image.id.in_(matching))
    if query.uploaded_after is not None:
        statement = statement.where(Image.uploaded_at > query.uploaded_after)
    if query.uploaded_before is not None:
        statement = statement.where(Image.uploaded_at < query.uploaded_before)
    if query.taken_after is not None:
        statement = statement.where(Image.taken_at > query.taken_after)
    if query.taken_before is not None:
        statement = statement.where(Image.taken_at < query.taken_before)
    if query.camera_model is not None:
        statement = statement.where(func.lower(Image.camera_model) == query.camera_model.lower())
    if query.name_prefix is not None:
        statement = statement.where(
            Image.original_name.like(like_prefix(query.name_prefix), escape="\\")
        )
    if query.sha256 is not None:
        statement = statement.where(
            (Image.blob_sha256 == query.sha256) | (Image.source_sha256 == query.sha256)
        )
    if query.pixel_sha256 is not None:
        statement = statement.where(Image.pixel_sha256 == query.pixel_sha256)
    return statement
