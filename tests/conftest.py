"""Shared fixtures: a fresh app per test (`config` -> `detector` -> `app` -> `client`), a fake
detector for the HTTP layer, and helpers that make real encoded images."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from config import ServiceConfig
from detection_types import DetectionParams, DetectionResult, Detections, ImageArray, ModelInfo
from predict import filter_detections, select_classes
from serve_http import create_app

# The image repository's fixtures (a PostgreSQL for the session, a database per test).
pytest_plugins = ["tests.repo_support"]

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_IMAGES = REPO_ROOT / "sample_images"
SHARED_IMAGES = Path(os.environ.get("TEST_IMAGES_DIR", REPO_ROOT.parent / "shared" / "images"))
TOKEN = "test-token-1"
SECOND_TOKEN = "test-token-2"
AUTH = {"X-Api-Token": TOKEN}
COCO_NAMES = tuple((REPO_ROOT / "models" / "coco80.txt").read_text().split("\n")[:80])


def shared_image(name: str) -> Path:
    """A photo from the shared test-data folder; skips when it is not there (fails in CI)."""
    path = SHARED_IMAGES / name
    if not path.is_file():
        message = f"{path} is missing: set TEST_IMAGES_DIR to the shared test images"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)  # CI has the photos beside the clone: missing is a failure
        pytest.skip(message)
    return path


def encode_image(width: int, height: int, ext: str = ".png", seed: int = 0) -> bytes:
    """A real encoded image of the given size with some texture."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    ok, buffer = cv2.imencode(ext, pixels)
    assert ok
    return buffer.tobytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def annotate_body(*images: bytes, **feature: Any) -> dict[str, Any]:
    """Our JSON request with one element per image and the same feature for each."""
    return {
        "requests": [
            {"image": {"content": b64(image)}, "features": [dict(feature)]} for image in images
        ]
    }


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


@pytest.fixture
def config() -> ServiceConfig:
    return ServiceConfig(api_tokens=(TOKEN, SECOND_TOKEN), max_body_bytes=1024 * 1024)


@pytest.fixture
def detector() -> FakeDetector:
    return FakeDetector()


@pytest.fixture
def app(config: ServiceConfig, detector: FakeDetector) -> Flask:
    return create_app(config, detector)


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as test_client:
        yield test_client
