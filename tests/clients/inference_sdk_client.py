"""Roboflow inference-sdk 1.8 (InferenceHTTPClient, as Roboflow Inference users and supervision
scripts call it): server info, v1 object detection on one image and on a batch, the legacy v0
route, and its errors."""

from __future__ import annotations

import warnings

from _common import arguments, emit, error_text
from inference_sdk import InferenceConfiguration, InferenceHTTPClient

# The SDK recommends its header transport once per process; the default (legacy) is tested.
warnings.simplefilter("ignore")
args = arguments()
api_url = args.url.rstrip("/")
client = InferenceHTTPClient(api_url=api_url, api_key=args.token)
info = client.get_server_info()
one = client.infer(args.dog, model_id=f"{args.model}/1")
batch = client.infer([args.dog, args.bus], model_id=args.model)
client.configure(InferenceConfiguration(confidence_threshold=0.5, visualize_predictions=True))
drawn = client.infer(args.dog, model_id=args.model)
legacy = InferenceHTTPClient(api_url=api_url, api_key=args.token).select_api_v0()
legacy_answer = legacy.infer(args.bus, model_id=f"{args.model}/1")


def classes(answer: dict) -> list[str]:
    return [p["class"] for p in answer["predictions"]]


emit(
    {
        "server": info.name,
        "dog": sorted(set(classes(one))),
        "dog_image": one["image"],
        "dog_first": {k: one["predictions"][0][k] for k in ("x", "y", "width", "height", "class")},
        "batch": [sorted(set(classes(answer))) for answer in batch],
        "visualization_chars": len(drawn["visualization"] or ""),
        "legacy_bus": classes(legacy_answer),
        "wrong_key": error_text(
            lambda: InferenceHTTPClient(api_url=api_url, api_key="wrong-key").infer(
                args.dog, model_id=args.model
            )
        ),
        "unknown_model": error_text(lambda: client.infer(args.dog, model_id="nope/1")),
    }
)
