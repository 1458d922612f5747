"""The protocol-neutral core: request bodies, detection parameters, base64, the tasks a
request asks for (one image each), and running them.

Each wire protocol (`dialects/`) parses its request into `ImageTask`s with these helpers,
calls `run_tasks` and renders the outcomes its own way. Nothing here knows Flask or keeps
per-request state: every function takes what it needs and returns a new value.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import IO, Any, Literal, Protocol

from detection_types import DetectionParams, DetectionResult, ImageArray
from errors import (
    ApiError,
    ImageTooLarge,
    InvalidBase64,
    InvalidImage,
    InvalidJson,
    InvalidParameter,
    InvalidRequest,
    PayloadTooLarge,
    TooManyImages,
    UnknownModel,
    UnsupportedFeature,
    UnsupportedMediaType,
)
from image_io import load_image
from registry import ModelRegistry
from stages import detected

# --- Request bodies


def read_body(stream: IO[bytes], content_length: int | None, max_bytes: int) -> bytes:
    """Read the whole body, refusing more than `max_bytes`. A chunked body has no
    Content-Length, and Werkzeug would silently truncate it at its limit; reading one byte
    past the limit ourselves turns that into a 413."""
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


# --- Parameters


@dataclass(frozen=True)
class Parameter:
    """A detection parameter as callers spell it. Fractions and thresholds live in [0, 1]."""

    attribute: str  # the DetectionParams field it sets
    spellings: tuple[str, ...]  # accepted names, the documented one first
    kind: type
    low: float
    high: float


PARAMETERS = (
    Parameter("score_threshold", ("score_th", "scoreTh"), float, 0.0, 1.0),
    Parameter("nms_iou_threshold", ("nms_iou", "nmsIou"), float, 0.0, 1.0),
    Parameter("min_height_fraction", ("min_height", "minHeight"), float, 0.0, 1.0),
    Parameter("min_width_fraction", ("min_width", "minWidth"), float, 0.0, 1.0),
    Parameter("max_results", ("maxResults", "max_results"), int, 0, 1000),
)
CLASSES_FIELDS = ("classes",)
AGNOSTIC_FIELDS = ("agnostic_nms", "agnosticNms")
SPELLINGS = tuple(spelling for parameter in PARAMETERS for spelling in parameter.spellings)
PARAMETER_FIELDS = frozenset({*SPELLINGS, *CLASSES_FIELDS, *AGNOSTIC_FIELDS})
_TRUE_WORDS = {"1", "true", "yes", "on"}
_FALSE_WORDS = {"0", "false", "no", "off"}


def is_integer_text(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts characters such as "²" that int() refuses."""
    return text.isascii() and text.isdigit()


def _parameter_value(raw: Any, name: str, parameter: Parameter) -> float | int:
    # bool is an int in Python, but `true` is never a threshold.
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise InvalidParameter(f"{name} must be a number, got {type(raw).__name__}")
    if parameter.kind is int:
        if isinstance(raw, float) and not raw.is_integer():
            raise InvalidParameter(f"{name} must be an integer, got {raw!r}")
        value: float | int = int(raw)
    else:
        value = float(raw)
    low, high = parameter.low, parameter.high
    if not (math.isfinite(value) and low <= value <= high):
        raise InvalidParameter(f"{name} must be between {low:g} and {high:g}, got {raw!r}")
    return value


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
    for parameter in PARAMETERS:
        for name in parameter.spellings:
            text = values.get(name)
            if text is None:
                continue
            try:
                number = float(text.strip())
            except ValueError:
                raise InvalidParameter(f"{name} must be a number, got {text[:40]!r}") from None
            if parameter.kind is int and number.is_integer():
                numbers[name] = int(number)
            else:
                numbers[name] = number
    return numbers


def parse_class_filter(raw: Any, class_names: Sequence[str]) -> frozenset[int]:
    """`classes` as names or ids (a list, or a comma-separated string) -> class ids."""
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items:
        raise InvalidParameter("classes must be a non-empty list of class names or ids")
    by_name = {name.lower(): index for index, name in enumerate(class_names)}
    ids = set()
    for item in items:
        if isinstance(item, str) and is_integer_text(item.strip()):
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


def given_spelling(values: Mapping[str, Any], spellings: Sequence[str]) -> str | None:
    """The one spelling of a parameter the caller used, if any; two at once is an error."""
    present = [s for s in spellings if values.get(s) is not None]
    if len(present) > 1:
        raise InvalidParameter(f"give either {present[0]} or {present[1]}, not both")
    return present[0] if present else None


def _agnostic_value(feature: Mapping[str, Any], default: bool) -> bool:
    spelling = given_spelling(feature, AGNOSTIC_FIELDS)
    if spelling is None:
        return default
    value = feature[spelling]
    if not isinstance(value, bool):
        raise InvalidParameter(f"{spelling} must be true or false, got {value!r}")
    return value


def parse_detection_params(
    feature: Mapping[str, Any], defaults: DetectionParams, class_names: Sequence[str] = ()
) -> DetectionParams:
    """Parameters from a feature object. An explicit 0 is honoured; None means "default".
    `classes` names are those of the model the request runs on."""
    values: dict[str, Any] = {}
    for parameter in PARAMETERS:
        spelling = given_spelling(feature, parameter.spellings)
        if spelling is not None:
            values[parameter.attribute] = _parameter_value(feature[spelling], spelling, parameter)
    class_ids = defaults.class_ids
    if feature.get("classes") is not None:
        class_ids = parse_class_filter(feature["classes"], class_names)
    agnostic = _agnostic_value(feature, defaults.class_agnostic)
    return replace(defaults, **values, class_ids=class_ids, class_agnostic=agnostic)


# --- Base64 and images

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


# --- Tasks: what a request asks for, one image each

# Problems with one image's content: answered in that image's place, the others still run.
PER_IMAGE_ERRORS = (InvalidBase64, InvalidImage, ImageTooLarge, UnsupportedFeature, UnknownModel)


@dataclass(frozen=True)
class ImageTask:
    """One element of a batch: the encoded image and the parameters to run it with."""

    image_bytes: bytes
    params: DetectionParams
    # The registry name of the model to run, already checked to exist.
    model: str
    # Form fields that are not parameters, echoed back so callers can correlate results.
    fields: Mapping[str, str] = field(default_factory=dict)


def tasks_from_elements(
    elements: Sequence[Any], max_images: int, read_element: Callable[[Any], ImageTask]
) -> list[ImageTask | ApiError]:
    """One task per element of a batch. A problem with one image's content takes its place in
    the list, so that the other images are still answered; any other error is the caller's bug
    and fails the whole request, naming the element."""
    if len(elements) > max_images:
        raise TooManyImages(f"at most {max_images} images per request, got {len(elements)}")
    tasks: list[ImageTask | ApiError] = []
    for index, element in enumerate(elements):
        try:
            tasks.append(read_element(element))
        except PER_IMAGE_ERRORS as exc:
            tasks.append(exc)
        except ApiError as exc:
            raise type(exc)(f"requests[{index}]: {exc.public_message}", exc.detail) from None
    return tasks


# --- Multipart, form and raw-body requests

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
    info = registry.detector(model).info
    return model, parse_detection_params(merged, defaults, info.class_names)


class UploadedFile(Protocol):
    def read(self) -> bytes: ...


class MultiValueMapping(Protocol):  # what werkzeug's MultiDict and a test double offer
    def getlist(self, key: str) -> list[Any]: ...

    def __iter__(self) -> Iterator[str]: ...

    def get(self, key: str) -> Any: ...


def _uploaded_parts(files: MultiValueMapping) -> list[UploadedFile]:
    """File parts in the order the caller meant: all `image` parts as sent, else numbered
    fields sorted as integers, else the parts of the only file field there is."""
    names = list(dict.fromkeys(files))
    if "image" in names:
        return files.getlist("image")
    numbered = sorted((n for n in names if is_integer_text(n)), key=int)
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
        and not is_integer_text(name)
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


# --- Running tasks


@dataclass(frozen=True)
class TaskOutcome:
    """A task that ran: the detections, in the pixels of the original image."""

    task: ImageTask
    result: DetectionResult


def detect_one(
    task: ImageTask, registry: ModelRegistry, max_pixels: int
) -> tuple[ImageArray, DetectionResult]:
    """Decode (with the pixel limit) and detect one image; raises ApiError for a bad one."""
    image = load_image(task.image_bytes, max_pixels)
    result = registry.detector(task.model).detect(image, task.params)
    return image, detected(task.model, result)


def run_tasks(
    tasks: Iterable[ImageTask | ApiError], registry: ModelRegistry, max_pixels: int
) -> list[TaskOutcome | ApiError]:
    """Run every task in order; a failing image becomes its own error in the list."""
    outcomes: list[TaskOutcome | ApiError] = []
    for task in tasks:
        try:
            if isinstance(task, ApiError):
                raise task
            outcomes.append(TaskOutcome(task, detect_one(task, registry, max_pixels)[1]))
        except ApiError as exc:
            outcomes.append(exc)
    return outcomes
