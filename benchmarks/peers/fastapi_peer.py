"""FastAPI under uvicorn serving the project's pipeline: a reference side of the bench (never
shipped, never imported by the service; its packages live in benchmarks/.venv-peers).

It is the framework's best case for this work: one uvicorn worker per core, the project's
`Detector` with one intra-op thread loaded per worker at start-up, and an `async` route that
runs the CPU-bound pipeline inline (a thread pool would only add hand-offs on a busy core).
No authentication and no validation beyond what the pipeline does.

    cd benchmarks/peers && PYTHONPATH=../.. ../.venv-peers/bin/uvicorn --workers 2 fastapi_peer:app
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from detection_types import DetectionParams
from image_io import decode_image
from predict import Detector, load_model

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
_detectors: dict[str, Detector] = {}


@asynccontextmanager
async def lifespan(_: Any) -> AsyncIterator[None]:
    models_dir = Path(os.environ.get("MODELS_DIR") or REPO_ROOT / "models")
    name = os.environ.get("MODEL_NAME") or "yolox_nano"
    _detectors["default"] = load_model(models_dir, name, intra_op_threads=1)
    yield


async def readyz() -> Response:
    return JSONResponse({"status": "ready"})


async def detect(request: Request) -> Response:
    detector = _detectors["default"]
    params = DetectionParams()
    names = detector.info.class_names
    answers = []
    for element in json.loads(await request.body())["requests"]:
        image = decode_image(base64.b64decode(element["image"]["content"]))
        found = detector.detect(image, params).detections
        answers.append(
            {
                "localizedObjectAnnotations": [
                    {"name": names[c], "score": round(s, 4), "classId": c, "box": box}
                    for box, s, c in zip(
                        found.xyxy.tolist(),
                        found.scores.tolist(),
                        found.class_ids.tolist(),
                        strict=True,
                    )
                ]
            }
        )
    return JSONResponse({"responses": answers})


app = FastAPI(lifespan=lifespan)
app.add_api_route("/readyz", readyz, methods=["GET"])
app.add_api_route("/v1/detect", detect, methods=["POST"])
