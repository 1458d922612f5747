"""pydoods 1.0 (Home Assistant core's doods integration): the detectors, then detections with
percent thresholds, the key in the doods-auth-key header."""

from __future__ import annotations

from pathlib import Path

from _common import arguments, emit, error_text
from pydoods import PyDOODS

args = arguments()
url = args.url.rstrip("/")
doods = PyDOODS(url, auth_key=args.token, timeout=60)
detectors = doods.get_detectors()["detectors"]
dog = doods.detect(Path(args.dog).read_bytes(), dconfig={"*": 40}, detector_name="default")
bus = doods.detect(
    Path(args.bus).read_bytes(), dconfig={"bus": 50, "person": 40}, detector_name=args.model
)
emit(
    {
        "detectors": [d["name"] for d in detectors],
        "dog": sorted({d["label"] for d in dog["detections"]}),
        "dog_has_error_member": "error" in dog,
        "dog_first": dog["detections"][0],
        "bus": [d["label"] for d in bus["detections"]],
        "wrong_key": error_text(lambda: PyDOODS(url, auth_key="wrong-key", timeout=60)),
        "unknown_model": error_text(
            lambda: doods.detect(Path(args.dog).read_bytes(), {"*": 40}, detector_name="nope")
        ),
    }
)
