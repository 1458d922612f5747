"""What every part of the image test shares: the paths, the bounds of every wait, the two ways
it stops early and how it prints."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
LOCK_FILE = REPO_ROOT / "requirements.lock"
SIBLING_SHARED = REPO_ROOT.parent / "shared"
# Kept between runs on the same machine (the base image and the build cache live here).
DEFAULT_SCRATCH = Path("/var/tmp/detection-service-image-test")  # noqa: S108 - not a temp file

# Bounds of every wait, in seconds: far above what a run takes on a loaded 2-core machine.
APT_TIMEOUT_S = 900
DEBOOTSTRAP_TIMEOUT_S = 900
BUILD_TIMEOUT_S = 1500
PODMAN_TIMEOUT_S = 120
READY_TIMEOUT_S = 120
RELOAD_TIMEOUT_S = 90
STOP_TIMEOUT_S = 60
HTTP_TIMEOUT_S = 30


class Fail(Exception):
    """The test cannot go on; the message says why."""


class Unrunnable(Exception):
    """The test cannot run on this machine at all (exit status 2)."""


def say(message: str) -> None:
    print(f"image-test: {message}", flush=True)


def tail(text: str, lines: int) -> str:
    """The last lines of a log, after the error lines in it (a traceback buries them)."""
    all_lines = text.strip().splitlines()
    errors = dict.fromkeys(line for line in all_lines if re.match(r"\w+(Error|Exception): ", line))
    head = [f"error: {line}" for line in errors] + ["--- the log ends with:"] if errors else []
    return "\n".join(head + all_lines[-lines:])
