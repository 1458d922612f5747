"""deepstack-python 0.9 (Home Assistant's deepstack components, Viseron): DeepstackObject,
default and custom model, as its README shows."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import deepstack.core as ds
from _common import arguments, emit, error_text

args = arguments()
where = urlsplit(args.url)
host, port = where.hostname, where.port
dog, bus = Path(args.dog).read_bytes(), Path(args.bus).read_bytes()

default = ds.DeepstackObject(host, port, api_key=args.token, timeout=60, min_confidence=0.4)
custom = ds.DeepstackObject(host, port, api_key=args.token, timeout=60, custom_model=args.model)
wrong_key = ds.DeepstackObject(host, port, api_key="wrong-key", timeout=60)
unknown = ds.DeepstackObject(host, port, api_key=args.token, timeout=60, custom_model="nope")

dog_predictions = default.detect(dog)
emit(
    {
        "dog": ds.get_objects(dog_predictions),
        "dog_summary": ds.get_objects_summary(dog_predictions),
        "bus": ds.get_objects_summary(custom.detect(bus)),
        "wrong_key": error_text(lambda: wrong_key.detect(dog)),
        "unknown_model": error_text(lambda: unknown.detect(dog)),
    }
)
