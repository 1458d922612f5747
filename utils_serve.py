"""The wire edge of the service: errors, authentication, request bodies, parameter parsing,
base64, image loading with limits, and response building.

Nothing here holds per-request state between calls; every function takes what it needs and
returns a new value.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar, Literal, Protocol

from image_header import ImageHeaderError, read_image_header
from predict import (
    DetectionParams,
    DetectionResult,
    ImageArray,
    ImageDecodeError,
    ModelInfo,
    decode_image,
)

# --------------------------------------------------------------------------------------------
# Errors: one hierarchy, each class with an HTTP status, a stable code and Google's status name
# --------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answered to the caller. `public_message` is shown; `detail` is only logged."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    google_status: ClassVar[str] = "INTERNAL"
    grpc_code: ClassVar[int] = 13

    def __init__(self, public_message: str, detail: str | None = None) -> None:
        super().__init__(public_message)
        self.public_message = public_message
        self.detail = detail

    def to_envelope(self) -> dict[str, Any]:
        """Google's whole-request error envelope, plus our stable `reason` code."""
        return {
            "error": {
                "code": self.status,
                "message": self.public_message,
                "status": self.google_status,
                "reason": self.code,
            }
        }

    def to_status(self) -> dict[str, Any]:
        """A per-image error, shaped like google.rpc.Status inside a batch response."""
        return {"error": {"code": self.grpc_code, "message": self.public_message}}


class BadRequest(ApiError):
    status, code, google_status, grpc_code = 400, "bad_request", "INVALID_ARGUMENT", 3


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


class Unauthenticated(ApiError):
    status, code, google_status, grpc_code = 401, "unauthenticated", "UNAUTHENTICATED", 16


class NotFound(ApiError):
    status, code, google_status, grpc_code = 404, "not_found", "NOT_FOUND", 5


class UnknownModel(NotFound):
    code = "unknown_model"


class MethodNotAllowed(ApiError):
    status, code, google_status, grpc_code = 405, "method_not_allowed", "UNIMPLEMENTED", 12


class PayloadTooLarge(ApiError):
    status, code, google_status, grpc_code = 413, "payload_too_large", "INVALID_ARGUMENT", 3


class UnsupportedMediaType(ApiError):
    status, code, google_status, grpc_code = (
        415,
        "unsupported_media_type",
        "INVALID_ARGUMENT",
        3,
    )


class NotAcceptable(ApiError):
    status, code, google_status, grpc_code = 406, "not_acceptable", "INVALID_ARGUMENT", 3


class ServiceUnavailable(ApiError):
    status, code, google_status, grpc_code = 503, "unavailable", "UNAVAILABLE", 14


# --------------------------------------------------------------------------------------------
# What the wire edge needs of a detector (tests inject their own)
# --------------------------------------------------------------------------------------------


class DetectorLike(Protocol):
    info: ModelInfo
    ready: bool

    def detect(self, image: ImageArray, params: DetectionParams) -> DetectionResult: ...


@dataclass(frozen=True)
class ModelRegistry:
    """The models one worker serves, by name, and the one used when a request names none."""

    detectors: Mapping[str, DetectorLike]
    default: str

    def __post_init__(self) -> None:
        if self.default not in self.detectors:
            raise ValueError(f"default model {self.default!r} is not among the loaded models")

    @property
    def ready(self) -> bool:
        return all(detector.ready for detector in self.detectors.values())

    def resolve(self, name: Any) -> str:
        """The loaded model a request asks for; Google's `builtin/...` means the default."""
        if name is None or name == "" or (isinstance(name, str) and name.startswith("builtin/")):
            return self.default
        if not isinstance(name, str) or name not in self.detectors:
            raise UnknownModel(
                f"unknown model {str(name)[:80]!r}; this service has "
                f"{', '.join(sorted(self.detectors))}"
            )
        return name

    def detector(self, name: str) -> DetectorLike:
        return self.detectors[name]


# --------------------------------------------------------------------------------------------
# Authentication
# --------------------------------------------------------------------------------------------


def presented_token(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The token the caller sent, from the first of the accepted places that has one."""
    lowered = {name.lower(): value for name, value in headers.items()}
    token = lowered.get("x-api-token") or lowered.get("x-goog-api-key")
    if token:
        return token
    scheme, _, credentials = (lowered.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return query.get("key") or None


def check_token(presented: str | None, accepted: Sequence[str]) -> None:
    """Constant-time comparison against every accepted token (several allow rotation)."""
    if not presented:
        raise Unauthenticated(
            "missing API token: send it in the X-Api-Token header, as "
            "'Authorization: Bearer <token>', as x-goog-api-key or as ?key="
        )
    # compare_digest raises TypeError on non-ASCII str; bytes work for any header value.
    presented_bytes = presented.encode("utf-8", "surrogateescape")
    matched = False
    for token in accepted:
        matched |= hmac.compare_digest(presented_bytes, token.encode("utf-8"))
    if not matched:
        raise Unauthenticated("invalid API token")


# --------------------------------------------------------------------------------------------
# Request bodies
# --------------------------------------------------------------------------------------------


def read_body(stream: IO[bytes], content_length: int | None, max_bytes: int) -> bytes:
    """Read the whole body, refusing more than `max_bytes`.

    A chunked body has no Content-Length, and Werkzeug would silently truncate it at its
    limit; reading one byte past the limit ourselves turns that into a 413.
    """
    if content_length is not None and content_length > max_bytes:
        raise PayloadTooLarge(f"request body is larger than the limit of {max_bytes} bytes")
    chunks: list[bytes] = []
    received = 0
    if content_length is not None:
        # One read into one buffer: a raw image body is then decoded without another copy.
        first = stream.read(content_length)
        if len(first) == content_length:
            return first
        chunks.append(first)
        received = len(first)
    while True:
        chunk = stream.read(min(1 << 20, max_bytes + 1 - received))
        if not chunk:
            break
        chunks.append(chunk)
        received += len(chunk)
        if received > max_bytes:
            raise PayloadTooLarge(f"request body is larger than the limit of {max_bytes} bytes")
    return b"".join(chunks)


def is_json_mimetype(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def parse_json_body(body: bytes) -> Any:
    if not body:
        raise InvalidJson("the request body is empty; send a JSON object")
    try:
        return json.loads(body)
    except RecursionError:
        raise InvalidJson("the JSON body is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise InvalidJson("the request body is not valid JSON", detail=str(exc)) from None


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------

# (our name, accepted spellings, kind, low, high). Fractions and thresholds live in [0, 1].
_PARAMETERS: tuple[tuple[str, tuple[str, ...], type, float, float], ...] = (
    ("score_threshold", ("score_th", "scoreTh"), float, 0.0, 1.0),
    ("nms_iou_threshold", ("nms_iou", "nmsIou"), float, 0.0, 1.0),
    ("min_height_fraction", ("min_height", "minHeight"), float, 0.0, 1.0),
    ("min_width_fraction", ("min_width", "minWidth"), float, 0.0, 1.0),
    ("max_results", ("maxResults", "max_results"), int, 0, 1000),
)


def _parameter_value(raw: Any, name: str, kind: type, low: float, high: float) -> float | int:
    # bool is an int in Python, but `true` is never a threshold.
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise InvalidParameter(f"{name} must be a number, got {type(raw).__name__}")
    if kind is int:
        if isinstance(raw, float) and not raw.is_integer():
            raise InvalidParameter(f"{name} must be an integer, got {raw!r}")
        value: float | int = int(raw)
    else:
        value = float(raw)
    if not (math.isfinite(value) and low <= value <= high):
        raise InvalidParameter(f"{name} must be between {low:g} and {high:g}, got {raw!r}")
    return value


CLASSES_FIELDS = ("classes",)
AGNOSTIC_FIELDS = ("agnostic_nms", "agnosticNms")
PARAMETER_FIELDS = frozenset(
    [s for _, spellings, *_ in _PARAMETERS for s in spellings]
    + list(CLASSES_FIELDS)
    + list(AGNOSTIC_FIELDS)
)
_TRUE_WORDS = {"1", "true", "yes", "on"}
_FALSE_WORDS = {"0", "false", "no", "off"}


def params_from_strings(values: Mapping[str, str]) -> dict[str, Any]:
    """Parameters given as text (form fields, query strings) turned into JSON-like values;
    range checks follow in `parse_detection_params`, as for JSON."""
    numbers: dict[str, Any] = {}
    for name in AGNOSTIC_FIELDS:
        text = values.get(name)
        if text is not None:
            word = text.strip().lower()
            if word not in _TRUE_WORDS | _FALSE_WORDS:
                raise InvalidParameter(f"{name} must be true or false, got {text[:20]!r}")
            numbers[name] = word in _TRUE_WORDS
    if values.get("classes") is not None:
        # Kept as text: "dog,car" or "16,2" is split when the model's names are known.
        numbers["classes"] = values["classes"]
    for _, spellings, kind, _low, _high in _PARAMETERS:
        for name in spellings:
            text = values.get(name)
            if text is None:
                continue
            try:
                number = float(text.strip())
            except ValueError:
                raise InvalidParameter(f"{name} must be a number, got {text[:40]!r}") from None
            if kind is int and number.is_integer():
                numbers[name] = int(number)
            else:
                numbers[name] = number
    return numbers


def _is_integer_text(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts characters such as "²" that int() refuses."""
    return text.isascii() and text.isdigit()


def parse_class_filter(raw: Any, class_names: Sequence[str]) -> frozenset[int]:
    """`classes` as names or ids (a list, or a comma-separated string) -> class ids."""
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items:
        raise InvalidParameter("classes must be a non-empty list of class names or ids")
    by_name = {name.lower(): index for index, name in enumerate(class_names)}
    ids = set()
    for item in items:
        if isinstance(item, str) and _is_integer_text(item.strip()):
            item = int(item.strip())
        if isinstance(item, int) and not isinstance(item, bool):
            if not 0 <= item < len(class_names):
                raise InvalidParameter(
                    f"classes: id {item} is out of range 0..{len(class_names) - 1}"
                )
            ids.add(item)
        elif isinstance(item, str) and item.strip().lower() in by_name:
            ids.add(by_name[item.strip().lower()])
        else:
            raise InvalidParameter(
                f"classes: unknown class {str(item)[:40]!r}; see GET /v1/models for the names"
            )
    return frozenset(ids)


def _given_spelling(feature: Mapping[str, Any], spellings: Sequence[str]) -> str | None:
    """The one spelling of a parameter the caller used, if any; two at once is an error."""
    present = [s for s in spellings if feature.get(s) is not None]
    if len(present) > 1:
        raise InvalidParameter(f"give either {present[0]} or {present[1]}, not both")
    return present[0] if present else None


def _agnostic_value(feature: Mapping[str, Any], default: bool) -> bool:
    spelling = _given_spelling(feature, AGNOSTIC_FIELDS)
    if spelling is None:
        return default
    value = feature[spelling]
    if not isinstance(value, bool):
        raise InvalidParameter(f"{spelling} must be true or false, got {value!r}")
    return value


def parse_detection_params(
    feature: Mapping[str, Any],
    defaults: DetectionParams,
    zero_max_results_is_default: bool,
    class_names: Sequence[str] = (),
) -> DetectionParams:
    """Parameters from a feature object. An explicit 0 is honoured; None means "default".

    Google's proto3 JSON cannot tell an unset `maxResults` from 0, so the Google routes pass
    `zero_max_results_is_default=True` to read 0 as "default" there, as Google does.
    `classes` names are those of the model the request runs on.
    """
    values: dict[str, float | int] = {}
    for attribute, spellings, kind, low, high in _PARAMETERS:
        spelling = _given_spelling(feature, spellings)
        if spelling is None:
            continue
        value = _parameter_value(feature[spelling], spelling, kind, low, high)
        if attribute == "max_results" and value == 0 and zero_max_results_is_default:
            continue
        values[attribute] = value
    return DetectionParams(
        score_threshold=float(values.get("score_threshold", defaults.score_threshold)),
        nms_iou_threshold=float(values.get("nms_iou_threshold", defaults.nms_iou_threshold)),
        min_height_fraction=float(values.get("min_height_fraction", defaults.min_height_fraction)),
        min_width_fraction=float(values.get("min_width_fraction", defaults.min_width_fraction)),
        max_results=int(values.get("max_results", defaults.max_results)),
        class_ids=(
            parse_class_filter(feature["classes"], class_names)
            if feature.get("classes") is not None
            else defaults.class_ids
        ),
        class_agnostic=_agnostic_value(feature, defaults.class_agnostic),
    )


# --------------------------------------------------------------------------------------------
# Base64 and images
# --------------------------------------------------------------------------------------------

_DATA_URI = re.compile(r"^data:[\w.+/-]*(;[\w=.+-]+)*;base64,", re.IGNORECASE)
_URL_SAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_WHITESPACE = b" \t\r\n"


def decode_base64(content: str | bytes) -> bytes:
    """Standard or URL-safe base64, padding optional, an optional `data:...;base64,` prefix."""
    if isinstance(content, str):
        match = _DATA_URI.match(content)
        if match:
            content = content[match.end() :]
        elif content.startswith("data:"):
            raise InvalidBase64("a data URI must be base64 encoded (data:<type>;base64,...)")
        try:
            raw = content.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidBase64("image content is not valid base64") from None
    else:
        raw = content
    # MIME-style line breaks are common in hand-made payloads; they carry no data.
    raw = raw.translate(_URL_SAFE_TO_STANDARD, _WHITESPACE)
    if not raw:
        raise InvalidBase64("image content is empty")
    if len(raw) % 4 == 1:
        raise InvalidBase64("image content is not valid base64 (bad length)")
    raw = raw.rstrip(b"=")
    raw += b"=" * (-len(raw) % 4)
    try:
        return base64.b64decode(raw, validate=True)
    except binascii.Error:
        raise InvalidBase64("image content is not valid base64") from None


def load_image(data: bytes, max_pixels: int) -> ImageArray:
    """Check the header's pixel count against the limit, then decode."""
    try:
        header = read_image_header(data)
    except ImageHeaderError as exc:
        raise InvalidImage(str(exc)) from None
    if header.pixels > max_pixels:
        raise ImageTooLarge(
            f"the image is {header.width}x{header.height} = {header.pixels} pixels; "
            f"the limit is {max_pixels}"
        )
    try:
        return decode_image(data)
    except ImageDecodeError as exc:
        raise InvalidImage(str(exc)) from None


# --------------------------------------------------------------------------------------------
# Annotate requests (our JSON and Google's images:annotate)
# --------------------------------------------------------------------------------------------

# Problems with one image's content: answered in that image's place, the others still run.
PER_IMAGE_ERRORS = (InvalidBase64, InvalidImage, ImageTooLarge, UnsupportedFeature, UnknownModel)

OBJECT_LOCALIZATION = "OBJECT_LOCALIZATION"
# Google's Feature.Type enum, so that integer types (as the official client sends) read right.
GOOGLE_FEATURE_TYPES = {
    0: "TYPE_UNSPECIFIED",
    1: "FACE_DETECTION",
    2: "LANDMARK_DETECTION",
    3: "LOGO_DETECTION",
    4: "LABEL_DETECTION",
    5: "TEXT_DETECTION",
    6: "SAFE_SEARCH_DETECTION",
    7: "IMAGE_PROPERTIES",
    9: "CROP_HINTS",
    10: "WEB_DETECTION",
    11: "DOCUMENT_TEXT_DETECTION",
    12: "PRODUCT_SEARCH",
    19: "OBJECT_LOCALIZATION",
}

Dialect = Literal["native", "google"]


@dataclass(frozen=True)
class ImageTask:
    """One element of a batch: the encoded image and the parameters to run it with."""

    image_bytes: bytes
    params: DetectionParams
    # The registry name of the model to run, already checked to exist.
    model: str
    # Form fields that are not parameters, echoed back so callers can correlate results.
    fields: Mapping[str, str] = field(default_factory=dict)


def _feature_type_name(raw: Any) -> str:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return GOOGLE_FEATURE_TYPES.get(raw, str(raw))
    return str(raw).upper()


def _feature_for(element: Mapping[str, Any], dialect: Dialect) -> Mapping[str, Any]:
    """The feature holding this element's parameters; Google routes require the type."""
    features = element.get("features")
    if features is None:
        features = []
    if not isinstance(features, list) or not all(isinstance(f, dict) for f in features):
        raise InvalidRequest("features must be a list of objects")
    if dialect == "native":
        return dict(features[0]) if features else {}
    if not features:
        raise UnsupportedFeature(
            f"no feature requested; this service answers type {OBJECT_LOCALIZATION}"
        )
    types = [_feature_type_name(f.get("type", 0)) for f in features]
    unsupported = sorted({t for t in types if t != OBJECT_LOCALIZATION})
    if unsupported:
        raise UnsupportedFeature(
            f"unsupported feature type {', '.join(unsupported)}; "
            f"this service answers type {OBJECT_LOCALIZATION} only"
        )
    return dict(features[0])


def _image_bytes(element: Mapping[str, Any]) -> bytes:
    image = element.get("image")
    if not isinstance(image, dict):
        raise InvalidRequest("needs an image object with base64 content")
    content = image.get("content")
    if content is None:
        if image.get("source") is not None:
            raise InvalidImage(
                "image.source (URIs) is not supported: send the image bytes in image.content"
            )
        raise InvalidRequest("image.content is missing")
    if not isinstance(content, str):
        raise InvalidBase64("image.content must be a base64 string")
    return decode_base64(content)


def parse_annotate_request(
    payload: Any,
    max_images: int,
    dialect: Dialect,
    registry: ModelRegistry,
    defaults: DetectionParams,
) -> list[ImageTask | ApiError]:
    """Split a batch into tasks. Errors of the whole request raise; an element's own error
    takes its place in the list so that the other images are still answered."""
    if not isinstance(payload, dict):
        raise InvalidRequest("the body must be a JSON object with a 'requests' list")
    elements = payload.get("requests")
    if not isinstance(elements, list):
        raise InvalidRequest("the body needs a 'requests' list")
    if not elements:
        raise InvalidRequest("'requests' is empty; send at least one image")
    if len(elements) > max_images:
        raise TooManyImages(f"at most {max_images} images per request, got {len(elements)}")
    tasks: list[ImageTask | ApiError] = []
    for index, element in enumerate(elements):
        try:
            if not isinstance(element, dict):
                raise InvalidRequest("must be an object")
            feature = _feature_for(element, dialect)
            model = registry.resolve(feature.get("model"))
            params = parse_detection_params(
                feature,
                defaults,
                zero_max_results_is_default=dialect == "google",
                class_names=registry.detector(model).info.class_names,
            )
            tasks.append(ImageTask(_image_bytes(element), params, model))
        except PER_IMAGE_ERRORS as exc:
            tasks.append(exc)
        except ApiError as exc:
            # A malformed request or parameter is the caller's bug: the whole request fails,
            # naming the element.
            raise type(exc)(f"requests[{index}]: {exc.public_message}", exc.detail) from None
    return tasks


# --------------------------------------------------------------------------------------------
# Multipart, form and raw-body requests
# --------------------------------------------------------------------------------------------

InputKind = Literal["json", "multipart", "form", "raw"]
IMAGE_FIELDS = frozenset({"image", "images"})
# Form fields and query parameters that steer the service rather than being echoed back.
CONTROL_FIELDS = frozenset({"format", "max_side", "key", "api_key", "min_confidence", "model"})
RAW_MIMETYPES = frozenset({"application/octet-stream"})


def input_kind(mimetype: str) -> InputKind:
    """How the body carries its images, from its Content-Type."""
    if is_json_mimetype(mimetype):
        return "json"
    if mimetype == "multipart/form-data":
        return "multipart"
    if mimetype == "application/x-www-form-urlencoded":
        return "form"
    if mimetype in RAW_MIMETYPES or mimetype.startswith("image/"):
        return "raw"
    raise UnsupportedMediaType(
        f"Content-Type {mimetype or '(none)'} is not supported: send application/json, "
        "multipart/form-data, application/x-www-form-urlencoded, or the image itself as "
        "application/octet-stream or image/*"
    )


def params_from_fields(
    query: Mapping[str, str],
    form: Mapping[str, str],
    defaults: DetectionParams,
    registry: ModelRegistry,
) -> tuple[str, DetectionParams]:
    """The model and parameters from the query string, overridden by form fields of the same
    name. An unknown model fails the whole request here (404)."""
    model = registry.resolve(form.get("model") or query.get("model"))
    merged = {**params_from_strings(query), **params_from_strings(form)}
    params = parse_detection_params(
        merged,
        defaults,
        zero_max_results_is_default=False,
        class_names=registry.detector(model).info.class_names,
    )
    return model, params


class UploadedFile(Protocol):
    def read(self) -> bytes: ...


class MultiValueMapping(Protocol):
    """What both werkzeug's MultiDict and a plain test double offer."""

    def getlist(self, key: str) -> list[Any]: ...

    def __iter__(self) -> Iterator[str]: ...

    def get(self, key: str) -> Any: ...


def _uploaded_parts(files: MultiValueMapping) -> list[UploadedFile]:
    """File parts in the order the caller meant: all `image` parts as sent, else numbered
    fields sorted as integers, else the parts of the only file field there is."""
    names = list(dict.fromkeys(files))
    if "image" in names:
        return files.getlist("image")
    numbered = sorted((n for n in names if _is_integer_text(n)), key=int)
    if numbered and len(numbered) == len(names):
        return [part for name in numbered for part in files.getlist(name)]
    if len(names) == 1:
        return files.getlist(names[0])
    if names:
        raise InvalidRequest(
            f"file fields {', '.join(sorted(names))}: name them 'image' (repeat it for "
            "several images) or '0', '1', ..."
        )
    return []


def tasks_from_form(
    files: MultiValueMapping,
    form: MultiValueMapping,
    query: Mapping[str, str],
    max_images: int,
    registry: ModelRegistry,
    defaults: DetectionParams,
) -> list[ImageTask | ApiError]:
    """Images from file parts and from base64 `image` / `images` fields, in that order."""
    single_form = {name: form.get(name) for name in form}
    model, params = params_from_fields(query, single_form, defaults, registry)
    echoed = {
        name: str(value)
        for name, value in single_form.items()
        if name not in PARAMETER_FIELDS | CONTROL_FIELDS | IMAGE_FIELDS
        and not _is_integer_text(name)
    }
    parts = _uploaded_parts(files)
    texts = [*form.getlist("image"), *form.getlist("images")]
    count = len(parts) + len(texts)
    if not count:
        raise InvalidRequest(
            "no image: send a file field 'image' (multipart/form-data) or a base64 field "
            "'image' or 'images'"
        )
    # Counted before anything is read or decoded: a refused request costs no work.
    if count > max_images:
        raise TooManyImages(f"at most {max_images} images per request, got {count}")
    sources: list[bytes | ApiError] = [part.read() for part in parts]
    for text in texts:
        try:
            sources.append(decode_base64(text))
        except InvalidBase64 as exc:
            sources.append(exc)
    return [
        source if isinstance(source, ApiError) else ImageTask(source, params, model, echoed)
        for source in sources
    ]


def task_from_raw(
    body: bytes, query: Mapping[str, str], registry: ModelRegistry, defaults: DetectionParams
) -> list[ImageTask | ApiError]:
    """The body is the image itself; thresholds come from the query string."""
    if not body:
        raise InvalidRequest("the body is empty: send the image bytes")
    model, params = params_from_fields(query, {}, defaults, registry)
    return [ImageTask(body, params, model)]


# --------------------------------------------------------------------------------------------
# Output: JSON or the picture with its detections drawn
# --------------------------------------------------------------------------------------------

OutputKind = Literal["json", "png", "jpeg"]
_FORMATS: Mapping[str, OutputKind] = {"json": "json", "png": "png", "jpeg": "jpeg", "jpg": "jpeg"}
ACCEPTABLE = ("application/json", "image/png", "image/jpeg")
MAX_SIDE_RANGE = (16, 10_000)


@dataclass(frozen=True)
class OutputRequest:
    kind: OutputKind
    max_side: int | None = None


def requested_output(query: Mapping[str, str], accepted_mimetype: str | None) -> OutputRequest:
    """`?format=` wins over the Accept header's best match among ACCEPTABLE."""
    name = query.get("format")
    if name is not None:
        kind = _FORMATS.get(name.strip().lower())
        if kind is None:
            raise InvalidParameter(f"format must be json, png or jpeg, got {name[:20]!r}")
    elif accepted_mimetype == "image/png":
        kind = "png"
    elif accepted_mimetype == "image/jpeg":
        kind = "jpeg"
    else:
        kind = "json"
    max_side = None
    raw_side = query.get("max_side")
    if raw_side is not None:
        low, high = MAX_SIDE_RANGE
        if not _is_integer_text(raw_side.strip()) or not low <= int(raw_side) <= high:
            raise InvalidParameter(
                f"max_side must be an integer between {low} and {high}, got {raw_side[:20]!r}"
            )
        max_side = int(raw_side)
    return OutputRequest(kind, max_side)


# --------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------


def _round(value: float, digits: int = 6) -> float:
    return round(float(value), digits)


def object_annotations(result: DetectionResult, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Google's LocalizedObjectAnnotation list, best score first, corners TL, TR, BR, BL."""
    width, height = result.image_width, result.image_height
    items = []
    detections = result.detections
    for (x1, y1, x2, y2), score, class_id in zip(
        detections.xyxy.tolist(),
        detections.scores.tolist(),
        detections.class_ids.tolist(),
        strict=True,
    ):
        corners = ((x1, y1), (x2, y1), (x2, y2), (x1, y2))
        items.append(
            {
                "mid": "",
                "name": class_names[class_id],
                "score": _round(score, 4),
                "classId": int(class_id),
                "boundingPoly": {
                    "vertices": [{"x": round(x), "y": round(y)} for x, y in corners],
                    "normalizedVertices": [
                        {"x": _round(x / width), "y": _round(y / height)} for x, y in corners
                    ],
                },
            }
        )
    return items


def image_response(
    result: DetectionResult, info: ModelInfo, params: DetectionParams, dialect: Dialect
) -> dict[str, Any]:
    response: dict[str, Any] = {
        "localizedObjectAnnotations": object_annotations(result, info.class_names)
    }
    if dialect == "native":
        # Our own additions; a Google client ignores unknown fields.
        response["imageSize"] = {"width": result.image_width, "height": result.image_height}
        response["model"] = info.name
        response["parameters"] = {
            "score_th": params.score_threshold,
            "nms_iou": params.nms_iou_threshold,
            "min_height": params.min_height_fraction,
            "min_width": params.min_width_fraction,
            "maxResults": params.max_results,
            "classes": sorted(params.class_ids) if params.class_ids is not None else None,
            "agnostic_nms": params.class_agnostic,
        }
        response["timingsMs"] = {k: _round(v, 2) for k, v in result.timings_ms.items()}
    return response


def detect_one(
    task: ImageTask, registry: ModelRegistry, max_pixels: int
) -> tuple[ImageArray, DetectionResult]:
    """Decode (with the pixel limit) and detect one image; raises ApiError for a bad one."""
    image = load_image(task.image_bytes, max_pixels)
    return image, registry.detector(task.model).detect(image, task.params)


def run_tasks(
    tasks: Iterable[ImageTask | ApiError],
    registry: ModelRegistry,
    max_pixels: int,
    dialect: Dialect,
) -> list[dict[str, Any]]:
    """Run every task in order; a failing image becomes its own error entry."""
    responses: list[dict[str, Any]] = []
    for task in tasks:
        if isinstance(task, ApiError):
            responses.append(task.to_status())
            continue
        try:
            _, result = detect_one(task, registry, max_pixels)
        except ApiError as exc:
            responses.append(exc.to_status())
            continue
        info = registry.detector(task.model).info
        response = image_response(result, info, task.params, dialect)
        if task.fields:
            response["fields"] = dict(task.fields)
        responses.append(response)
    return responses


# --------------------------------------------------------------------------------------------
# DeepStack / CodeProject.AI
# --------------------------------------------------------------------------------------------

# DeepStack's own default confidence; it filters by nothing else, so neither do we here.
DEEPSTACK_DEFAULTS = DetectionParams(
    score_threshold=0.4,
    nms_iou_threshold=0.4,
    min_height_fraction=0.0,
    min_width_fraction=0.0,
    max_results=100,
)


def deepstack_task(
    files: MultiValueMapping,
    form: MultiValueMapping,
    query: Mapping[str, str],
    registry: ModelRegistry,
) -> ImageTask:
    """DeepStack's request: one multipart file `image`, `min_confidence` as the threshold."""
    parts = files.getlist("image")
    if len(parts) != 1:
        raise InvalidRequest(
            f"send exactly one image in the multipart file field 'image' (got {len(parts)})"
        )
    fields = {name: form.get(name) for name in form}
    confidence = fields.pop("min_confidence", None) or query.get("min_confidence")
    if confidence is not None:
        if "score_th" in fields:
            raise InvalidParameter("give either min_confidence or score_th, not both")
        fields["score_th"] = confidence
    model, params = params_from_fields(query, fields, DEEPSTACK_DEFAULTS, registry)
    return ImageTask(parts[0].read(), params, model)


def deepstack_response(result: DetectionResult, info: ModelInfo) -> dict[str, Any]:
    detections = result.detections
    predictions = [
        {
            "label": info.class_names[class_id],
            "confidence": _round(score, 4),
            "x_min": round(x1),
            "y_min": round(y1),
            "x_max": round(x2),
            "y_max": round(y2),
        }
        for (x1, y1, x2, y2), score, class_id in zip(
            detections.xyxy.tolist(),
            detections.scores.tolist(),
            detections.class_ids.tolist(),
            strict=True,
        )
    ]
    timings = result.timings_ms
    return {
        "success": True,
        "predictions": predictions,
        "count": len(predictions),
        "message": f"Found {len(predictions)} objects" if predictions else "No objects found",
        "inferenceMs": _round(timings.get("inference", 0.0), 2),
        "processMs": _round(sum(timings.values()), 2),
        "code": 200,
        "command": "detect",
        "moduleId": info.name,
        "executionProvider": "CPU",
    }


def deepstack_error(error: ApiError) -> dict[str, Any]:
    return {"success": False, "error": error.public_message, "code": error.status}


def model_description(info: ModelInfo, is_default: bool) -> dict[str, Any]:
    defaults = info.default_params
    return {
        "name": info.name,
        "default": is_default,
        "family": info.family,
        "description": info.description,
        "source": info.source,
        "inputSize": {"width": info.input_width, "height": info.input_height},
        "classNames": list(info.class_names),
        "sha256": info.sha256,
        "license": info.license,
        "executionProviders": list(info.execution_providers),
        "intraOpThreads": info.intra_op_threads,
        "defaults": {
            "score_th": defaults.score_threshold,
            "nms_iou": defaults.nms_iou_threshold,
            "min_height": defaults.min_height_fraction,
            "min_width": defaults.min_width_fraction,
            "maxResults": defaults.max_results,
        },
    }
