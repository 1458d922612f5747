"""Object detection with ONNX models: fit a decoded image into the network input, run the
model, decode the model family's head, apply NMS and map the boxes back onto the image.

This module knows nothing of HTTP. Everything per request is a local or a return value; the
`Detector` only holds what is fixed at load time (the session, the decoded head layout).

The code is split by job, imports flowing one way (predict -> manifests -> families ->
detection_types, and predict -> image_io; none of them imports anything of HTTP):

- `detection_types`: the shared value types (`Detections`, `DetectionParams`, `ModelManifest`,
  `ModelInfo`, ...) and the `DetectorError` hierarchy.
- `families`: the model families (YOLOX, GFL / NanoDet / PicoDet, YOLOv5, YOLOv8, end-to-end),
  their default pre-processing and head decoders, and `detect_family`. Documented there.
- `manifests`: the manifest format `models/<name>.json` (documented there), labels files, ONNX
  metadata, and finding the models of a folder.
- `image_io`: decoding and encoding images, the one owner of OpenCV.
- `predict` (this module): letterbox, NMS, the `Detector` and `load_model`. Names defined in
  the modules above are imported from there, not from here.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from detection_types import (
    DetectionParams,
    DetectionResult,
    Detections,
    DetectorError,
    FloatArray,
    ImageArray,
    IntArray,
    LetterboxInfo,
    ModelFileMissingError,
    ModelInfo,
    ModelLoadError,
    ModelManifest,
    OutputSpec,
    PreprocessSpec,
)
from families import FAMILIES, Family, detect_family
from image_io import cv2
from manifests import (
    COCO80_FILE,
    MAX_INPUT_SIDE,
    coco80_names,
    discovered_path,
    file_sha256,
    is_int,
    metadata_class_names,
    metadata_input_size,
    weights_file,
)

__all__ = [
    "MAX_NMS_CANDIDATES",
    "Detector",
    "batched_nms",
    "box_area",
    "box_iou",
    "filter_detections",
    "letterbox",
    "load_discovered",
    "load_model",
    "nms",
    "select_classes",
    "unletterbox",
]

logger = logging.getLogger("detection_service.predict")

# Before the O(N^2) NMS only the best candidates are kept: a threshold of 0 would otherwise
# send every anchor of the model into it.
MAX_NMS_CANDIDATES = 2000


# --------------------------------------------------------------------------------------------
# Pre-processing
# --------------------------------------------------------------------------------------------


def letterbox(
    image: ImageArray, input_width: int, input_height: int, spec: PreprocessSpec
) -> tuple[FloatArray, LetterboxInfo]:
    """Fit `image` into the network input as `spec` says (letterbox or stretch, channel order,
    scaling); returns a new NCHW float32 tensor and how to map boxes back."""
    image_height, image_width = image.shape[:2]
    if spec.resize == "stretch":
        scale_x, scale_y = input_width / image_width, input_height / image_height
        resized_width, resized_height = input_width, input_height
        pad_x = pad_y = 0
    else:
        scale_x = scale_y = min(input_width / image_width, input_height / image_height)
        # Rounded down, as the reference pre-processing does; at least one pixel each way.
        resized_width = max(1, min(input_width, int(image_width * scale_x)))
        resized_height = max(1, min(input_height, int(image_height * scale_y)))
        if spec.pad_position == "center":
            pad_x = (input_width - resized_width) // 2
            pad_y = (input_height - resized_height) // 2
        else:
            pad_x = pad_y = 0
    resized = cv2.resize(image, (resized_width, resized_height), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((input_height, input_width, 3), spec.pad_value, dtype=np.uint8)
    canvas[pad_y : pad_y + resized_height, pad_x : pad_x + resized_width] = resized
    # Reversed as a view; astype makes the copy.
    ordered = canvas[:, :, ::-1] if spec.channel_order == "rgb" else canvas
    scaled = ordered.astype(np.float32)
    if spec.scale != 1.0:
        scaled *= np.float32(spec.scale)
    if spec.mean is not None:
        scaled -= np.asarray(spec.mean, dtype=np.float32)
    if spec.std is not None:
        scaled /= np.asarray(spec.std, dtype=np.float32)
    tensor: FloatArray = np.ascontiguousarray(scaled.transpose(2, 0, 1)[np.newaxis])
    info = LetterboxInfo(
        scale_x=scale_x,
        scale_y=scale_y,
        pad_x=pad_x,
        pad_y=pad_y,
        image_width=image_width,
        image_height=image_height,
    )
    return tensor, info


def unletterbox(xyxy: FloatArray, info: LetterboxInfo) -> FloatArray:
    """Map boxes from network-input pixels back to the original image, clipped to it."""
    boxes = xyxy.astype(np.float32, copy=True)
    boxes[:, [0, 2]] = (boxes[:, [0, 2]] - info.pad_x) / info.scale_x
    boxes[:, [1, 3]] = (boxes[:, [1, 3]] - info.pad_y) / info.scale_y
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, info.image_width)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, info.image_height)
    return boxes


# --------------------------------------------------------------------------------------------
# IoU and NMS
# --------------------------------------------------------------------------------------------


def box_area(xyxy: FloatArray) -> FloatArray:
    widths = np.clip(xyxy[:, 2] - xyxy[:, 0], 0, None)
    heights = np.clip(xyxy[:, 3] - xyxy[:, 1], 0, None)
    return np.asarray(widths * heights, dtype=np.float32)


def box_iou(boxes_a: FloatArray, boxes_b: FloatArray) -> FloatArray:
    """Pairwise IoU (N, M); 0 where the union is empty (degenerate boxes)."""
    area_a = box_area(boxes_a)[:, None]
    area_b = box_area(boxes_b)[None, :]
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    inter_wh = np.clip(bottom_right - top_left, 0, None)
    inter = inter_wh[..., 0] * inter_wh[..., 1]
    union = area_a + area_b - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return np.asarray(iou, dtype=np.float32)


def nms(xyxy: FloatArray, scores: FloatArray, iou_threshold: float) -> IntArray:
    """Greedy NMS; the indices kept, best score first. Boxes with IoU > threshold are dropped."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size > 0:
        best = int(order[0])
        keep.append(best)
        if order.size == 1:
            break
        rest = order[1:]
        overlaps = box_iou(xyxy[best : best + 1], xyxy[rest])[0]
        order = rest[overlaps <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(
    detections: Detections, iou_threshold: float, class_agnostic: bool = False
) -> Detections:
    """NMS, best first. Class-aware by default: boxes of different classes never suppress each
    other. `class_agnostic`: any box suppresses any other, whatever their classes.

    Each class is shifted by its own offset larger than the span of all coordinates (boxes
    may be negative before clipping), so one NMS pass handles all classes without a loop.
    """
    if len(detections) == 0:
        return detections
    if len(detections) > MAX_NMS_CANDIDATES:
        top = np.argsort(-detections.scores, kind="stable")[:MAX_NMS_CANDIDATES]
        detections = detections.select(top)
    if class_agnostic:
        return detections.select(nms(detections.xyxy, detections.scores, iou_threshold))
    offset = float(detections.xyxy.max() - detections.xyxy.min()) + 1.0
    shifted = detections.xyxy + (detections.class_ids.astype(np.float32) * offset)[:, None]
    return detections.select(nms(shifted, detections.scores, iou_threshold))


def select_classes(detections: Detections, class_ids: frozenset[int]) -> Detections:
    """Only the detections of the given classes."""
    wanted = np.fromiter(class_ids, dtype=np.int64, count=len(class_ids))
    return detections.select(np.isin(detections.class_ids, wanted))


def filter_detections(
    detections: Detections, params: DetectionParams, image_width: int, image_height: int
) -> Detections:
    """Drop boxes below the size fractions, sort by score and keep `max_results`."""
    widths = detections.xyxy[:, 2] - detections.xyxy[:, 0]
    heights = detections.xyxy[:, 3] - detections.xyxy[:, 1]
    big_enough = (widths >= params.min_width_fraction * image_width) & (
        heights >= params.min_height_fraction * image_height
    )
    # Clipping can leave zero-area boxes on the border; they are never useful answers.
    big_enough &= (widths > 0) & (heights > 0)
    kept = detections.select(big_enough)
    order = np.argsort(-kept.scores, kind="stable")[: params.max_results]
    return kept.select(order)


# --------------------------------------------------------------------------------------------
# The detector
# --------------------------------------------------------------------------------------------

INPUT_DTYPES: Mapping[str, type[np.floating[Any]]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
}


def _session_options(intra_op_threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Old exporters list weights as graph inputs and onnxruntime warns once per weight.
    options.log_severity_level = 3
    if intra_op_threads > 1:
        # Spinning threads of several workers fight over the cores: measured to halve throughput.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _custom_metadata(session: Any) -> dict[str, str]:
    try:
        raw = session.get_modelmeta().custom_metadata_map
    except Exception:  # onnxruntime raises its own untyped errors; metadata is optional
        return {}
    return {str(k): str(v) for k, v in dict(raw).items()}


def _family_named(name: str, model: str) -> Family:
    family = FAMILIES.get(name)
    if family is None:
        raise ModelLoadError(
            f"model {model!r}: unknown family {name!r}; known: {', '.join(sorted(FAMILIES))}"
        )
    return family


def _describe_model(
    input_name: str,
    input_shape: Sequence[Any],
    outputs: Sequence[OutputSpec],
    metadata: Mapping[str, str],
) -> str:
    found = ", ".join(f"{o.name!r} {list(o.shape)}" for o in outputs) or "none"
    keys = ", ".join(sorted(metadata)) or "none"
    return f"input {input_name!r} {list(input_shape)}; outputs {found}; ONNX metadata keys: {keys}"


def _manifest_advice(manifest: ModelManifest) -> str:
    return (
        f'write a manifest {manifest.name}.json next to it with "file": '
        f'"{manifest.file}", "license", "family" (one of '
        f'{", ".join(sorted(FAMILIES))}), "input_size" {{"width", "height"}}, '
        '"class_names" (or "labels_file") and, when the family\'s defaults do not fit, '
        '"preprocess" (see manifests.py)'
    )


class Detector:
    """One ONNX model, loaded once per worker process, safe to call from one thread at a time
    or several (onnxruntime sessions are thread-safe; nothing per request is stored here).

    `manifest` is the one given with what the model itself said filled in (canonical family,
    input size, class names); `preprocess` is the family's defaults with the manifest's
    overrides.
    """

    def __init__(
        self,
        manifest: ModelManifest,
        model_path: Path,
        intra_op_threads: int = 1,
        source: Path | None = None,
    ):
        """`source`: where to read the weights from instead of `model_path` (the gunicorn
        master's verified copy, see master_models.py); `model_path` still names them."""
        if intra_op_threads < 1:
            raise ModelLoadError("intra_op_threads must be at least 1")
        named = None if manifest.family is None else _family_named(manifest.family, manifest.name)
        read_from = model_path if source is None else source
        if not read_from.is_file():
            raise ModelFileMissingError(
                f"model file {model_path} is missing: run `make model` to fetch and verify it"
            )
        sha256 = file_sha256(read_from)
        if manifest.sha256 and sha256 not in manifest.sha256:
            raise ModelLoadError(
                f"model file {model_path} has sha256 {sha256}, which the manifest does not "
                "accept: delete it and run `make model` again"
            )
        try:
            session = ort.InferenceSession(
                str(read_from),
                sess_options=_session_options(intra_op_threads),
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelLoadError(f"onnxruntime cannot load {model_path}: {exc}") from exc
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ModelLoadError(f"expected one image input, found {[i.name for i in inputs]}")
        input_name: str = inputs[0].name
        input_shape = list(inputs[0].shape)
        if len(input_shape) != 4 or (is_int(input_shape[1]) and input_shape[1] != 3):
            raise ModelLoadError(f"input {input_name!r} is not NCHW with 3 channels: {input_shape}")
        input_dtype = INPUT_DTYPES.get(inputs[0].type)
        if input_dtype is None:
            raise ModelLoadError(
                f"input {input_name!r} is {inputs[0].type}; only float and float16 images are "
                "supported"
            )
        metadata = _custom_metadata(session)
        task = metadata.get("task")
        if task is not None and task.strip() != "detect":
            raise ModelLoadError(
                f"model {manifest.name!r} is a {task!r} model (ONNX metadata 'task'); only "
                "object detectors ('detect') are served"
            )
        outputs = [OutputSpec(o.name, tuple(o.shape), str(o.type)) for o in session.get_outputs()]
        described = _describe_model(input_name, input_shape, outputs, metadata)
        width, height = self._input_size(manifest, input_name, input_shape, metadata, described)
        if named is None:
            detected = detect_family(outputs, width, height)
            if detected is None:
                raise ModelLoadError(
                    f"cannot tell which detector family model {manifest.name!r} is: "
                    f"{described}. If it is one of the supported layouts, "
                    f"{_manifest_advice(manifest)}"
                )
            family = FAMILIES[detected]
        else:
            family = named
        if manifest.cell_center is not None and family.name != "gfl":
            raise ModelLoadError(
                f"model {manifest.name!r}: 'cell_center' is for the gfl family, not {family.name}"
            )
        class_names = self._class_names(manifest, family, outputs, metadata, model_path)
        self.manifest = dataclasses.replace(
            manifest,
            family=family.name,
            input_width=width,
            input_height=height,
            class_names=class_names,
            license=metadata.get("license", "unknown") if manifest.bare else manifest.license,
            description=manifest.description or metadata.get("description", ""),
        )
        self.preprocess = dataclasses.replace(family.preprocess, **manifest.preprocess)
        try:
            self._head = family.bind(outputs, self.manifest)
        except ModelLoadError as exc:
            raise ModelLoadError(f"{exc} (model {manifest.name!r}: {described})") from exc
        self._session = session
        self._input_name = input_name
        self._input_dtype = input_dtype
        self._output_names = [o.name for o in outputs]
        self._input_width, self._input_height = width, height
        self.info = ModelInfo(
            name=manifest.name,
            family=family.name,
            input_width=width,
            input_height=height,
            class_names=class_names,
            sha256=sha256,
            license=self.manifest.license,
            execution_providers=tuple(session.get_providers()),
            intra_op_threads=intra_op_threads,
            description=self.manifest.description,
            source="onnx metadata" if manifest.bare else "manifest",
            letterbox=self.preprocess.resize == "letterbox",
        )
        self.ready = False
        self._warm_up()
        self.ready = True

    @staticmethod
    def _input_size(
        manifest: ModelManifest,
        input_name: str,
        input_shape: Sequence[Any],
        metadata: Mapping[str, str],
        described: str,
    ) -> tuple[int, int]:
        """Per side: the model's fixed size, else the manifest's, else the metadata `imgsz`.

        The manifest comes before the metadata: it is what the operator chose for a model
        exported with a dynamic input size, while `imgsz` is only the size it was trained at.
        """
        fixed_height, fixed_width = (d if is_int(d) else None for d in input_shape[2:4])
        sides: list[int] = []
        for axis, fixed, given in (
            (0, fixed_width, manifest.input_width),
            (1, fixed_height, manifest.input_height),
        ):
            if fixed is not None and given is not None and fixed != given:
                raise ModelLoadError(
                    f"input {input_name!r} has shape {list(input_shape)} but the manifest says "
                    f"{manifest.input_width}x{manifest.input_height}"
                )
            side = fixed if fixed is not None else given
            if side is None:
                # Parsed only when needed: a bad imgsz must not fail a model that has a size.
                from_metadata = metadata_input_size(metadata, manifest.name)
                side = None if from_metadata is None else from_metadata[axis]
            if side is None:
                raise ModelLoadError(
                    f"model {manifest.name!r}: the input has no fixed size and neither a "
                    f"manifest 'input_size' nor the ONNX metadata 'imgsz' gives one: "
                    f"{described}; {_manifest_advice(manifest)}"
                )
            if not 0 < side <= MAX_INPUT_SIDE:
                raise ModelLoadError(f"model {manifest.name!r}: input side {side} is too large")
            sides.append(side)
        return sides[0], sides[1]

    @staticmethod
    def _class_names(
        manifest: ModelManifest,
        family: Family,
        outputs: Sequence[OutputSpec],
        metadata: Mapping[str, str],
        model_path: Path,
    ) -> tuple[str, ...]:
        """The manifest's names, else the metadata's, else COCO-80 for an 80-class model."""
        if manifest.class_names:
            return manifest.class_names
        from_metadata = metadata_class_names(metadata, manifest.name)
        if from_metadata is not None:
            return from_metadata
        count = family.count_classes(outputs)
        coco = coco80_names(model_path) if count == 80 else None
        if coco is None:
            said = "do not say how many classes" if count is None else f"have {count} classes"
            raise ModelLoadError(
                f"model {manifest.name!r} ({family.name}) names no classes: no manifest "
                f"'class_names' or 'labels_file', no ONNX metadata 'names', and its outputs "
                f"{said} (only an 80-class model is taken as COCO); "
                f"{_manifest_advice(manifest)}"
            )
        logger.warning(
            "model %s names no classes (no manifest, no ONNX metadata 'names'): assuming the "
            "80 COCO classes of %s",
            manifest.name,
            COCO80_FILE,
        )
        return coco

    def _warm_up(self) -> None:
        """One inference at load, so the first request does not pay for lazy initialisation;
        it also proves that the outputs at run time have the shapes the decoder expects."""
        blank = np.full((self._input_height, self._input_width, 3), 114, np.uint8)
        try:
            self.detect(blank, DetectionParams())
        except DetectorError:
            raise
        except Exception as exc:  # onnxruntime's untyped errors and numpy shape errors
            raise ModelLoadError(
                f"model {self.manifest.name!r}: a test inference failed: {exc}"
            ) from exc

    def run(self, tensor: FloatArray) -> dict[str, FloatArray]:
        feed = tensor.astype(self._input_dtype, copy=False)
        values = self._session.run(self._output_names, {self._input_name: feed})
        return {
            name: np.asarray(value, dtype=np.float32)
            for name, value in zip(self._output_names, values, strict=True)
        }

    def detect(self, image: ImageArray, params: DetectionParams) -> DetectionResult:
        """The whole pipeline on one decoded BGR image."""
        started = time.perf_counter()
        tensor, letterbox_info = letterbox(
            image, self._input_width, self._input_height, self.preprocess
        )
        preprocessed = time.perf_counter()
        outputs = self.run(tensor)
        inferred = time.perf_counter()
        candidates = self._head.decode(outputs, params.score_threshold)
        if params.class_ids is not None:
            candidates = select_classes(candidates, params.class_ids)
        kept = batched_nms(candidates, params.nms_iou_threshold, params.class_agnostic)
        in_image = Detections(
            xyxy=unletterbox(kept.xyxy, letterbox_info),
            scores=kept.scores,
            class_ids=kept.class_ids,
        )
        final = filter_detections(
            in_image, params, letterbox_info.image_width, letterbox_info.image_height
        )
        finished = time.perf_counter()
        return DetectionResult(
            detections=final,
            image_width=letterbox_info.image_width,
            image_height=letterbox_info.image_height,
            timings_ms={
                "preprocess": (preprocessed - started) * 1000,
                "inference": (inferred - preprocessed) * 1000,
                "postprocess": (finished - inferred) * 1000,
            },
        )


def load_model(models_dir: Path, name: str, intra_op_threads: int = 1) -> Detector:
    """Load model `name` of `models_dir` (see `discover_models`)."""
    return load_discovered(discovered_path(models_dir, name), intra_op_threads)


def load_discovered(
    path: Path, intra_op_threads: int = 1, verified: Mapping[Path, Path] | None = None
) -> Detector:
    """Load a model from what `discover_models` found for it (see `weights_file`); from the
    copy `verified` names for the weights file (resolved path -> the copy), else the file."""
    manifest, weights = weights_file(path)
    held = (verified or {}).get(weights.resolve())
    detector = Detector(manifest, weights, intra_op_threads, held)
    info = detector.info
    logger.info(
        "loaded model %s (%s, %dx%d, %d classes, from its %s, sha256 %s)",
        info.name,
        info.family,
        info.input_width,
        info.input_height,
        len(info.class_names),
        info.source,
        info.sha256[:12],
    )
    return detector
