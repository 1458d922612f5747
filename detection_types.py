"""The value types and errors that the detection modules share (`predict`, `manifests`,
`families`): what goes into the detector and what comes out of it. No I/O here, and no logic
beyond a value's own consistency checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
ImageArray = npt.NDArray[np.uint8]

Resize = Literal["letterbox", "stretch"]
PadPosition = Literal["top_left", "center"]
ChannelOrder = Literal["bgr", "rgb"]
CellCenter = Literal["pixel_center", "corner", "center"]
ModelSource = Literal["manifest", "onnx metadata"]


class DetectorError(Exception):
    """Base of the errors raised by the detection modules (`predict`, `manifests`,
    `families`); messages are safe to show to a caller."""


class ModelLoadError(DetectorError):
    """The model or its manifest cannot be loaded or does not match what it claims to be."""


class ModelFileMissingError(ModelLoadError):
    """The weights file a manifest names is not there (not fetched yet)."""


class ImageDecodeError(DetectorError):
    """The bytes are not an image OpenCV can decode."""


# --------------------------------------------------------------------------------------------
# Value types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectionParams:
    """Per-request filtering parameters; fractions are of the original image's size.

    `class_ids`: keep only these classes (None: all). Applied before NMS, so that a class the
    caller does not want can never suppress one it does. `class_agnostic`: NMS across classes
    (one box per object whatever its class) instead of per class.
    """

    score_threshold: float = 0.3
    nms_iou_threshold: float = 0.4
    min_height_fraction: float = 0.03
    min_width_fraction: float = 0.03
    max_results: int = 20
    class_ids: frozenset[int] | None = None
    class_agnostic: bool = False


@dataclass(frozen=True)
class Detections:
    """Boxes as `xyxy` pixel corners (N, 4), their `scores` (N,) and `class_ids` (N,)."""

    xyxy: FloatArray
    scores: FloatArray
    class_ids: IntArray

    def __post_init__(self) -> None:
        n = self.scores.shape[0] if self.scores.ndim == 1 else -1
        if self.xyxy.shape != (n, 4) or self.class_ids.shape != (n,):
            raise ValueError(
                f"inconsistent detection shapes: xyxy {self.xyxy.shape}, "
                f"scores {self.scores.shape}, class_ids {self.class_ids.shape}"
            )

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            class_ids=np.zeros((0,), np.int64),
        )

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def select(self, index: npt.NDArray[Any]) -> Detections:
        """A new `Detections` holding the rows picked by a boolean mask or an index array."""
        return Detections(
            xyxy=self.xyxy[index], scores=self.scores[index], class_ids=self.class_ids[index]
        )


@dataclass(frozen=True)
class LetterboxInfo:
    """How an image was fitted into the network input, so that boxes can be mapped back:
    input = original * scale + pad, per axis (the two scales are equal for a letterbox)."""

    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int
    image_width: int
    image_height: int


@dataclass(frozen=True)
class PreprocessSpec:
    """How a model wants its input tensor (NCHW float) made from a BGR uint8 image.

    `resize`: "letterbox" keeps the aspect ratio and pads at `pad_position` with `pad_value`
    (0..255); "stretch" resizes to the input size, x and y scaled separately. Then the channels
    are put in `channel_order` and each value is `(pixel * scale - mean) / std`, with `mean` and
    `std` in the tensor's channel order (None: 0 and 1).
    """

    resize: Resize = "letterbox"
    pad_position: PadPosition = "center"
    pad_value: int = 114
    channel_order: ChannelOrder = "bgr"
    scale: float = 1.0
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class DetectionResult:
    detections: Detections
    image_width: int
    image_height: int
    timings_ms: Mapping[str, float]

    def in_full_image(self, factor: int, width: int, height: int) -> DetectionResult:
        """This result, found on an image decoded at 1/`factor` of its size, in the pixels
        of the full `width` x `height` image (a pixel x there is x * factor here)."""
        boxes = self.detections.xyxy * np.float32(factor)
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
        found = Detections(boxes, self.detections.scores, self.detections.class_ids)
        return DetectionResult(found, width, height, self.timings_ms)


@dataclass(frozen=True)
class ModelManifest:
    """What `models/<name>.json` says about a model (see the module documentation).

    `family`, `input_width`/`input_height` and `class_names` may be unknown (None, None, ()):
    the `Detector` then finds them in the model, and its own `manifest` has them filled in.
    `preprocess` holds only the overridden `PreprocessSpec` fields. `bare` marks a manifest made
    up for a `.onnx` file that has none.
    """

    name: str
    family: str | None
    file: str
    input_width: int | None
    input_height: int | None
    class_names: tuple[str, ...]
    license: str
    upstream_url: str | None
    sha256: tuple[str, ...]
    description: str = ""
    preprocess: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    cell_center: CellCenter | None = None
    bare: bool = False


@dataclass(frozen=True)
class ModelInfo:
    """A loaded model, as `GET /v1/models` describes it. `source` says where its description
    came from: a manifest file, or only the ONNX file itself."""

    name: str
    family: str
    input_width: int
    input_height: int
    class_names: tuple[str, ...]
    sha256: str
    license: str
    execution_providers: tuple[str, ...]
    intra_op_threads: int
    default_params: DetectionParams = field(default_factory=DetectionParams)
    description: str = ""
    source: ModelSource = "manifest"
    # Whether the image is fitted into the input keeping its aspect ratio (else stretched).
    letterbox: bool = True


@dataclass(frozen=True)
class OutputSpec:
    """A model output as the session describes it; `dtype` is onnxruntime's type string."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: str = "tensor(float)"
