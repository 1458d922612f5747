"""What the tests share besides fixtures: the project's paths, the test tokens, the real files a
test needs (skipping with the command that provides a missing one; under CI=true the skip is a
failure, see conftest.py), a runner for Python in a subprocess, real encoded images, request
bodies and the fake detector of the HTTP tests. The fixtures themselves are in conftest.py."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

import predict
from detection_types import (
    DetectionParams,
    DetectionResult,
    Detections,
    FloatArray,
    ImageArray,
    ModelInfo,
)
from predict import Detector, filter_detections, select_classes

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO_ROOT / "models"
SAMPLE_IMAGES = REPO_ROOT / "sample_images"
SHARED_IMAGES = Path(os.environ.get("TEST_IMAGES_DIR", REPO_ROOT.parent / "shared" / "images"))
TOKEN = "test-token-1"
SECOND_TOKEN = "test-token-2"
AUTH = {"X-Api-Token": TOKEN}
COCO_NAMES = tuple((MODELS_DIR / "coco80.txt").read_text().split("\n")[:80])

# --- real files: models and photos -----------------------------------------------------------


def model_weights(name: str) -> Path:
    """models/<name>.onnx; skips when it has not been fetched."""
    path = MODELS_DIR / f"{name}.onnx"
    if not path.is_file():
        fetch = "make model" if name == "yolox_nano" else "make test-models"
        pytest.skip(f"{path} is missing: run `{fetch}` to fetch and verify the weights")
    return path


def load_real_model(name: str) -> Detector:
    """The real model `name` from models/, with its manifest; skips when it is not fetched."""
    model_weights(name)
    return predict.load_model(MODELS_DIR, name)


def shared_image(name: str) -> Path:
    """A photo from the shared test-data folder; skips when it is not there."""
    path = SHARED_IMAGES / name
    if not path.is_file():
        pytest.skip(
            f"{path} is missing: put the shared test photos at ../shared/images next to the "
            "checkout or point TEST_IMAGES_DIR at them"
        )
    return path


def sample_image(name: str) -> Path:
    """A photo of the repository's sample_images/ folder."""
    path = SAMPLE_IMAGES / name
    if not path.is_file():
        pytest.skip(f"{path} is missing: it belongs in the repository's sample_images/ folder")
    return path


# --- subprocesses ----------------------------------------------------------------------------


def run_python(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """This interpreter with `args` in the repository root, its output captured as text;
    `env` is the whole environment (the tests' own when None). Never raises on an exit
    status: the caller asserts on it, with the output in the message."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=dict(os.environ if env is None else env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def gunicorn_check_config(environ: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`gunicorn --check-config` with gunicorn.conf.py, as `make run` starts it: it loads the
    app (and so the model) and exits. No API_TOKENS or AUTH_DISABLED but those in `environ`."""
    env = {k: v for k, v in os.environ.items() if k not in {"API_TOKENS", "AUTH_DISABLED"}}
    return run_python(
        "-m",
        "gunicorn",
        "--check-config",
        "-c",
        "gunicorn.conf.py",
        env={**env, **environ},
        timeout=120,
    )


# --- images and request bodies ---------------------------------------------------------------


def encode_image(width: int, height: int, ext: str = ".png", seed: int = 0) -> bytes:
    """A real encoded image of the given size with some texture."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    ok, buffer = cv2.imencode(ext, pixels)
    assert ok
    return buffer.tobytes()


def textured_image(height: int, width: int, seed: int = 0) -> ImageArray:
    """A BGR image of random pixels."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def encode_array(image: npt.NDArray[Any], ext: str) -> bytes:
    """`image` encoded by OpenCV itself (independent of image_io) as `ext` (".png", ".jpg")."""
    ok, buffer = cv2.imencode(ext, image)
    assert ok
    return buffer.tobytes()


def decode_with_cv2(data: bytes) -> ImageArray:
    """`data` decoded by OpenCV itself (independent of image_io), as BGR."""
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None
    return np.asarray(decoded, dtype=np.uint8)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def annotate_body(*images: bytes, **feature: Any) -> dict[str, Any]:
    """Our JSON request with one element per image and the same feature for each."""
    return {
        "requests": [
            {"image": {"content": b64(image)}, "features": [dict(feature)]} for image in images
        ]
    }


# --- boxes and detections --------------------------------------------------------------------


def boxes(*rows: Sequence[float]) -> FloatArray:
    """An (N, 4) float32 array of xyxy rows; (0, 4) for none."""
    return np.asarray(rows, dtype=np.float32).reshape(-1, 4)


def dets(
    xyxy: Sequence[Sequence[float]], scores: Sequence[float], class_ids: Sequence[int]
) -> Detections:
    return Detections(
        xyxy=boxes(*xyxy),
        scores=np.asarray(scores, dtype=np.float32).reshape(-1),
        class_ids=np.asarray(class_ids, dtype=np.int64).reshape(-1),
    )


# --- the fake detector of the HTTP tests -----------------------------------------------------


class FakeDetector:
    """Stands in for the ONNX model in HTTP tests: two boxes at fixed fractions of the image
    (a large 'dog' at 0.9 and a tiny 'person' at 0.5), filtered with the real filter code so
    that request parameters have their real effect."""

    def __init__(
        self, ready: bool = True, fail_with: Exception | None = None, name: str = "fake"
    ) -> None:
        self.ready = ready
        self.fail_with = fail_with
        self.info = ModelInfo(
            name=name,
            family="yolox",
            input_width=416,
            input_height=416,
            class_names=COCO_NAMES,
            sha256="0" * 64,
            license="test",
            execution_providers=("CPUExecutionProvider",),
            intra_op_threads=1,
            description="a test double",
            source="manifest",
        )

    def detect(self, image: ImageArray, params: DetectionParams) -> DetectionResult:
        if self.fail_with is not None:
            raise self.fail_with
        height, width = image.shape[:2]
        candidates = Detections(
            xyxy=np.array(
                [
                    [0.25 * width, 0.25 * height, 0.75 * width, 0.75 * height],
                    [0.0, 0.0, 0.02 * width, 0.02 * height],
                ],
                dtype=np.float32,
            ),
            scores=np.array([0.9, 0.5], dtype=np.float32),
            class_ids=np.array([16, 0], dtype=np.int64),
        )
        passing = candidates.select(candidates.scores >= params.score_threshold)
        if params.class_ids is not None:
            passing = select_classes(passing, params.class_ids)
        return DetectionResult(
            detections=filter_detections(passing, params, width, height),
            image_width=width,
            image_height=height,
            timings_ms={"inference": 1.0},
        )
