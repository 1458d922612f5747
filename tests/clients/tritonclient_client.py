"""tritonclient[http] 2.73 (Triton's HTTP client): health, readiness, metadata, and inference
on a batch of two encoded files, in the binary-data extension both ways and in plain JSON."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import tritonclient.http as httpclient
from _common import arguments, emit, error_text

args = arguments()
auth = {"Authorization": f"Bearer {args.token}"}
client = httpclient.InferenceServerClient(url=urlsplit(args.url).netloc)
dog, bus = Path(args.dog).read_bytes(), Path(args.bus).read_bytes()
OUTPUTS = ("num_detections", "detection_boxes", "detection_scores", "detection_labels")


def infer(model: str, binary: bool, headers: dict[str, str]) -> httpclient.InferResult:
    image = httpclient.InferInput("IMAGE", [2], "BYTES")
    if binary:
        image.set_data_from_numpy(np.array([dog, bus], dtype=np.object_), binary_data=True)
    else:
        encoded = [base64.b64encode(data).decode() for data in (dog, bus)]
        image.set_data_from_numpy(np.array(encoded, dtype=np.object_), binary_data=False)
    outputs = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in OUTPUTS]
    # A fresh dict per call: infer() adds Inference-Header-Content-Length to the one it gets.
    return client.infer(
        model, [image], outputs=outputs, headers=dict(headers), parameters={"score_th": 0.3}
    )


def labels(result: httpclient.InferResult) -> list[list[str]]:
    counts = result.as_numpy("num_detections").tolist()
    names = result.as_numpy("detection_labels")
    return [
        sorted({(n.decode() if isinstance(n, bytes) else str(n)) for n in row[:count]})
        for row, count in zip(names, counts, strict=True)
    ]


binary = infer(args.model, True, auth)
plain = infer(args.model, False, auth)
metadata = client.get_model_metadata(args.model, headers=dict(auth))
emit(
    {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(args.model, headers=dict(auth)),
        "inputs": metadata["inputs"],
        "binary": labels(binary),
        "binary_boxes_shape": list(binary.as_numpy("detection_boxes").shape),
        "dog_first_box": [round(v) for v in binary.as_numpy("detection_boxes")[0][0].tolist()],
        "json": labels(plain),
        "wrong_key": error_text(lambda: infer(args.model, True, {"Authorization": "Bearer wrong"})),
        "unknown_model": error_text(lambda: infer("nope", True, auth)),
    }
)
