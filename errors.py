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


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class InvalidJson(BadRequest):
    code = "invalid_json"


class InvalidRequest(BadRequest):
    code = "invalid_request"


class InvalidBody(BadRequest):
    code = "invalid_body"


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


class Unauthenticated(ApiError):
    status, code = 401, "unauthenticated"


class NotFound(ApiError):
    status, code = 404, "not_found"


class UnknownModel(NotFound):
    code = "unknown_model"


class MethodNotAllowed(ApiError):
    status, code = 405, "method_not_allowed"


class NotAcceptable(ApiError):
    status, code = 406, "not_acceptable"


class RequestTimeout(ApiError):
    status, code = 408, "request_timeout"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class ServiceUnavailable(ApiError):
    status, code = 503, "unavailable"


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
