"""kserve 0.21 InferenceRESTClient (protocol v2): liveness and readiness from their JSON bodies,
model readiness, and inference with JSON and with binary data."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import numpy as np
from _common import arguments, emit
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

args = arguments()
auth = {"Authorization": f"Bearer {args.token}"}
dog, bus = Path(args.dog).read_bytes(), Path(args.bus).read_bytes()


def request(model: str, binary: bool) -> InferRequest:
    if binary:
        image = InferInput("IMAGE", [2], "BYTES")
        image.set_data_from_numpy(np.array([dog, bus], dtype=np.object_), binary_data=True)
    else:
        encoded = [base64.b64encode(data).decode() for data in (dog, bus)]
        image = InferInput("IMAGE", [2], "BYTES", data=encoded)
    return InferRequest(model_name=model, infer_inputs=[image], parameters={"score_th": 0.3})


def labels(response: Any) -> list[list[str]]:
    outputs = {output.name: output for output in response.outputs}
    counts = outputs["num_detections"].as_numpy().tolist()
    names = outputs["detection_labels"].as_numpy().tolist()
    return [sorted(set(row[:count])) for row, count in zip(names, counts, strict=True)]


async def main() -> dict[str, Any]:
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
    url = args.url
    result = {
        "live": await client.is_server_live(url),
        "ready": await client.is_server_ready(url),
        "model_ready": await client.is_model_ready(url, args.model, headers=auth),
        "json": labels(
            await client.infer(url, request(args.model, False), args.model, headers=auth)
        ),
        "binary": labels(
            await client.infer(url, request(args.model, True), args.model, headers=auth)
        ),
    }
    for name, model, headers in (
        ("wrong_key", args.model, {"Authorization": "Bearer wrong"}),
        ("unknown_model", "nope", auth),
    ):
        try:
            await client.infer(url, request(model, False), model, headers=headers)
            result[name] = "no error"
        except Exception as exc:
            result[name] = f"{type(exc).__name__}: {exc}"
    await client.close()
    return result


emit(asyncio.run(main()))
