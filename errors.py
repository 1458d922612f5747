"""The errors the service answers with: one tree, each class with its HTTP status and a stable
`code` that clients may branch on.

`public_message` is what the caller reads; `detail` is only logged (it may name files or
library internals). How an error is written on the wire is each protocol's business
(`dialects/`): this module knows no wire format and imports nothing of the service.
"""

from __future__ import annotations

from typing import ClassVar


class ApiError(Exception):
    """An error answered to the caller."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, public_message: str, detail: str | None = None) -> None:
        super().__init__(public_message)
        self.public_message = public_message
        self.detail = detail

    def headers(self) -> dict[str, str]:
        """HTTP headers that belong with this error (`Retry-After`, ...); none by default."""
        return {}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class InvalidJson(BadRequest):
    code = "invalid_json"


class InvalidRequest(BadRequest):
    code = "invalid_request"


class InvalidParameter(BadRequest):
    code = "invalid_parameter"


class InvalidBase64(BadRequest):
    code = "invalid_base64"


class InvalidImage(BadRequest):
    code = "invalid_image"


class ImageTooLarge(BadRequest):
    code = "image_too_large"


class TooManyImages(BadRequest):
    code = "too_many_images"


class UnsupportedFeature(BadRequest):
    code = "unsupported_feature"


class InvalidPageToken(BadRequest):
    """A list's `page_token` that this service did not sign, or signed for another query."""

    code = "invalid_page_token"


class Unauthenticated(ApiError):
    status, code = 401, "unauthenticated"


class NotFound(ApiError):
    status, code = 404, "not_found"


class UnknownModel(NotFound):
    code = "unknown_model"


class ImageNotFound(NotFound):
    """No stored image with this id, or one of another owner (never told apart)."""

    code = "image_not_found"


class MethodNotAllowed(ApiError):
    status, code = 405, "method_not_allowed"


class NotAcceptable(ApiError):
    status, code = 406, "not_acceptable"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class UnsupportedImageFormat(UnsupportedMediaType):
    """An upload that is not an image, or not in a format the repository stores."""

    code = "unsupported_image_format"


class RangeNotSatisfiable(ApiError):
    status, code = 416, "range_not_satisfiable"


class UndecodableImage(ApiError):
    """The header is that of an accepted format, but the pixels cannot be decoded."""

    status, code = 422, "undecodable_image"


class ServiceUnavailable(ApiError):
    status, code = 503, "unavailable"


class RepositoryDisabled(ServiceUnavailable):
    """This service runs without an image repository (no DATA_DIR)."""

    code = "repository_disabled"


class RepositoryBusy(ServiceUnavailable):
    """The database stayed locked longer than its busy timeout: try again shortly."""

    code = "repository_busy"

    def __init__(
        self, public_message: str, detail: str | None = None, retry_after_s: int = 1
    ) -> None:
        super().__init__(public_message, detail)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class InsufficientStorage(ApiError):
    """The disk (or quota) under DATA_DIR is full."""

    status, code = 507, "insufficient_storage"


def error_classes() -> list[type[ApiError]]:
    """Every class of the tree, the base first, then depth-first in definition order (the
    OpenAPI document lists their codes from here)."""
    found: list[type[ApiError]] = []

    def walk(cls: type[ApiError]) -> None:
        found.append(cls)
        for sub in cls.__subclasses__():
            walk(sub)

    walk(ApiError)
    return found
