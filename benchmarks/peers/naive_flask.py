"""The naive pattern, as a reference side of the bench (never shipped, never imported by the
service): a Flask app as the common demos write it, run by gunicorn with 5 sync workers and an
onnxruntime session with the default SessionOptions (as many intra-op threads as cores, in
every worker).

The pipeline itself is the project's: `decode_image`, `letterbox`, the family's head
decoder, `batched_nms`, `unletterbox` and `filter_detections`, so only the serving pattern
differs. The project's `Detector` is built once to learn the manifest (input size,
pre-processing, head layout) and then dropped; the app runs its own default session.

    cd benchmarks/peers && PYTHONPATH=../.. gunicorn -w 5 'naive_flask:create_app()'
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

from detection_types import DetectionParams, Detections, OutputSpec
from families import FAMILIES
from image_io import decode_image
from manifests import model_weights_path
from predict import batched_nms, filter_detections, letterbox, load_model, unletterbox

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def create_app() -> Flask:
    models_dir = Path(os.environ.get("MODELS_DIR") or REPO_ROOT / "models")
    name = os.environ.get("MODEL_NAME") or "yolox_nano"
    reference = load_model(models_dir, name)
    manifest, preprocess = reference.manifest, reference.preprocess
    del reference
    weights = model_weights_path(models_dir, name)
    # The naive part: onnxruntime's defaults, in each of the 5 workers.
    session = ort.InferenceSession(str(weights), providers=["CPUExecutionProvider"])
    outputs = [OutputSpec(o.name, tuple(o.shape), str(o.type)) for o in session.get_outputs()]
    head = FAMILIES[str(manifest.family)].bind(outputs, manifest)
    input_name = session.get_inputs()[0].name
    output_names = [o.name for o in outputs]
    width, height = int(manifest.input_width or 0), int(manifest.input_height or 0)
    class_names = manifest.class_names

    app = Flask(__name__)

    @app.get("/readyz")
    def readyz() -> ResponseReturnValue:
        return jsonify({"status": "ready"})

    @app.post("/v1/detect")
    def detect() -> ResponseReturnValue:
        params = DetectionParams()
        answers = []
        for element in request.get_json()["requests"]:
            image = decode_image(base64.b64decode(element["image"]["content"]))
            tensor, info = letterbox(image, width, height, preprocess)
            values = session.run(output_names, {input_name: tensor})
            raw = {
                n: np.asarray(v, dtype=np.float32)
                for n, v in zip(output_names, values, strict=True)
            }
            candidates = head.decode(raw, params.score_threshold)
            kept = batched_nms(candidates, params.nms_iou_threshold)
            found = filter_detections(
                Detections(unletterbox(kept.xyxy, info), kept.scores, kept.class_ids),
                params,
                info.image_width,
                info.image_height,
            )
            answers.append({"localizedObjectAnnotations": _annotations(found, class_names)})
        return jsonify({"responses": answers})

    return app


def _annotations(found: Detections, class_names: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        {"name": class_names[c], "score": round(s, 4), "classId": c, "box": [x1, y1, x2, y2]}
        for (x1, y1, x2, y2), s, c in zip(
            found.xyxy.tolist(), found.scores.tolist(), found.class_ids.tolist(), strict=True
        )
    ]
