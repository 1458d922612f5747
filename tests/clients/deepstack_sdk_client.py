"""deepstack-sdk 0.2.1 (DeepStack's own Python SDK): ServerConfig and Detection, default and
custom model, from a file path as its documentation shows."""

from __future__ import annotations

from _common import arguments, emit, error_text
from deepstack_sdk import Detection, ServerConfig

args = arguments()
config = ServerConfig(args.url, api_key=args.token)
default = Detection(config)
custom = Detection(config, name=args.model)

dog = default.detectObject(args.dog, min_confidence=0.4)
bus = custom.detectObject(args.bus, min_confidence=0.4)
emit(
    {
        "dog": sorted({d.label for d in dog}),
        "bus": [d.label for d in bus],
        "boxes_are_ints": all(
            isinstance(v, int) for d in dog for v in (d.x_min, d.y_min, d.x_max, d.y_max)
        ),
        "wrong_key": error_text(
            lambda: Detection(ServerConfig(args.url, api_key="wrong-key")).detectObject(args.dog)
        ),
        "unknown_model": error_text(lambda: Detection(config, name="nope").detectObject(args.dog)),
    }
)
