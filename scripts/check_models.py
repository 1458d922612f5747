"""Load every model the service would load, exactly as a worker does, and say whether all
of them load. Exit status 0 when they do, 1 (with the reason on stderr) when one does not.

gunicorn.conf.py runs this in a child process before a reload (SIGHUP), so that a broken model
file leaves the old workers serving instead of replacing them with workers that cannot start.
With `--weights` it only checks the weights files' sha256 against the manifests and prints
them (the master's verified copy at start, master_models.py). Also useful by hand after
dropping a model into models/:

    .venv/bin/python scripts/check_models.py
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config import ConfigError, load_config
from detection_types import ModelLoadError
from manifests import discover_models, snapshot_weights, weights_file
from master_models import ALL_LOADED, WEIGHTS_VERIFIED


def verify_weights() -> int:
    """`--weights`: only the weights files and their sha256, checked against the manifests,
    without loading anything (the gunicorn master's first verified copy, master_models.py)."""
    try:
        config = load_config(os.environ)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path, data in snapshot_weights(config.models_dir, config.models or None).items():
        print(f"weights {hashlib.sha256(data).hexdigest()} {path}")
    print(WEIGHTS_VERIFIED)
    return 0


def main() -> int:
    if sys.argv[1:] == ["--weights"]:
        return verify_weights()
    from registry import load_registry  # onnxruntime: only for the full check

    try:
        registry = load_registry(load_config(os.environ))
        available = discover_models(load_config(os.environ).models_dir)
    except (ConfigError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name in sorted(registry.detectors):
        info = registry.detector(name).info
        marker = " (default)" if name == registry.default else ""
        print(f"ok: {name}{marker}: {info.family}, sha256 {info.sha256[:12]}")
        # What the gunicorn master compares its new verified copy with (master_models.py).
        print(f"weights {info.sha256} {weights_file(available[name])[1].resolve()}")
    print(ALL_LOADED)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
