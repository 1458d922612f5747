"""Load every model the service would load, exactly as a worker does, and say whether all
of them load. Exit status 0 when they do, 1 (with the reason on stderr) when one does not.

gunicorn.conf.py runs this in a child process before a reload (SIGHUP), so that a broken model
file leaves the old workers serving instead of replacing them with workers that cannot start.
Also useful by hand after dropping a model into models/:

    .venv/bin/python scripts/check_models.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config import ConfigError, load_config
from detection_types import ModelLoadError
from registry import load_registry

# The last line on success. gunicorn's master reaps every child process it has, this one too,
# so its caller cannot rely on the exit status and reads this line instead.
ALL_LOADED = "all models loaded"


def main() -> int:
    try:
        registry = load_registry(load_config(os.environ))
    except (ConfigError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name in sorted(registry.detectors):
        info = registry.detector(name).info
        marker = " (default)" if name == registry.default else ""
        print(f"ok: {name}{marker}: {info.family}, sha256 {info.sha256[:12]}")
    print(ALL_LOADED)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
