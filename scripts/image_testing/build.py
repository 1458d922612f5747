"""Building the unchanged Dockerfile with podman, the model weights from a mirror folder."""

from __future__ import annotations

import os
from pathlib import Path

from .common import BUILD_TIMEOUT_S, DOCKERFILE, REPO_ROOT, SIBLING_SHARED, Fail, Unrunnable, tail
from .podman import Podman

IMAGE_TAG = "localhost/detection-service:image-test"


def model_mirror() -> Path:
    configured = os.environ.get("MODEL_MIRROR", "").strip()
    mirror = Path(configured) if configured else SIBLING_SHARED / "models"
    if not mirror.is_dir():
        raise Unrunnable(f"no model mirror folder {mirror}: set MODEL_MIRROR to one")
    return mirror


def build(podman: Podman, mirror: Path) -> str:
    """`podman build` of the unchanged Dockerfile; returns the image id."""
    iid_file = podman.scratch / f"iid-{os.getpid()}"
    args = [
        "build",
        "--format",
        "docker",
        "--pull=never",
        "--network=host",
        "--build-context",
        f"model-mirror={mirror}",
        "--iidfile",
        str(iid_file),
        "--tag",
        IMAGE_TAG,
        "--file",
        str(DOCKERFILE),
    ]
    ca_bundle = Path(os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt")
    if ca_bundle.is_file():
        args += ["--volume", f"{ca_bundle}:/etc/ssl/certs/ca-certificates.crt:ro"]
    try:
        completed = podman.run(*args, str(REPO_ROOT), timeout=BUILD_TIMEOUT_S, check=False)
        if completed.returncode != 0:
            output = completed.stdout + completed.stderr
            raise Fail(f"podman build failed:\n{tail(output, 40)}")
        return iid_file.read_text().strip().removeprefix("sha256:")
    finally:
        iid_file.unlink(missing_ok=True)
